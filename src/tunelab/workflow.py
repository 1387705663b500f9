"""Where a user stands in the five-step workflow (for the Home page), and the loop from a report's
mistakes back to the data (`tunelab reports fix|seeds`, the Compare page's buttons)."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab import jobs, workspace
from tunelab.data import schema, store
from tunelab.errors import TuneLabError


@dataclass
class Step:
    """One step of the workflow and whether the workspace shows it done."""

    key: str
    title: str
    page: str
    done: bool
    detail: str
    count: int = 0  # how many of the step's things exist (datasets, batches, reports, runs): pages word it
    records: int = 0  # the data step: records over every dataset


def _jobs(kind: str) -> list[dict]:
    return [j for j in jobs.list_jobs(kind) if j.get("status") != "failed"]


def steps() -> list[Step]:
    """The five steps with their state: data, test split, generations, comparison, training."""
    datasets = store.list_datasets()
    tests = [d["name"] for d in datasets if d["name"].endswith("-test")]
    gens, reports, runs = _jobs("generations"), _jobs("reports"), _jobs("runs")
    n = len(datasets)
    return [
        Step("data", "Import data", "pages/data.py", n > 0,
             f"{n} dataset(s), {sum(d['records'] for d in datasets)} records" if n else "no dataset yet",
             n, sum(d["records"] for d in datasets)),
        Step("split", "Split off a test set", "pages/data.py", bool(tests),
             ", ".join(tests) if tests else "no NAME-test dataset yet", len(tests)),
        Step("generate", "Generate more examples (optional)", "pages/generate.py", bool(gens),
             f"{len(gens)} generation batch(es)" if gens else "no generated batch yet", len(gens)),
        Step("compare", "Compare base models", "pages/compare.py", bool(reports),
             f"{len(reports)} comparison report(s)" if reports else "no comparison report yet", len(reports)),
        Step("train", "Train and use your model", "pages/train.py", bool(runs),
             f"{len(runs)} training run(s)" if runs else "no training run yet", len(runs)),
    ]


def next_step(state: list[Step]) -> Step | None:
    """The first required step not done yet (generation is optional)."""
    return next((s for s in state if not s.done and s.key != "generate"), None)


def warnings(state: list[Step]) -> list[str]:
    """Steps done out of order, each as one sentence a beginner can act on."""
    done = {s.key: s.done for s in state}
    out = []
    if done["data"] and not done["split"]:
        out.append("No test split yet: Compare and training evaluation have no held-out records "
                   "to score on. Use Split on the Data page.")
    if done["compare"] and not done["split"]:
        out.append("A comparison exists but no test split: its scores may come from records the "
                   "model will also train on.")
    if done["train"] and not done["compare"]:
        out.append("You trained without comparing base models first, so there is no baseline to "
                   "tell whether training helped.")
    return out


# ---------------------------------------------------------------- the loop: from a report's mistakes back to the data
#
# report -> (fix) a new version of a training dataset, whose manifest params name the report and
# its examples -> (train --model RUN --data NAME) a run continuing RUN, whose config records that
# data version -> its before/after report, whose lineage (evals/auto.lineage) names all of them.

WRONG_BELOW = 0.5  # an answer is wrong when it is not an exact match and its ROUGE-L is below this


def tuned_model(doc: dict) -> str:
    """The model a report's mistakes are read from: its training run, else its last model."""
    runs_ = [r["name"] for r in doc.get("model_refs") or [] if r["ref"].get("kind") == "run"]
    return runs_[-1] if runs_ else doc["config"]["models"][-1]


def wrong_examples(doc: dict, model: str | None = None, threshold: float = WRONG_BELOW) -> list[dict]:
    """The examples a model got wrong: not an exact match and ROUGE-L below threshold.

    Returns:
        [{"index", "id", "prompt", "reference", "answer", "rouge_l"}], worst first.
    """
    model = model or tuned_model(doc)
    out = []
    for ex in doc["examples"]:
        o = ex["outputs"].get(model)
        if o and not o["exact_match"] and o["rouge_l"] < threshold:
            out.append({"index": ex["index"], "id": ex["id"], "prompt": ex["prompt"], "reference": ex["reference"],
                        "answer": o["output"], "rouge_l": o["rouge_l"]})
    return sorted(out, key=lambda e: (e["rouge_l"], e["index"]))


