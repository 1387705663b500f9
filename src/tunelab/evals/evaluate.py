"""Batched evaluation of one or more models on the same examples, written to a report folder.

A report is a job folder reports/<id>/ (see tunelab.jobs):
  config.json     models (with their resolved refs), dataset name + version, limit, batch size and
                  the exact GenerationSettings
  inputs.jsonl    the examples as evaluated (prompt messages + reference), so a report stays
                  readable after the dataset changes
  examples.jsonl  one line per (model, example) as soon as its batch finishes: answer, metrics, timing
  models.jsonl    one line per model once loaded (load time, backend)
  results.json    the summary document (`load_report`), rewritten after every model
  status.json     queued | running | completed | failed | stopped, with done/total progress
Everything shown is rebuilt from these files, so a refresh or a second tab re-attaches and a
stopped or crashed report still shows what it finished.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Callable

from tunelab import jobs, migrations, workspace
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.evals import analysis, metrics, provenance
from tunelab.jsonio import append_jsonl, read_json, read_jsonl, write_atomic, write_json

KIND = "reports"
MIN_MODELS, MAX_MODELS = 2, 4
# Summary columns and whether a higher value is better (for "best per column").
HIGHER_IS_BETTER = {"rouge_l": True, "bleu": True, "exact_match": True, "tokens_per_s": True,
                    "latency_s": False, "peak_rss_mb": False}


@dataclass
class EvalConfig:
    """What a report evaluates; saved as config.json."""

    models: list[str] = field(metadata={"help": "MODEL arguments: registry names, folders, .gguf files, run ids, endpoints."})
    data: str = field(metadata={"help": "Dataset to evaluate on (its output field is the reference)."})
    version: int | None = field(default=None, metadata={"help": "Dataset version (default: the current head)."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N examples."})
    batch_size: int = field(default=8, metadata={"help": "Examples generated together; larger is faster until memory runs out."})
    max_new_tokens: int = field(default=128, metadata={"help": "Longest answer per example, in tokens."})


def _dir(report_id: str) -> Path:
    return jobs.job_dir(KIND, report_id)


def settings_for(cfg: EvalConfig):
    """Greedy decoding (temperature 0) so reruns and batch sizes give the same answers."""
    from tunelab.models.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=0.0)


def load_examples(data: str, version: int | None = None, limit: int | None = None) -> tuple[int, list[dict]]:
    """The first `limit` records of a dataset version as evaluation inputs.

    Returns:
        (resolved version, [{"index", "id", "messages", "prompt", "reference"}]).
    """
    from tunelab.models.generation import records_to_messages

    version = store.resolve_version(data, version)
    table = store.read(data, version)
    if limit is not None:
        if limit < 1:
            raise TuneLabError(f"--limit must be at least 1, got {limit}")
        table = table.slice(0, limit)
    items = []
    for i, rec in enumerate(table.to_pylist()):
        msgs = records_to_messages(rec)
        items.append({"index": i, "id": rec.get("id") or str(i), "messages": msgs,
                      "prompt": msgs[-1]["content"], "reference": rec.get("output") or "", "tags": _tags(rec)})
    if not items:
        raise TuneLabError(f"dataset {data!r} version {version} has no records to evaluate")
    return version, items


def _tags(rec: dict) -> dict:
    """A record's non-text columns (e.g. a KTO label): the report's slices group examples by them too."""
    from tunelab.data.schema import TEXT_FIELDS

    skip = {*TEXT_FIELDS, "id", "history", "conversations", "tools"}
    return {k: v for k, v in rec.items() if k not in skip and isinstance(v, (bool, int, float, str)) and v != ""}


def _model_entry(spec: str) -> dict:
    from tunelab.models.registry import resolve

    from tunelab import urls

    return {"name": urls.redact(spec), "ref": resolve(spec).to_dict()}  # a key in an endpoint URL is never stored


def create_report(cfg: EvalConfig, report_id: str | None = None, items: list[dict] | None = None,
                  meta: dict | None = None) -> str:
    """Resolve models and data, snapshot the inputs, and write a queued report folder.

    Args:
        cfg: what to evaluate; cfg.version is filled with the resolved version.
        report_id: folder name (default: a new `eval-...`/`compare-...` id).
        items: the examples to evaluate (load_examples' shape) instead of cfg.data's first cfg.limit
            records, e.g. a run's held-out split; cfg.version must then name their version.
        meta: where the report comes from (a run's before/after report: {"run", "source"}); kept in
            config.json, and its "run" in status.json so the report list can name the run.
    Returns:
        The report id.
    """
    if len(set(cfg.models)) != len(cfg.models):
        raise TuneLabError(f"a model is listed twice in {', '.join(cfg.models)}")
    if cfg.batch_size < 1:
        raise TuneLabError(f"batch size must be at least 1, got {cfg.batch_size}")
    models = [_model_entry(m) for m in cfg.models]  # unknown models fail here, before any folder exists
    cfg.models = [m["name"] for m in models]
    if items is None:
        from tunelab.evals import leakage

        cfg.version, items = load_examples(cfg.data, cfg.version, cfg.limit)
        # A run scored on rows it trained on: said in the report (the caller's items are checked by the caller).
        meta = dict(meta or {}, leakage=leakage.check_report(models, cfg.data, cfg.version, cfg.limit))
    report_id = report_id or jobs.new_id("compare" if len(cfg.models) > 1 else "eval")
    d = _dir(report_id)
    if (d / "config.json").exists():
        raise TuneLabError(f"report {report_id} already exists")
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(d / "inputs.jsonl", "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    write_json(d / "config.json", migrations.stamp("report", {
        **asdict(cfg), "model_refs": models, "generation": asdict(settings_for(cfg)), "examples": len(items),
        "meta": meta or {}}))
    jobs.write_status(d, status="queued", created=time.time(), kind="compare" if len(cfg.models) > 1 else "eval",
                      models=cfg.models, data=cfg.data, version=cfg.version, run=(meta or {}).get("run"),
                      done=0, total=len(items) * len(cfg.models), progress=f"0/{len(items) * len(cfg.models)}")
    return report_id


def start_report(cfg: EvalConfig) -> str:
    """Create a report and run it in a background process (`tunelab reports run ID`); returns its id."""
    return launch_report(create_report(cfg))


def launch_report(report_id: str) -> str:
    """Run a created (queued) report in a background process, `tunelab reports run ID`; returns its id."""
    jobs.launch(KIND, report_id, ["reports", "run", report_id])
    return report_id


class PeakRSS:
    """Samples this process's resident memory in a thread; `.peak_mb` is the high-water mark."""

    def __init__(self, every_s: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self._every = every_s
        self._stop = threading.Event()
        self.peak_mb = self._proc.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def __enter__(self) -> "PeakRSS":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)


def evaluate_batches(backend, items: list[dict], settings, batch_size: int, on_batch: Callable[[list[dict]], None]) -> None:
    """Generate answers in batches and score them; on_batch gets each batch's rows as soon as it is done.

    Each row: {"index", "output", "rouge_l", "bleu", "exact_match", "prompt_tokens",
    "completion_tokens", "latency_s" (the batch's wall time: when this answer was ready),
    "wall_s" (the batch's wall time shared out per example), "finish_reason"}.
    """
    # Batching prompts of similar length wastes less compute on padding; rows carry their index.
    ordered = sorted(items, key=lambda it: sum(len(m["content"]) for m in it["messages"]))
    with PeakRSS() as mem:
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start:start + batch_size]
            t0 = time.perf_counter()
            gens = backend.chat([it["messages"] for it in chunk], settings, batch_size=batch_size)
            wall = time.perf_counter() - t0
            rows = [
                {"index": it["index"], "output": g.text, **metrics.score(g.text, it["reference"]),
                 "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                 "latency_s": g.latency_s, "wall_s": wall / len(chunk), "finish_reason": g.finish_reason,
                 "peak_rss_mb": round(mem.peak_mb, 1)}
                for it, g in zip(chunk, gens)
            ]
            on_batch(rows)


def warm_up(backend, items: list[dict], settings, batch_size: int) -> float:
    """One short untimed generation of a first batch, so the timed answers do not pay for first-call
    set-up (kernel selection, caches, a server's first request): without it the speed of the same model
    changed 6x between two reports. Returns its wall time in seconds."""
    from dataclasses import replace

    ordered = sorted(items, key=lambda it: sum(len(m["content"]) for m in it["messages"]))[:batch_size]
    t0 = time.perf_counter()
    if ordered:
        backend.chat([it["messages"] for it in ordered], replace(settings, max_new_tokens=min(8, settings.max_new_tokens)),
                     batch_size=batch_size)
    return round(time.perf_counter() - t0, 3)


def run_report(report_id: str, log: Callable[[str], None] | None = None) -> dict:
    """Evaluate every model of a queued report, writing rows and progress as they come.

    Args:
        report_id: a folder made by create_report.
        log: progress lines (the CLI sends them to stderr).
    Returns:
        The finished report (load_report's document).
    """
    from tunelab.models.generation import get_backend

    d = _dir(report_id)
    conf = read_json(d / "config.json")
    if conf is None:
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    conf = migrations.migrate("report", conf)
    cfg = EvalConfig(**{k: conf[k] for k in ("models", "data", "version", "limit", "batch_size", "max_new_tokens")})
    items = read_jsonl(d / "inputs.jsonl")
    settings = settings_for(cfg)
    total = len(items) * len(cfg.models)
    done = 0
    log = log or (lambda _msg: None)
    # SIGTERM (`reports stop`) raises jobs.Stopped in here; what finished is kept and summarised below.
    with jobs.running(KIND, report_id) as job:
        write_json(d / provenance.FILE, provenance.collect(d, conf))
        for name in cfg.models:
            job.update(model=name)
            t0 = time.perf_counter()
            backend = get_backend(name)
            load_s = round(time.perf_counter() - t0, 2)
            warmup_s = warm_up(backend, items, settings, cfg.batch_size)
            append_jsonl(d / "models.jsonl", {"name": name, "load_s": load_s, "warmup_s": warmup_s,
                                              "backend": type(backend).__name__})

            def on_batch(rows: list[dict], name: str = name) -> None:
                nonlocal done
                for r in rows:
                    append_jsonl(d / "examples.jsonl", dict(r, model=name))
                done += len(rows)
                job.update(done=done, total=total, progress=f"{done}/{total}")
                log(f"{name}: {done}/{total}")

            evaluate_batches(backend, items, settings, cfg.batch_size, on_batch)
            write_json(d / "results.json", build_report(report_id))
    if job.status == "stopped":
        write_json(d / "results.json", build_report(report_id))
        raise TuneLabError(f"report {report_id} was stopped after {done}/{total} answers")
    doc = build_report(report_id)
    write_json(d / "results.json", doc)
    return doc


def _aggregate(name: str, rows: list[dict], items: dict[int, dict], loaded: dict) -> dict:
    """One model's summary line (the documented `compare` entry plus extras)."""
    wall = sum(r["wall_s"] for r in rows)
    entry = {"name": name, "rouge_l": None, "bleu": None, "exact_match": None, "tokens_per_s": None,
             "latency_s": None, "peak_rss_mb": None, "examples": len(rows),
             "load_s": loaded.get("load_s"), "warmup_s": loaded.get("warmup_s"), "backend": loaded.get("backend")}
    if rows:
        entry.update(
            rouge_l=mean(r["rouge_l"] for r in rows),
            bleu=metrics.corpus_bleu([r["output"] for r in rows], [items[r["index"]]["reference"] for r in rows]),
            exact_match=mean(r["exact_match"] for r in rows),
            tokens_per_s=sum(r["completion_tokens"] for r in rows) / wall if wall > 0 else 0.0,
            latency_s=mean(r["latency_s"] for r in rows),
            seconds_per_example=wall / len(rows),
            completion_tokens=mean(r["completion_tokens"] for r in rows),
            peak_rss_mb=max(r["peak_rss_mb"] for r in rows),
        )
    return entry


def build_report(report_id: str) -> dict:
    """The report document, rebuilt from the folder's files (works mid-run too).

    Returns:
        {"report", "status", "progress", "data": {"name", "version"}, "generation", "config",
         "models": [{"name", "rouge_l", "bleu", "exact_match", "tokens_per_s", "latency_s", ...,
                     "ci": {"rouge_l": [lo, hi], "bleu": [...], "exact_match": [...]}}],
         "pairs": [{"a", "b", "metric", "diff", "ci", "p", "p_adjusted", "test", "mde", ...}],
         "verdict": one sentence, "verdict_detail": {"label", ...} or None, "slices": [...],
         "provenance": {...} (see evals/analysis.py and evals/provenance.py),
         "examples": [{"index", "id", "prompt", "reference", "outputs": {model: {...}}, "spread"}]}
    """
    d = _dir(report_id)
    conf = read_json(d / "config.json")
    if conf is None:
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    conf = migrations.migrate("report", conf)
    status = jobs.read_status(d) or {}
    items = {it["index"]: it for it in read_jsonl(d / "inputs.jsonl")}
    loaded = {m["name"]: m for m in read_jsonl(d / "models.jsonl")}
    by_model: dict[str, dict[int, dict]] = {m: {} for m in conf["models"]}
    for r in read_jsonl(d / "examples.jsonl"):
        by_model.setdefault(r["model"], {})[r["index"]] = r  # a rerun row replaces an older one
    models = [_aggregate(m, list(by_model[m].values()), items, loaded.get(m, {})) for m in conf["models"]]
    found = analysis.analyse(report_id, conf["models"], by_model, items, conf["data"],
                             fixed_order=bool((conf.get("meta") or {}).get("run")))
    for entry in models:
        entry["ci"] = found["ci"].get(entry["name"], {k: None for k in metrics.METRICS})
    examples = []
    for idx, it in sorted(items.items()):
        outputs = {m: {k: by_model[m][idx][k] for k in ("output", "rouge_l", "bleu", "exact_match", "latency_s", "completion_tokens")}
                   for m in conf["models"] if idx in by_model[m]}
        scores = [o["rouge_l"] for o in outputs.values()]
        examples.append({"index": idx, "id": it["id"], "prompt": it["prompt"], "reference": it["reference"],
                         "outputs": outputs, "spread": (max(scores) - min(scores)) if len(scores) > 1 else 0.0})
    return {"report": report_id, "status": status.get("status"), "error": status.get("error"),
            "progress": {"done": status.get("done", 0), "total": status.get("total", 0)},
            "data": {"name": conf["data"], "version": conf["version"]}, "generation": conf["generation"],
            "config": {k: conf[k] for k in ("models", "limit", "batch_size", "max_new_tokens")},
            "model_refs": conf["model_refs"], "meta": conf.get("meta") or {},
            "leakage": (conf.get("meta") or {}).get("leakage"), "models": models,
            "pairs": found["pairs"], "verdict": found["verdict"], "verdict_detail": found["verdict_detail"],
            "slices": found["slices"], "provenance": provenance.for_report(d, conf), "examples": examples}


def load_report(report_id: str) -> dict:
    """Reopen a report: the same document `run_report` returned (rebuilt while it is still running)."""
    return build_report(report_id)


def list_reports() -> list[dict]:
    """Every report, newest first: {"id", "status", "models", "data", "version", "progress", "created", "run"}.

    "run" names the training run of a before/after report (None for a comparison made by hand).
    """
    return [{k: j.get(k) for k in ("id", "status", "kind", "models", "data", "version", "progress", "created", "error",
                                  "run")}
            for j in jobs.list_jobs(KIND)]


def delete_report(report_id: str) -> dict:
    """Remove a finished report's folder (answers, metrics, judge verdicts); a queued or running one is refused.

    The folder is first renamed out of reports/ (one atomic step), so a half-removed report is never listed.

    Returns:
        {"report", "status"}: the id and the status it had.
    """
    d = _dir(report_id)
    status = jobs.read_status(d)
    if status is None and not (d / "config.json").exists():
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    state = (status or {}).get("status")
    if state in jobs.ACTIVE:
        raise TuneLabError(f"report {report_id} is {state}: stop it first (`tunelab reports stop {report_id}`)")
    workspace.discard(d)
    return {"report": report_id, "status": state}


def best_per_column(models: list[dict]) -> dict[str, str]:
    """{column: name of the best model} over HIGHER_IS_BETTER's columns.

    Models without a value are skipped; a column where every model scores the same has no winner.
    """
    out = {}
    for col, higher in HIGHER_IS_BETTER.items():
        scored = [m for m in models if m.get(col) is not None]
        if len({m[col] for m in scored}) > 1:
            pick = max if higher else min
            out[col] = pick(scored, key=lambda m: m[col])["name"]
    return out


def candidate_models() -> list[dict]:
    """Models a comparison can use: the registry's, then finished training runs (base + adapter).

    Returns:
        [{"name", "kind", "label"}].
    """
    from tunelab.models.registry import list_models

    out = [{"name": m["name"], "kind": m["kind"], "label": f"{m['name']} ({m['kind']})"} for m in list_models()]
    for run in jobs.list_jobs("runs"):
        if run.get("status") == "completed" and (jobs.job_dir("runs", run["id"]) / "output.json").exists():
            out.append({"name": run["id"], "kind": "run", "label": f"{run['id']} (fine-tuned run)"})
    return out


def check_model_count(models: list[str]) -> list[str]:
    """Refuse fewer than 2 or more than 4 models for a comparison."""
    if not MIN_MODELS <= len(models) <= MAX_MODELS:
        raise TuneLabError(f"compare takes {MIN_MODELS} to {MAX_MODELS} models, got {len(models)}")
    return models


def to_rows(doc: dict) -> list[dict]:
    """One flat row per (example, model), for CSV and tables."""
    return [{"index": ex["index"], "id": ex["id"], "model": m, "prompt": ex["prompt"],
             "reference": ex["reference"], **{k: o[k] for k in ("output", "rouge_l", "bleu", "exact_match", "latency_s")}}
            for ex in doc["examples"] for m, o in ex["outputs"].items()]


def export_text(doc: dict, fmt: str) -> str:
    """A report as CSV (one row per example and model) or JSON (the whole document)."""
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False, indent=2)
    if fmt == "html":  # every value escaped: a record's text is data, never markup
        from tunelab.evals.html_export import to_html

        return to_html(doc, to_rows(doc))
    if fmt != "csv":
        raise TuneLabError(f"unknown export format {fmt!r}: use csv or json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["index", "id", "model", "prompt", "reference", "output",
                                             "rouge_l", "bleu", "exact_match", "latency_s"])
    writer.writeheader()
    writer.writerows(to_rows(doc))
    return buf.getvalue()


JUDGE_FILE = "judge.json"  # the judge's verdicts in a report's folder (evals/judge.py writes it)


def before_after(doc: dict) -> list[dict]:
    """For each fine-tuned run in a report, its base model's entry from the newest finished report on the same data.

    Returns:
        [{"run", "base", "base_report", "after": entry, "before": entry}] (before is None if the
        base was never evaluated on this dataset).
    """
    out = []
    for ref_entry, after in zip(doc["model_refs"], doc["models"]):
        base = (ref_entry["ref"].get("base") or {}).get("name")
        if not base:
            continue
        pair = {"run": after["name"], "base": base, "base_report": None, "after": after, "before": None}
        in_doc = next((m for m in doc["models"] if m["name"] == base), None)
        if in_doc:
            pair.update(before=in_doc, base_report=doc["report"])
        else:
            for rep in list_reports():
                if rep["status"] == "completed" and rep["data"] == doc["data"]["name"] and base in (rep["models"] or []):
                    other = load_report(rep["id"])
                    pair.update(before=next(m for m in other["models"] if m["name"] == base), base_report=rep["id"])
                    break
        out.append(pair)
    return out
