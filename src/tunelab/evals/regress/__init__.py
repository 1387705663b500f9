"""The regression suite: did tuning break what the run did not train on?

A run's base and its tuned weights both go through EleutherAI's lm-evaluation-harness on the same
tasks: TuneLab's shipped instruction-following set (`tasks/`, local YAML + JSONL, checked
programmatically), a user's own task folder (`--tasks-dir`), or any lm-eval task by name when a Hub
is reachable (`--task`). Per task: each model's score with lm-eval's own standard error, and the paired
difference over the same items (regress_stats). The document lands in `runs/<id>/regress.json` (the
items side by side in `regress-samples.jsonl`), where the run's page reads it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.evals.regress import stats as regress_stats
from tunelab.jsonio import read_json, write_json

SUITE_DIR = Path(__file__).resolve().parent / "tasks"
FILE = "regress.json"
SAMPLES_FILE = "regress-samples.jsonl"
BOOTSTRAP_ITERS = 1000  # > 0, or lm-eval leaves every stderr N/A
SEED = 1234


def _offline_env() -> None:
    # lm-eval and datasets read these when imported: set them first. A user who unset HF_HUB_OFFLINE
    # (a reachable Hub, for --task NAME) gets datasets online too.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("HF_DATASETS_CACHE", str(workspace.path("cache", "hf-datasets")))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _resolve_files(files, folder: Path):
    """data_files relative to the YAML's folder (lm-eval reads them relative to the working directory)."""
    if isinstance(files, str):
        p = Path(files).expanduser()
        return str(p if p.is_absolute() or "://" in files else (folder / p).resolve())
    if isinstance(files, list):
        return [_resolve_files(f, folder) for f in files]
    if isinstance(files, dict):
        return {k: _resolve_files(v, folder) for k, v in files.items()}
    return files


def task_specs(tasks_dir: str | Path) -> tuple[list[dict], dict]:
    """Every task YAML under a folder as an lm-eval config dict (its data files made absolute).

    Returns:
        (configs, provenance {task: {"yaml", "sha256", "data_sha256"}}).
    """
    _offline_env()
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = Path(tasks_dir).expanduser()
    if not folder.is_dir():
        raise TuneLabError(f"task folder {tasks_dir} not found")
    specs, prov = [], {}
    for yml in sorted(folder.rglob("*.yaml")):
        try:
            cfg = load_yaml(yml, resolve_func=True)
        except Exception as exc:  # a broken YAML or a missing !function: one line naming the file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TuneLabError(f"task file {yml} cannot be read: {reason}") from None
        if not isinstance(cfg.get("task"), str) or "group" in cfg:
            continue  # groups, tags and shared includes are not tasks of their own
        kwargs = dict(cfg.get("dataset_kwargs") or {})
        data_sha = {}
        if "data_files" in kwargs:
            kwargs["data_files"] = _resolve_files(kwargs["data_files"], yml.parent)
            files = kwargs["data_files"]
            for f in [files] if isinstance(files, str) else (files if isinstance(files, list) else []):
                if Path(f).is_file():
                    data_sha[Path(f).name] = _sha256(Path(f))
                elif "://" not in f:
                    raise TuneLabError(f"task {cfg['task']}: data file {f} not found")
            cfg["dataset_kwargs"] = kwargs
        specs.append(cfg)
        prov[cfg["task"]] = {"yaml": str(yml), "sha256": _sha256(yml), "data_sha256": data_sha}
    if not specs:
        raise TuneLabError(f"no lm-eval task YAML (with a `task:` name) found under {tasks_dir}")
    return specs, prov


def _task_manager(named: list[str]):
    from lm_eval.tasks import TaskManager

    # Indexing lm-eval's own few thousand task YAMLs takes seconds: only when a task is named.
    tm = TaskManager(include_defaults=bool(named))
    unknown = [n for n in named if n not in tm.all_tasks]
    if unknown:
        raise TuneLabError(f"unknown lm-eval task {unknown[0]!r} (see `lm-eval ls tasks`)")
    if named:  # fetch (or find cached) their data now, before two models are loaded for nothing
        try:
            tm.load(named)
        except (ConnectionError, OSError) as exc:
            raise _data_error(exc) from None
    return tm


def _data_error(exc: BaseException) -> TuneLabError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return TuneLabError(f"a task's data is not on this machine and the Hub is off (HF_HUB_OFFLINE=1): {first}")
    return TuneLabError(f"a task's data could not be loaded: {first}")


def _evaluate(model, tok, specs: list, tm, limit: int | None, batch_size: int, log) -> dict:
    """One model through lm-eval's simple_evaluate: results and logged samples."""
    import logging

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its notes on a passed-in model are for multi-GPU use
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    try:
        out = simple_evaluate(model=lm, tasks=specs, task_manager=tm, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS,
                              log_samples=True, apply_chat_template=True, random_seed=SEED, numpy_random_seed=SEED,
                              torch_random_seed=SEED, fewshot_random_seed=SEED)
    except (ConnectionError, OSError) as exc:
        raise _data_error(exc) from None
    if out is None:
        raise TuneLabError("lm-eval returned no results")
    return out