def _chosen(doc: dict, examples: list[int] | None, model: str | None, threshold: float) -> list[dict]:
    """The examples named by index (any of the report's), or else the wrong ones."""
    if examples is None:
        picked = wrong_examples(doc, model, threshold)
        if not picked:
            raise TuneLabError(f"no wrong answers in report {doc['report']} (ROUGE-L below {threshold:g}, "
                               f"not exact): name examples with --examples")
        return picked
    by_index = {ex["index"]: ex for ex in doc["examples"]}
    model = model or tuned_model(doc)
    out = []
    for i in examples:
        if i not in by_index:
            raise TuneLabError(f"report {doc['report']} has no example {i} (it has 0 to {len(by_index) - 1})")
        ex = by_index[i]
        o = ex["outputs"].get(model) or {}
        out.append({"index": i, "id": ex["id"], "prompt": ex["prompt"], "reference": ex["reference"],
                    "answer": o.get("output", ""), "rouge_l": o.get("rouge_l")})
    return out


def read_answers(path: str) -> dict:
    """Corrected answers from a file: a JSON object {index or id: answer}, or JSONL lines
    {"index" or "id", "output"}. Keys come back as strings."""
    import json
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise TuneLabError(f"answers file {path} not found")
    text = p.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
        # One JSONL line is a JSON object too: a mapping is one without an "output" key.
        mapping = isinstance(obj, dict) and "output" not in obj
        rows = [{"key": k, "output": v} for k, v in obj.items()] if mapping else None
    except ValueError:
        rows = None
    if rows is None:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append({"key": row.get("index", row.get("id")), "output": row["output"]})
            except (ValueError, KeyError, AttributeError, TypeError):
                raise TuneLabError(f"{p.name} line {n} is not {{\"index\" or \"id\", \"output\"}}") from None
    return {str(r["key"]): str(r["output"]) for r in rows if r["key"] is not None}


def _source_records(doc: dict) -> dict[str, dict]:
    """The evaluated dataset version's records by id (what the report's prompts were made from)."""
    name, version = doc["data"]["name"], doc["data"]["version"]
    try:
        return {r["id"]: r for r in store.read(name, version).to_pylist() if r.get("id")}
    except TuneLabError:
        return {}


def _record(ex: dict, source: dict[str, dict], output: str) -> dict:
    """A training record for a report example: its original record when the dataset still has it."""
    rec = source.get(ex["id"])
    if rec is None:
        rec = {"instruction": ex["prompt"], "input": "", "system": "", "history": []}
    kept = [f for f in schema.FIELDS if f not in ("id", "output", "chosen", "rejected", "kto_tag")]
    return {"id": ex["id"], **{k: rec.get(k) for k in kept}, "output": output}


def test_rows(doc: dict) -> str | None:
    """Why a report's examples are test rows (a clause), or None: a run's before/after data or a NAME-test set."""
    meta, name = doc.get("meta") or {}, doc["data"]["name"]
    if meta.get("run") and meta.get("source"):
        return f"they are the {meta['source']} ({name}) that run {meta['run']} is tested on"
    if name.endswith("-test"):
        return f"they come from {name}, a test split"
    return None


