"""The before/after report of a training run: its base and the tuned model on the run's test data.

When a run finishes (completed, or ended by early stopping), its training process calls `start`,
which writes a queued report (tunelab.evals.evaluate) and launches it as a background job
(`tunelab reports run ID`), so nobody has to click anything for it. The test data is, in order:
the dataset's `NAME-test` twin (for a run on NAME-train or NAME), else the eval dataset the run
used, else the eval split the run held out of its own records (the same seeded draw as
train/sft.load_records). At most MAX_EXAMPLES examples, greedy, with answers only a little longer
than the longest reference, so the report takes a minute on a CPU rather than an hour.

The run folder's report.json says which report belongs to the run (or why there is none):
    {"report": ID, "source", "data", "version", "examples", "created"}  or  {"report": null, "skipped": reason}
The report's config.json carries meta {"run", "source"}; `summary` is what `runs show --json`
prints under "report" and the Train page shows.

A preference run (dpo, orpo, kto) also gets its preference accuracy measured on the pairs of the
same test data (at most MAX_EXAMPLES): the share of pairs whose chosen answer the model finds
likelier than the rejected one (per-token mean log-prob), for the base and the tuned model. The
training process measures it (train/preference.preference_accuracy, passed in as `measure`: this
layer does not import the training layer) before it launches the answer report, and report.json
keeps it as "preference_accuracy": {"base", "tuned", "pairs", "k", "ci"} (or {"error"}), each share
with its 95 % Wilson interval.

This module reads the run's config.yaml as plain YAML and its output.json through the models
layer: the training layer imports it, not the other way round.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import yaml

from tunelab import jobs
from tunelab.data import store
from tunelab.evals import evaluate, leakage, metrics
from tunelab.evals.leakage import holdout_indices  # noqa: F401 - auto.holdout_indices, as before
from tunelab.jsonio import read_json, write_json
from tunelab.models import run_output

FILE = "report.json"  # in the run folder
MAX_EXAMPLES = 50
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 16, 128
METRIC, METRIC_LABEL = "rouge_l", "ROUGE-L"
SHOWN = ("rouge_l", "bleu", "exact_match")


def _run_dir(run_id: str) -> Path:
    return jobs.job_dir("runs", run_id)


def _config(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def test_data(run_dir: Path) -> dict | None:
    """Which records a run's before/after report evaluates, or None when it has no test data.

    Returns:
        {"source": "test split"|"eval data"|"held-out split", "data", "version", "indices"
        (positions in that version, None for all)}.
    """
    conf = _config(run_dir)
    d = conf.get("data") or {}
    data = d.get("data") or ""
    stem = data[: -len("-train")] if data.endswith("-train") else data
    twin = f"{stem}-test"
    if data and twin != data and store.exists(twin):
        return {"source": "test split", "data": twin, "version": store.resolve_version(twin), "indices": None}
    if d.get("eval_data") and store.exists(d["eval_data"]):
        return {"source": "eval data", "data": d["eval_data"], "indices": None,
                "version": store.resolve_version(d["eval_data"], d.get("eval_data_version"))}  # the run's pinned version
    return leakage.held_out_source(conf)


def examples(src: dict, limit: int = MAX_EXAMPLES) -> list[dict]:
    """The report's inputs for test_data's choice: at most limit, numbered from 0."""
    _, items = evaluate.load_examples(src["data"], src["version"])
    if src.get("indices") is not None:
        items = [items[i] for i in src["indices"] if i < len(items)]
    items = items[:limit]
    # The Compare page addresses examples by their index: keep it 0..n-1 whatever was picked.
    return [dict(it, index=i) for i, it in enumerate(items)]


def new_tokens_for(items: list[dict]) -> int:
    """max_new_tokens a little above the longest reference (words, CJK characters), within bounds."""
    longest = max((len(metrics.tokenize(it["reference"])) for it in items), default=0)
    return max(MIN_NEW_TOKENS, min(MAX_NEW_TOKENS, 2 * longest + 8))


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


PREFERENCE_METHODS = ("dpo", "orpo", "kto")


def pair_records(src: dict, limit: int = MAX_EXAMPLES) -> list[dict]:
    """The preference pairs (records with both chosen and rejected) among test_data's choice, at most limit."""
    recs = store.read(src["data"], src["version"]).to_pylist()
    if src.get("indices") is not None:
        recs = [recs[i] for i in src["indices"] if i < len(recs)]
    return [r for r in recs if r.get("chosen") and r.get("rejected")][:limit]