def _primary(result: dict) -> tuple[str, str]:
    """(metric, filter) of a task's first metric, e.g. ("pass", "none") or ("acc", "none")."""
    for key in result:
        if "," in key and "_stderr" not in key.split(",")[0]:
            metric, flt = key.split(",", 1)
            return metric, flt
    raise TuneLabError("lm-eval reported no metric for a task")


def _per_doc(samples: list[dict], metric: str, flt: str) -> dict[int, dict]:
    rows = {}
    for s in samples:
        if s.get("filter", flt) != flt or not isinstance(s.get(metric), (int, float, bool)):
            continue
        resp = s.get("filtered_resps") or s.get("resps") or [""]
        while isinstance(resp, list) and resp:
            resp = resp[0]
        rows[int(s["doc_id"])] = {"score": float(s[metric]), "answer": resp if isinstance(resp, str) else str(resp),
                                  "prompt": (s.get("doc") or {}).get("prompt") or ""}
    return rows


def _load(model_ref, log) -> tuple:
    from dataclasses import replace

    from tunelab.models.loading import load_model, load_tokenizer

    if model_ref.kind == "run" and model_ref.extra.get("method") in ("lora", "qlora"):
        # Same weights as base + adapter, at the base's speed (see models.convert.merged_dir).
        from tunelab.models.convert import merged_dir

        merged = replace(model_ref, kind="hf", path=str(merged_dir(model_ref)), base=None, adapter="")
        model, _ = load_model(merged)
        tok = load_tokenizer(model_ref)
    else:
        model, tok = load_model(model_ref)
    tok.padding_side = "left"
    return model, tok