def fix(report_id: str, into: str, examples: list[int] | None = None, answers: dict | None = None,
        model: str | None = None, threshold: float = WRONG_BELOW, allow_test: bool = False) -> dict:
    """Turn a report's wrong answers into training records: a new version of dataset `into`.

    A record whose id `into` already holds gets the corrected answer (a corrected reference);
    any other is added. The new version's manifest params name the report and the examples.

    Args:
        report_id: a finished report.
        into: the dataset to write (made if missing), usually the run's training data.
        examples: report example indices (default: the tuned model's wrong answers).
        answers: corrected answers by index or id (default: each example's reference).
        model: whose answers are judged (default: the report's run, else its last model).
        threshold: ROUGE-L below which a non-exact answer is wrong.
        allow_test: add them even when they are test rows (test_rows): refused otherwise, since a
            later report on that data would score rows the model trained on; the version's params
            then count them as "test_rows".
    Returns:
        {"name", "version", "added", "corrected", "report", "examples": [ids], "indices": [...], "test_rows"}.
    """
    import pyarrow as pa

    from tunelab.data.schema import to_table
    from tunelab.evals import evaluate

    workspace.validate_name(into, "dataset name")
    doc = evaluate.load_report(report_id)
    picked = _chosen(doc, examples, model, threshold)
    why = test_rows(doc)
    if why and picked and not allow_test:
        n = len(picked)
        raise TuneLabError(f"not added: these {n} examples are test rows ({why}); training on them "
                           "would leave a test score on trained rows. Pass --allow-test-rows to add them anyway")
    answers = answers or {}
    source = _source_records(doc)
    records = [_record(ex, source, answers.get(str(ex["index"])) or answers.get(ex["id"]) or ex["reference"])
               for ex in picked]
    params = {"report": report_id, "run": (doc.get("meta") or {}).get("run") or tuned_model(doc),
              "examples": [ex["id"] for ex in picked], "indices": [ex["index"] for ex in picked],
              "corrected_answers": sum(1 for ex in picked if str(ex["index"]) in answers or ex["id"] in answers),
              "test_rows": len(picked) if why else 0}
    counts = {"added": 0, "corrected": 0}

    def apply(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        at = {r["id"]: i for i, r in enumerate(rows) if r.get("id")}
        for rec in records:
            if rec["id"] in at:
                rows[at[rec["id"]]] = dict(rows[at[rec["id"]]], output=rec["output"])
                counts["corrected"] += 1
            else:
                rows.append(rec)
                counts["added"] += 1
        return to_table(rows)

    if store.exists(into):
        entry = store.edit(into, apply, "fix", params)
    else:
        entry = store.commit(into, apply(to_table([])), "fix", params,
                             lineage={"source": doc["data"]["name"], "version": doc["data"]["version"]})
    return {"name": into, "version": entry["version"], **counts, "report": report_id,
            "examples": params["examples"], "indices": params["indices"], "test_rows": params["test_rows"]}


def seeds(report_id: str, into: str, template: str | None = None, examples: list[int] | None = None,
          model: str | None = None, threshold: float = WRONG_BELOW) -> dict:
    """Send a report's wrong answers to the Generate step: as seeds, and as "mistakes to avoid".

    The examples (prompt + reference) become a new version of seed dataset `into`; each wrong
    answer becomes a line of "mistakes to avoid" in a new version of the prompt template.

    Returns:
        {"seeds": {"name", "version", "records"}, "prompt": {"name", "version"}, "report",
         "examples": [ids], "command": the `tunelab generate` line to run next}.
    """
    from tunelab.data.schema import to_table
    from tunelab.evals import evaluate
    from tunelab.synth import prompts
    from tunelab.text import has_cjk

    workspace.validate_name(into, "dataset name")
    doc = evaluate.load_report(report_id)
    picked = _chosen(doc, examples, model, threshold)
    source = _source_records(doc)
    params = {"report": report_id, "examples": [ex["id"] for ex in picked], "indices": [ex["index"] for ex in picked]}
    records = [_record(ex, source, ex["reference"]) for ex in picked]
    if store.exists(into):
        entry = store.append_records(into, records, "seeds", params)
    else:
        entry = store.commit(into, to_table(records), "seeds", params,
                             lineage={"source": doc["data"]["name"], "version": doc["data"]["version"]})
    chinese = any(has_cjk(ex["prompt"]) for ex in picked)
    name = template or ("default-zh" if chinese else prompts.DEFAULT_TEMPLATE)
    prev = prompts.get(name)
    lines = [_mistake(ex, chinese) for ex in picked]
    merged = list(dict.fromkeys([*(prev.get("mistakes") or []), *lines]))[-prompts.MAX_MISTAKES:]
    saved = prompts.save(name, prev["text"], prev.get("task_description", ""), merged, parent=prev["version"],
                         note=f"mistakes to avoid from report {report_id} ({len(picked)} wrong answers)")
    cmd = (f"tunelab generate --seeds {into} --template {name} --prompt-version {saved['version']} "
           f"--into {into}-generated")
    return {"seeds": {"name": into, "version": entry["version"], "records": entry["records"]},
            "prompt": {"name": name, "version": saved["version"]}, "report": report_id,
            "examples": params["examples"], "command": cmd}


def _short(text: str, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _mistake(ex: dict, chinese: bool) -> str:
    if chinese:
        return f"问“{_short(ex['prompt'])}”时，模型答成了“{_short(ex['answer'])}”；应答“{_short(ex['reference'])}”"
    return (f'asked "{_short(ex["prompt"])}", the model answered "{_short(ex["answer"])}" '
            f'instead of "{_short(ex["reference"])}"')


def continue_training(run_id: str, data: str, auto_report: bool = True) -> str:
    """Start a run that continues run_id's adapter on dataset data (the auto recipe sizes it).

    The same as `tunelab train --model RUN_ID --data NAME`; returns the new run's id.
    """
    from tunelab.train import recipe, runs
    from tunelab.train.config import TrainConfig

    base = runs.config(run_id)
    cfg = TrainConfig.for_method(base.method.method)
    cfg.set({"model": run_id, "data": data, "auto_report": auto_report})
    recipe.apply(cfg, {"model", "data"})
    new = runs.create(cfg)
    runs.start(new)
    return new