def measure_preference(base: str, tuned: str, records: list[dict], measure: Callable[..., float]) -> dict:
    """{"base", "tuned", "pairs", "k", "ci"}: preference accuracy of both models on records (4 places), the
    pairs each got right and their 95 % Wilson intervals (analysis.preference_intervals)."""
    from tunelab.evals import analysis

    return analysis.preference_intervals({"base": round(measure(base, records), 4),
                                          "tuned": round(measure(tuned, records), 4), "pairs": len(records)})


def start(run_dir: Path, log: Callable[[str], None] = _log,
          measure: Callable[..., float] | None = None) -> str | None:
    """Create and launch the run's before/after report; record it in the run folder.

    Never raises: a run that trained well must not be marked failed for want of a report, so
    any problem is recorded in report.json ("skipped") and logged.

    Args:
        run_dir: a finished run's folder (it has published weights).
        log: where the one line about the report goes (the run's job.log).
        measure: preference accuracy of (MODEL, records), for a dpo/orpo/kto run's held-out pairs
            (train/preference.preference_accuracy); None measures nothing.
    Returns:
        The report id, or None when none was started.
    """
    run_dir = Path(run_dir)

    def skip(reason: str, leak: dict | None = None) -> None:
        write_json(run_dir / FILE, {"report": None, "skipped": reason, "created": time.time(), "leakage": leak})
        log(f"no before/after report: {reason}")

    try:
        conf = _config(run_dir)
        if not (conf.get("training") or {}).get("auto_report", True):
            return skip("turned off (auto_report: false)")
        out = run_output.read(run_dir)
        if not out or not out.get("base"):
            return skip("the run has no saved weights")
        src = test_data(run_dir)
        if src is None:
            return skip("no test data: no NAME-test dataset, no eval dataset and no held-out split")
        src, leak = leakage.guard(run_dir, src)  # rows the run trained on are no test
        if src is None:
            return skip(f"{leakage.sentence(leak)} No unseen rows are left to evaluate", leak)
        items = examples(src)
        if not items:
            return skip(f"{src['data']} v{src['version']} has no records to evaluate")
        cfg = evaluate.EvalConfig(models=[out["base"], run_dir.name], data=src["data"], version=src["version"],
                                  limit=len(items), batch_size=8, max_new_tokens=new_tokens_for(items))
        rid = evaluate.create_report(cfg, report_id=jobs.new_id("after"), items=items,
                                     meta={"run": run_dir.name, "source": src["source"], "leakage": leak})
        rec = {"report": rid, "source": src["source"], "data": src["data"], "version": src["version"],
               "examples": len(items), "created": time.time(), "leakage": leak}
        if leak:
            log(f"refused {leak['data']} as test data: {leakage.sentence(leak)}")
        write_json(run_dir / FILE, rec)
        method = (conf.get("method") or {}).get("method")
        if measure is not None and method in PREFERENCE_METHODS:
            rec["preference_accuracy"] = _preference(out["base"], run_dir.name, src, measure, log)
            write_json(run_dir / FILE, rec)
        evaluate.launch_report(rid)
        log(f"before/after report {rid}: {out['base']} vs {run_dir.name} on {len(items)} examples of "
            f"{src['data']} v{src['version']} ({src['source']})")
        return rid
    except Exception as exc:  # noqa: BLE001 - see the docstring: recorded, never raised
        skip(f"could not start it ({jobs.error_line(exc)})")
        return None