def _versions() -> dict:
    import importlib.metadata as md

    import tunelab

    out = {"tunelab": tunelab.__version__}
    for pkg in ("lm_eval", "torch", "transformers", "peft", "datasets", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def run(run_id: str, tasks_dir: str | Path | None = None, tasks: list[str] | None = None, limit: int | None = None,
        batch_size: int = 8, log: Callable[[str], None] | None = None) -> dict:
    """Evaluate a run's base and tuned weights on the regression tasks and store the comparison.

    Args:
        run_id: a training run with saved weights.
        tasks_dir: a folder of lm-eval task YAMLs (default: the shipped suite, unless `tasks` names some).
        tasks: lm-eval task names (their data from the Hub or its cache), run after the folder's tasks.
        limit: evaluate only the first N items of each task.
        batch_size: items generated together.
        log: progress lines (default: stderr).
    Returns:
        {"run", "base", "tasks": [{"task", "metric", "n", "base", "tuned", "stderr": {"base", "tuned"}, "diff",
        "ci", "p", "p_adjusted", "test", "a_only", "b_only", "mde", "verdict"}], "summary", "provenance"}.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    _offline_env()
    from tunelab.models import registry, run_output
    from tunelab.models.loading import release_memory

    run_dir = workspace.subdir("runs") / workspace.validate_name(run_id, "run id")
    out = run_output.read(run_dir) if run_dir.is_dir() else None
    if not run_dir.is_dir():
        raise TuneLabError(f"unknown run {run_id!r} (see `tunelab runs list`)")
    if not out:
        raise TuneLabError(f"run {run_id} has no saved weights yet (it has not reached its first checkpoint)")
    if limit is not None and limit < 1:
        raise TuneLabError("--limit must be at least 1")
    named = list(tasks or [])
    specs, prov = task_specs(tasks_dir or SUITE_DIR) if (tasks_dir or not named) else ([], {})
    tm = _task_manager(named)
    specs = specs + named
    started = time.time()
    results = {}
    for role, ref in (("base", registry.resolve(out["base"])), ("tuned", registry.resolve(run_id))):
        log(f"regress: {role} ({ref.name}) on {len(specs)} task(s) ...")
        model, tok = _load(ref, log)
        results[role] = _evaluate(model, tok, specs, tm, limit, batch_size, log)
        del model, tok
        release_memory()
    rows, lines = [], []
    for task in sorted(results["base"]["results"]):
        b_res, t_res = results["base"]["results"][task], results["tuned"]["results"].get(task, {})
        if task not in results["base"].get("samples", {}):
            continue  # a group's aggregate row: its member tasks are listed themselves
        metric, flt = _primary(b_res)
        b_docs = _per_doc(results["base"]["samples"][task], metric, flt)
        t_docs = _per_doc(results["tuned"]["samples"].get(task, []), metric, flt)
        ids = sorted(set(b_docs) & set(t_docs))
        stats = regress_stats.paired([b_docs[i]["score"] for i in ids], [t_docs[i]["score"] for i in ids], seed=SEED)
        hib = results["base"].get("higher_is_better", {}).get(task, {}).get(metric, True)
        key, skey = f"{metric},{flt}", f"{metric}_stderr,{flt}"
        checks = next((sp.get("metadata", {}).get("checks") for sp in specs
                       if isinstance(sp, dict) and sp.get("task") == task), None)
        rows.append({"task": task, "checks": checks, "metric": metric, "higher_is_better": bool(hib), "n": stats["n"],
                     "base": b_res.get(key), "tuned": t_res.get(key),
                     "stderr": {"base": _num(b_res.get(skey)), "tuned": _num(t_res.get(skey))},
                     **{k: stats[k] for k in ("diff", "ci", "p", "test", "a_only", "b_only", "diff_stderr", "mde")}})
        lines += [{"task": task, "doc_id": i, "prompt": b_docs[i]["prompt"], "base": b_docs[i]["answer"],
                   "tuned": t_docs[i]["answer"], "base_score": b_docs[i]["score"], "tuned_score": t_docs[i]["score"]}
                  for i in ids]
    for row, p_adj in zip(rows, regress_stats.holm([r["p"] for r in rows])):
        row["p_adjusted"] = p_adj
        row["verdict"] = regress_stats.verdict(row["diff"], p_adj, row["higher_is_better"])
    summary = {v: sum(r["verdict"] == v for r in rows) for v in ("kept", "lost", "gained")}
    doc = {"run": run_id, "base": out["base"], "tasks": rows, "summary": summary,
           "provenance": {"run": {"id": run_id, "method": out.get("method"), "step": out.get("step"),
                                  "lineage": out.get("lineage") or {}},
                          "base": {"model": out["base"], "revision": registry.resolve(out["base"]).extra.get("revision")},
                          "tasks": prov, "named_tasks": named, "limit": limit, "batch_size": batch_size,
                          "seed": SEED, "bootstrap_iters": BOOTSTRAP_ITERS, "apply_chat_template": True,
                          "versions": _versions(), "machine": {"platform": platform.platform(),
                                                               "python": platform.python_version(),
                                                               "processor": platform.processor() or platform.machine()},
                          "started": round(started, 3), "seconds": round(time.time() - started, 1)}}
    _write_samples(run_dir, lines)
    write_json(run_dir / FILE, doc)
    return doc


KIND = "regressions"  # the background job's folder: regressions/<run id>/ (status, log); the result goes to the run


def job_status(run_id: str) -> dict | None:
    """The run's regression job (queued, running, completed, failed...), or None when none was started."""
    from tunelab import jobs

    return jobs.read_status(jobs.job_dir(KIND, run_id))


def start(run_id: str, tasks_dir: str | None = None, tasks: list[str] | None = None, limit: int | None = None,
          batch_size: int = 8) -> dict:
    """Launch `tunelab reports regress RUN` in the background (one at a time per run); returns its status."""
    from tunelab import jobs
    from tunelab.models import run_output

    run_dir = workspace.subdir("runs") / workspace.validate_name(run_id, "run id")
    if not run_dir.is_dir():
        raise TuneLabError(f"unknown run {run_id!r} (see `tunelab runs list`)")
    if not run_output.read(run_dir):
        raise TuneLabError(f"run {run_id} has no saved weights yet (it has not reached its first checkpoint)")
    st = job_status(run_id)
    if st and st.get("status") in jobs.ACTIVE:
        raise TuneLabError(f"the regression suite of run {run_id} is already {st['status']}")
    d = jobs.job_dir(KIND, run_id)
    if d.exists():
        workspace.discard(d)  # the last job's status and log; its result stays in the run folder
    argv = ["reports", "regress", run_id, "--batch-size", str(batch_size), "--as-job"]
    argv += ["--tasks-dir", str(Path(tasks_dir).expanduser().resolve())] if tasks_dir else []
    argv += [a for name in tasks or [] for a in ("--task", name)]
    argv += ["--limit", str(limit)] if limit else []
    d.mkdir(parents=True)
    jobs.write_status(d, id=run_id, status="queued", created=time.time(), pid=None, run=run_id, progress="")
    jobs.launch(KIND, run_id, argv)
    return job_status(run_id) or {}


def _num(v):
    return float(v) if isinstance(v, (int, float)) else None  # lm-eval writes "N/A" where it has none


def _write_samples(run_dir: Path, lines: list[dict]) -> None:
    import json

    tmp = run_dir / f".{SAMPLES_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    os.replace(tmp, run_dir / SAMPLES_FILE)


def load(run_id: str) -> dict | None:
    """The run's stored regression result, or None before one was run."""
    return read_json(workspace.subdir("runs") / workspace.validate_name(run_id, "run id") / FILE)


def load_samples(run_id: str) -> list[dict]:
    """The stored items side by side: {"task", "doc_id", "prompt", "base", "tuned", "base_score", "tuned_score"}."""
    from tunelab.jsonio import read_jsonl

    return read_jsonl(workspace.subdir("runs") / workspace.validate_name(run_id, "run id") / SAMPLES_FILE)
