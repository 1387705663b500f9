"""Several runs side by side (the Runs page): filters, curves, the config keys that differ, final metrics,
before/after report results, lineage, and the queue. Plain Python: the page only lays these out."""

from __future__ import annotations

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.train import manage, runs

MAX_SELECTED = 5
CURVES = ("loss", "eval_loss")
FILTERS = ("tag", "status", "model", "data")


def _sweeps() -> set[str]:
    """Ids of the workspace's sweeps (a trial run carries its sweep's id as a tag)."""
    return {st["id"] for st in jobs.list_jobs("sweeps")}


def list_rows(tag: str | None = None, status: str | None = None, model: str | None = None,
              data: str | None = None) -> list[dict]:
    """Every run (newest first) with name, tags, sweep and queue position, narrowed by the filters given.

    Args:
        tag, status, model, data: keep only runs with that tag / status / base model / dataset; None keeps all.
    Returns:
        manage.list_runs rows, each with "sweep" (the sweep it is a trial of, or None).
    """
    sweeps = _sweeps()
    out = []
    for r in manage.list_runs():
        r = dict(r, status=r.get("status") or "queued",
                 sweep=next((t for t in r.get("tags") or [] if t in sweeps), None))
        if tag and tag not in r["tags"]:
            continue
        if (status and r["status"] != status) or (model and r.get("model") != model) or (data and r.get("data") != data):
            continue
        out.append(r)
    return out


def filter_options(rows: list[dict]) -> dict[str, list[str]]:
    """The values each filter can take among rows: {"tag", "status", "model", "data"} -> sorted values."""
    return {"tag": sorted({t for r in rows for t in r.get("tags") or []}),
            "status": sorted({r["status"] for r in rows if r.get("status")}),
            "model": sorted({r["model"] for r in rows if r.get("model")}),
            "data": sorted({r["data"] for r in rows if r.get("data")})}


def check_selection(run_ids: list[str]) -> list[str]:
    """The runs to compare, in order and without repeats; at most MAX_SELECTED."""
    ids = list(dict.fromkeys(run_ids))
    if len(ids) > MAX_SELECTED:
        raise TuneLabError(f"compare at most {MAX_SELECTED} runs at once, not {len(ids)}")
    for rid in ids:
        runs.run_dir(rid)  # an unknown run: one line
    return ids


def curves(run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{run: {"loss": [(step, value)], "eval_loss": [(step, value)]}} from each run's metrics.jsonl."""
    out = {}
    for rid in run_ids:
        rows = runs.metrics(rid)
        out[rid] = {k: [(r["step"], r[k]) for r in rows if r.get(k) is not None] for k in CURVES}
    return out


def _flat(run_id: str) -> dict:
    try:
        return runs.config(run_id).flat()
    except TuneLabError:  # a damaged config.yaml: that run shows no settings
        return {}


def config_diff(run_ids: list[str]) -> list[dict]:
    """The settings whose values differ between the runs: [{"setting", run_id: value, ...}], in config order."""
    flats = {rid: _flat(rid) for rid in run_ids}
    keys = list(dict.fromkeys(k for f in flats.values() for k in f))
    out = []
    for k in keys:
        values = [flats[rid].get(k) for rid in run_ids]
        if any(v != values[0] for v in values[1:]):
            out.append({"setting": k, **{rid: flats[rid].get(k) for rid in run_ids}})
    return out


def final_metrics(run_id: str) -> dict:
    """A run's outcome: status, steps, last training loss, last and best eval loss, and its before/after report.

    Returns:
        {"run", "status", "step", "max_steps", "loss", "eval_loss", "best_eval_loss", "best_step",
         "report", "base_rouge_l", "tuned_rouge_l", "base_exact_match", "tuned_exact_match", "verdict"}
         (report fields None while the run has no report).
    """
    from tunelab.evals import auto

    st = runs.status(run_id)
    rows = runs.metrics(run_id)
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    evals = [(r["eval_loss"], r["step"]) for r in rows if r.get("eval_loss") is not None]
    best = min(evals) if evals else (None, None)
    out = {"run": run_id, "status": st.get("status"), "step": st.get("step", 0), "max_steps": st.get("max_steps"),
           "loss": losses[-1] if losses else None, "eval_loss": evals[-1][0] if evals else None,
           "best_eval_loss": best[0], "best_step": best[1], "report": None, "base_rouge_l": None,
           "tuned_rouge_l": None, "base_exact_match": None, "tuned_exact_match": None, "verdict": None}
    rep = auto.summary(run_id)
    if rep and rep.get("report"):
        out.update(report=rep["report"], verdict=rep.get("verdict_label") or rep.get("status"),
                   base_rouge_l=rep["base"].get("rouge_l"), tuned_rouge_l=rep["tuned"].get("rouge_l"),
                   base_exact_match=rep["base"].get("exact_match"), tuned_exact_match=rep["tuned"].get("exact_match"))
    elif rep:
        out["verdict"] = rep.get("status")
    return out


def lineage(run_id: str, sweeps: set[str] | None = None) -> dict:
    """Where a run came from: {"run", "base", "data", "data_version", "parent" (the run it continues), "sweep"}."""
    sweeps = _sweeps() if sweeps is None else sweeps
    try:
        lin = runs.lineage(run_id)
    except TuneLabError:
        lin = {}
    parent = lin.get("init_adapter")
    base = lin.get("base")
    if not parent and base and base.startswith("run-") and _is_run(base):
        parent = base  # trained on top of another run's weights
    return {"run": run_id, "base": base, "data": lin.get("data"), "data_version": lin.get("data_version"),
            "parent": parent, "sweep": next((t for t in manage.meta(run_id)["tags"] if t in sweeps), None)}


def _is_run(name: str) -> bool:
    try:
        runs.run_dir(name)
        return True
    except TuneLabError:
        return False


def compare(run_ids: list[str]) -> dict:
    """Everything the Runs page shows for a selection: {"runs", "curves", "config_diff", "metrics", "lineage"}."""
    ids = check_selection(run_ids)
    sweeps = _sweeps()
    return {"runs": ids, "curves": curves(ids), "config_diff": config_diff(ids),
            "metrics": [final_metrics(r) for r in ids], "lineage": [lineage(r, sweeps) for r in ids]}


def queue() -> list[dict]:
    """The waiting runs in the order they will start: [{"position", "run", "name", "model", "data", "tags"}]."""
    waiting = [r for r in manage.list_runs() if r.get("position")]
    return sorted(waiting, key=lambda r: r["position"])