def _preference(base: str, tuned: str, src: dict, measure: Callable[..., float],
                log: Callable[[str], None]) -> dict:
    """Preference accuracy of base and tuned on src's pairs, or {"error"}: never raises (see start)."""
    try:
        pairs = pair_records(src)
        if not pairs:
            return {"error": f"{src['data']} v{src['version']} has no held-out preference pairs"}
        got = measure_preference(base, tuned, pairs, measure)
        log(f"preference accuracy on {got['pairs']} held-out pairs: {base} {got['base']:.2f}, "
            f"{tuned} {got['tuned']:.2f}")
        return got
    except Exception as exc:  # noqa: BLE001 - the answer report still runs
        log(f"no preference accuracy: {jobs.error_line(exc)}")
        return {"error": jobs.error_line(exc)}


def preference_verdict(pref: dict) -> tuple[bool, str]:
    """(whether the tuned model prefers the chosen answers more often than its base, one sentence saying so,
    each share with its 95 % Wilson interval)."""
    from tunelab.evals import analysis

    pref = analysis.preference_intervals(pref)
    ci = pref.get("ci") or {}
    more = pref["tuned"] > pref["base"]
    word = "more often" if more else "no more often"
    return more, (f"The tuned model prefers the chosen answer {word} than its base "
                  f"({analysis.share_text(pref['tuned'], ci.get('tuned'))} vs "
                  f"{analysis.share_text(pref['base'], ci.get('base'))} of {pref['pairs']} held-out pairs, "
                  f"95 % Wilson intervals).")


def _scores(entry: dict | None) -> dict:
    entry = entry or {}
    return {"name": entry.get("name"), **{k: entry.get(k) for k in SHOWN}, "examples": entry.get("examples", 0),
            "ci": entry.get("ci") or {k: None for k in SHOWN}}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def verdict(doc: dict) -> tuple[bool, str]:
    """(whether the tuned model beat its base, the report's one verdict sentence).

    Beating its base needs the report's verdict to be "better": a paired test over the examples
    with a Holm-adjusted p below 0.05 (evals/stats.py); a higher mean on noise is not a win.
    """
    detail = doc.get("verdict_detail") or {}
    return detail.get("label") == "better", doc.get("verdict") or ""


def summary(run_id: str) -> dict | None:
    """The run's before/after report in short (the `runs show --json` "report"), or None before there is one.

    Returns:
        {"report", "status", "source", "data": {"name", "version"}, "progress": {"done", "total"},
         "base": {"name", "rouge_l", "bleu", "exact_match", "examples"}, "tuned": {...},
         "beat_base": bool (the verdict is "better") or None until the report is complete, "sentence",
         "verdict", "verdict_label" (better|worse|non-inferior|inconclusive), "verdict_detail", "pairs",
         "slices", "provenance" (the report's, see evaluate.build_report), "judge": counts and
         win_rate (wins over decided and tied answers) or None,
         "preference_accuracy": {"base", "tuned", "pairs", "k", "ci", "beat_base", "sentence"} or {"error"} for a
         dpo/orpo/kto run, else None (its sentence is appended to "sentence")};
        for a run without one: {"report": None, "status": "skipped", "reason", "sentence"}.
    """
    rec = read_json(_run_dir(run_id) / FILE)
    if not rec:
        return None
    rid = rec.get("report")
    if not rid:
        reason = rec.get("skipped") or "unknown"
        return {"report": None, "status": "skipped", "reason": reason, "beat_base": None,
                "leakage": rec.get("leakage"), "sentence": f"No before/after report for this run: {reason}."}
    try:
        doc = evaluate.load_report(rid)
    except Exception as exc:  # noqa: BLE001 - a deleted or damaged report folder is shown, not raised
        return {"report": rid, "status": "missing", "beat_base": None,
                "sentence": f"The before/after report {rid} cannot be read ({jobs.error_line(exc)})."}
    by_name = {m["name"]: m for m in doc["models"]}
    base, tuned = _scores(by_name.get(doc["config"]["models"][0])), _scores(by_name.get(run_id))
    out = {"report": rid, "status": doc["status"], "source": rec.get("source"), "data": doc["data"],
           "progress": doc["progress"], "base": base, "tuned": tuned, "beat_base": None, "judge": None,
           "verdict": doc.get("verdict"), "verdict_label": (doc.get("verdict_detail") or {}).get("label"),
           "verdict_detail": doc.get("verdict_detail"), "pairs": doc.get("pairs") or [],
           "slices": doc.get("slices") or [], "provenance": doc.get("provenance")}
    if doc["status"] == "completed" and base["examples"] and tuned["examples"]:
        out["beat_base"], out["sentence"] = verdict(doc)
    elif doc["status"] in jobs.ACTIVE:
        p = doc["progress"]
        out["sentence"] = (f"The before/after report is {doc['status']} "
                           f"({p['done']}/{p['total']} answers).")
    else:
        out["sentence"] = f"The before/after report {doc['status']}: {doc.get('error') or 'it did not finish'}."
    from tunelab.evals import judge

    verdicts = judge.load(rid)
    if verdicts and verdicts.get("counts"):
        c = verdicts["counts"]
        scored = c.get("win", 0) + c.get("tie", 0) + c.get("loss", 0)
        out["judge"] = dict(c, judge=verdicts.get("judge"),
                            win_rate=round(c.get("win", 0) / scored, 4) if scored else None)
    out["preference_accuracy"] = pref = rec.get("preference_accuracy")
    if pref and pref.get("tuned") is not None and pref.get("base") is not None:
        from tunelab.evals import analysis

        more, sentence = preference_verdict(pref)
        out["preference_accuracy"] = dict(analysis.preference_intervals(pref), beat_base=more, sentence=sentence)
        out["sentence"] = f"{out['sentence']} {sentence}"
    out["leakage"] = leak = rec.get("leakage")
    if leak:  # said first: the data the run was first going to be scored on was trained on
        out["sentence"] = f"{leakage.sentence(leak)} {out['sentence']}"
    return out


def lineage(report_id: str) -> dict:
    """Where a report's tuned model came from, as far back as the workspace records it.

    Returns:
        {"report", "data": {"name", "version"} (evaluated on), "run" (None for a report without
         one), "base", "init_run" (the run it continued), "train_data": {"name", "version",
         "op", "params"}, "from_report" (the report whose examples made that data version), "examples"}.
    """
    doc = evaluate.load_report(report_id)
    run = (doc.get("meta") or {}).get("run") or next(
        (r["name"] for r in doc["model_refs"] if r["ref"].get("kind") == "run"), None)
    out = {"report": report_id, "data": doc["data"], "run": run, "base": None, "init_run": None,
           "train_data": None, "from_report": None, "examples": None}
    out_doc = run_output.read(_run_dir(run)) if run else None
    if not out_doc:
        return out
    lin = out_doc.get("lineage") or {}
    out.update(base=out_doc.get("base"), init_run=lin.get("init_adapter"))
    name, version = lin.get("data"), lin.get("data_version")
    if name and store.exists(name):
        versions = {v["version"]: v for v in store.manifest(name)["versions"]}
        entry = versions.get(version)
        out["train_data"] = {"name": name, "version": version, "op": (entry or {}).get("op"),
                             "params": (entry or {}).get("params") or {}}
        # The version trained on, or an earlier one it was edited from, was made from a report.
        seen = 0
        while entry and seen < 100:
            params = entry.get("params") or {}
            if params.get("report"):
                out.update(from_report=params["report"], examples=params.get("examples"))
                break
            entry, seen = versions.get(entry.get("parent")), seen + 1
    return out
