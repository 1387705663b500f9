"""Hyperparameter sweeps on Optuna: each trial is an ordinary run, pruned from the eval losses it computes.

sweeps/<id>/ holds spec.json (model, data, the train settings every trial shares, the parameter space,
metric, pruner, trial count, storage URL), study.db (Optuna's RDB storage on SQLite, unless --storage
names another URL), status.json and job.log. The sweep job (`sweep work ID --job`) and any extra
`tunelab sweep work ID` process share the study through its storage:

- a worker asks Optuna for a trial, creates a run (train/runs.py) with the trial's parameters as user
  settings, tagged with the sweep id, and follows its metrics.jsonl: each eval loss goes to
  `trial.report(value, step)`; when `trial.should_prune()` says so the run is stopped (runs.stop) and
  marked `pruned` (its curve stays);
- exactly N trials finish across workers: after asking, a worker counts the live trials numbered below
  its own; a surplus trial is closed at once (FAIL, user attr "surplus") and never runs;
- the run id is chosen and stored in the trial before the run folder exists, so a worker killed at any
  point leaves no run its trial does not name;
- resume adopts the trials of a dead worker: a run still going is followed again, a finished one is told,
  an interrupted or never-launched one is resumed from its last checkpoint in the same run folder, and a
  trial killed before its folder existed is retried with the same parameters (enqueue_trial). Finished
  trials never run again and no trial makes a second run.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from pathlib import Path

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, read_json, write_json

METRICS = ("eval_loss",)
PRUNERS = ("median", "hyperband", "none")
SURPLUS, STALE = "surplus", "stale"  # FAIL trials that never count (see the module doc)
KIND = "sweeps"


def sweep_dir(sweep_id: str) -> Path:
    d = jobs.job_dir(KIND, sweep_id)
    if not (d / "spec.json").exists():
        raise TuneLabError(f"unknown sweep {sweep_id!r} (see `tunelab sweep list`)")
    return d


def parse_param(text: str) -> dict:
    """`name=low:high[:log|:int]` (a range) or `name=a,b,c` (choices) -> a parameter spec."""
    from tunelab.train.config import all_fields

    name, sep, space = str(text).partition("=")
    name = name.strip().replace("-", "_")
    known = {f.name for _, f in all_fields()}
    if not sep or not space:
        raise TuneLabError(f"--param {text!r}: use NAME=LOW:HIGH[:log|:int] or NAME=A,B,C")
    if name not in known:
        raise TuneLabError(f"--param {text!r}: unknown training setting {name!r} (see `tunelab train --help`)")
    if ":" in space:
        parts = space.split(":")
        scale = parts[2] if len(parts) == 3 else ""
        if len(parts) not in (2, 3) or scale not in ("", "log", "int"):
            raise TuneLabError(f"--param {text!r}: a range is LOW:HIGH, LOW:HIGH:log or LOW:HIGH:int")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise TuneLabError(f"--param {text!r}: LOW and HIGH must be numbers") from None
        if not low < high:
            raise TuneLabError(f"--param {text!r}: need LOW < HIGH")
        if scale == "log" and low <= 0:
            raise TuneLabError(f"--param {text!r}: need LOW > 0 for a log scale")
        if scale == "int":
            return {"name": name, "type": "int", "low": int(low), "high": int(high)}
        return {"name": name, "type": "float", "low": low, "high": high, "log": scale == "log"}
    choices = [_scalar(c.strip()) for c in space.split(",") if c.strip()]
    if not choices:
        raise TuneLabError(f"--param {text!r}: no choices")
    return {"name": name, "type": "choice", "choices": choices}


def parse_settings(lines: list[str]) -> dict:
    """`NAME=VALUE` lines (the Runs page's fixed settings): train settings every trial shares, type-checked."""
    from tunelab.train.config import TrainConfig, all_fields

    known = {f.name for _, f in all_fields()} - {"model", "data"}
    given = {}
    for line in lines:
        name, sep, value = str(line).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise TuneLabError(f"setting {line!r}: use NAME=VALUE with a training setting's name (see `tunelab train --help`)")
        given[name] = value.strip()
    cfg = TrainConfig.for_method(given.get("method") or "lora")
    cfg.set(given)  # a bad value: one line now, not when the first trial starts
    flat = cfg.flat()
    return {k: flat[k] for k in given}


def _scalar(s: str):
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def suggest(trial, params: list[dict]) -> dict:
    out = {}
    for p in params:
        if p["type"] == "int":
            out[p["name"]] = trial.suggest_int(p["name"], p["low"], p["high"])
        elif p["type"] == "float":
            out[p["name"]] = trial.suggest_float(p["name"], p["low"], p["high"], log=p.get("log", False))
        else:
            out[p["name"]] = trial.suggest_categorical(p["name"], p["choices"])
    return out


def _pruner(name: str):
    import optuna

    if name == "median":  # one evaluation in before comparing; the first trial is never pruned
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def storage_url(sweep_id: str) -> str:
    spec = read_json(sweep_dir(sweep_id) / "spec.json") or {}
    return spec.get("storage") or f"sqlite:///{sweep_dir(sweep_id) / 'study.db'}"


def load_study(sweep_id: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = read_json(sweep_dir(sweep_id) / "spec.json")
    try:
        return optuna.load_study(study_name=sweep_id, storage=_storage(storage_url(sweep_id)),
                                 pruner=_pruner(spec["prune"]))
    except KeyError:
        raise TuneLabError(f"sweep {sweep_id}: no study of that name in {storage_url(sweep_id)}") from None


def _storage(url: str):
    import optuna

    if url.startswith("sqlite:"):  # several processes write one SQLite file: wait for the lock, not fail
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


def create(model: str, data: str, trials: int, params: list[str], settings: dict | None = None,
           metric: str = "eval_loss", prune: str = "median", storage: str | None = None) -> str:
    """Check the sweep, write sweeps/<id>/ and create its Optuna study; returns the sweep id (not launched)."""
    import optuna

    from tunelab.models import registry

    if metric not in METRICS:
        raise TuneLabError(f"--metric {metric}: only {', '.join(METRICS)} is supported so far")
    if prune not in PRUNERS:
        raise TuneLabError(f"--prune {prune}: use {', '.join(PRUNERS)}")
    if int(trials) < 1:
        raise TuneLabError(f"--trials must be 1 or more, not {trials}")
    if not params:
        raise TuneLabError("a sweep needs at least one --param NAME=SPACE")
    space = [parse_param(p) for p in params]
    names = [p["name"] for p in space]
    if len(set(names)) != len(names):
        raise TuneLabError("each setting can be swept once: a --param name repeats")
    from tunelab.data import store

    registry.resolve(model)  # an unknown model: one line, no folder
    store.resolve_version(data, None)  # an unknown dataset too
    sweep_id = jobs.new_id("sweep")
    d = jobs.job_dir(KIND, sweep_id)
    d.mkdir(parents=True)
    spec = {"sweep": sweep_id, "model": model, "data": data, "trials": int(trials), "params": space,
            "settings": dict(settings or {}), "metric": metric, "prune": prune, "storage": storage}
    write_json(d / "spec.json", spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        optuna.create_study(study_name=sweep_id, storage=_storage(storage_url(sweep_id)), direction="minimize",
                            pruner=_pruner(prune))
    except Exception as exc:  # a bad --storage URL: one line, and no half-made folder
        workspace.discard(d)
        raise TuneLabError(f"cannot create the study in {storage or 'the workspace'}: {exc}") from None
    jobs.write_status(d, id=sweep_id, status="queued", created=time.time(), model=model, data=data,
                      trials=int(trials), error=None)
    return sweep_id


def launch(sweep_id: str) -> int:
    """Start the sweep's background job (one worker); returns its pid."""
    sweep_dir(sweep_id)
    return jobs.launch(KIND, sweep_id, ["sweep", "work", sweep_id, "--job"]).pid


def resume(sweep_id: str) -> dict:
    """Relaunch a sweep whose job died or was stopped: the remaining trials only."""
    d = sweep_dir(sweep_id)
    st = jobs.read_status(d) or {}
    if st.get("status") in jobs.ACTIVE:
        raise TuneLabError(f"{sweep_id} is already {st['status']}")
    jobs.write_status(d, status="queued", error=None, stop_requested=False)
    launch(sweep_id)
    return jobs.read_status(d) or {}


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _counted(t) -> bool:
    """A trial that counts toward N: anything but a surplus or a stale (retried) one."""
    return t.user_attrs.get("closed") not in (SURPLUS, STALE)


def finished(t) -> bool:
    import optuna

    return t.state != optuna.trial.TrialState.RUNNING and t.state != optuna.trial.TrialState.WAITING and _counted(t)


def _worker_dead(t) -> bool:
    host, _, pid = str(t.user_attrs.get("worker", "")).partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's worker: its own resume adopts it
    return not jobs.pid_alive(int(pid))


def adopt(study, sweep_id: str, log=print) -> None:
    """Take over the running trials of this machine's dead workers (see the module doc)."""
    import optuna

    from tunelab.train import manage, runs

    with locked(sweep_dir(sweep_id) / ".adopt.lock"):
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not _worker_dead(t):
                continue
            trial = optuna.trial.Trial(study, t._trial_id)
            trial.set_user_attr("worker", _me())
            run_id = t.user_attrs.get("run")
            folder = jobs.job_dir("runs", run_id) if run_id else None
            st = (jobs.read_status(folder) or {}) if folder and (folder / "config.yaml").exists() else {}
            status = st.get("status")
            if folder and folder.exists() and status is None:  # killed while runs.create wrote it: never ran
                shutil.rmtree(folder)
            if status == "queued" and not st.get("pid"):  # killed between creating the folder and launching
                manage.tag(run_id, add=[sweep_id])
                runs.start(run_id)
            elif status == "interrupted":  # its process died with the worker (a machine restart, a kill)
                log(f"trial {t.number}: resuming {run_id} ({status}) from its last checkpoint")
                runs.resume(run_id)
            if status is not None:
                log(f"trial {t.number}: adopting {run_id} ({status})")
                _finish(study, trial, sweep_id, run_id, log)
                continue
            log(f"trial {t.number}: killed before its run {run_id or '-'} existed: retried")
            trial.set_user_attr("closed", STALE)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)


def work(sweep_id: str, log=print) -> int:
    """Run trials of the sweep until N have finished across every worker; returns the trials this one ran."""
    import optuna

    spec = read_json(sweep_dir(sweep_id) / "spec.json")
    study = load_study(sweep_id)
    adopt(study, sweep_id, log)
    done = 0
    while True:
        trials = study.get_trials(deepcopy=False)
        if sum(1 for t in trials if _counted(t)) >= spec["trials"]:
            return done
        trial = study.ask()
        trial.set_user_attr("worker", _me())
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and _counted(t)]
        if len(before) >= spec["trials"]:  # another worker asked first: this one would be trial N+1
            trial.set_user_attr("closed", SURPLUS)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return done
        values = suggest(trial, spec["params"])
        run_id = jobs.new_id("run")
        trial.set_user_attr("run", run_id)  # before the folder exists: a kill from here on leaves a named run
        try:
            _create_run(spec, values, run_id)
        except TuneLabError as exc:
            log(f"trial {trial.number} {values}: cannot start: {exc}")
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            done += 1
            continue
        log(f"trial {trial.number} {values}: run {run_id}")
        _finish(study, trial, sweep_id, run_id, log)
        done += 1


def _create_run(spec: dict, values: dict, run_id: str) -> None:
    from tunelab.train import manage, recipe, runs
    from tunelab.train.config import TrainConfig

    given = dict(spec["settings"], model=spec["model"], data=spec["data"], **values)
    cfg = TrainConfig.for_method(given.get("method", "lora"))
    cfg.set(given)
    recipe.apply(cfg, set(given))
    runs.create(cfg, run_id=run_id)
    manage.tag(run_id, add=[spec["sweep"]])
    runs.start(run_id)


def _finish(study, trial, sweep_id: str, run_id: str, log) -> None:
    """Follow the run: report each eval loss, prune it when Optuna says so, tell the outcome."""
    import optuna

    from tunelab.train import runs

    seen = set()
    while True:
        st = runs.status(run_id)
        for r in runs.metrics(run_id):
            v = r.get("eval_loss")
            if v is None or r["step"] in seen or not math.isfinite(v):
                continue
            seen.add(r["step"])
            trial.report(float(v), r["step"])
            if st.get("status") in jobs.ACTIVE and trial.should_prune():
                log(f"trial {trial.number}: pruned at step {r['step']} (eval loss {v:.4f})")
                _prune(run_id)
                trial.set_user_attr("value", float(v))
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return
        if st.get("status") not in jobs.ACTIVE:
            break
        time.sleep(0.5)
    evals = [r["eval_loss"] for r in runs.metrics(run_id) if r.get("eval_loss") is not None]
    if st.get("status") == "completed" and evals:
        log(f"trial {trial.number}: {run_id} completed, eval loss {evals[-1]:.4f}")
        study.tell(trial, float(evals[-1]))
    else:
        log(f"trial {trial.number}: {run_id} {st.get('status')}" + ("" if evals else " without an eval loss"))
        trial.set_user_attr("error", st.get("error") or f"run {st.get('status')}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _prune(run_id: str) -> None:
    """Stop the run (it checkpoints) and record it `pruned` once its process has ended."""
    from tunelab.train import runs

    try:
        runs.stop(run_id)
    except TuneLabError:
        pass  # it ended on its own meanwhile
    for _ in range(600):
        if runs.status(run_id).get("status") not in jobs.ACTIVE:
            break
        time.sleep(0.2)
    jobs.mark_pruned(runs.run_dir(run_id))


def run_job(sweep_id: str) -> int:
    """The launched sweep job: one worker inside the job lifecycle (stop = SIGTERM ends it)."""
    with jobs.running(KIND, sweep_id) as job:
        n = work(sweep_id, log=lambda s: print(s, flush=True))
        job.update(progress=f"{n} trials run here")
    return 0


STATE_NAMES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def show(sweep_id: str) -> dict:
    """{"sweep", "status", ..., "trials": [{"number", "run", "params", "status", "value", "duration_s", "error"}],
    "best", "best_vs_second"} (the last: train/sweep_stats.py, None until two trials completed)."""
    from tunelab.train import runs, sweep_stats

    d = sweep_dir(sweep_id)
    spec = read_json(d / "spec.json")
    study = load_study(sweep_id)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not _counted(t):
            continue
        value = t.value if t.value is not None else t.user_attrs.get("value")
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number, "run": t.user_attrs.get("run"), "params": t.params,
                     "status": STATE_NAMES.get(t.state.name, t.state.name.lower()), "value": value,
                     "duration_s": dur, "error": t.user_attrs.get("error")})
    done = [r for r in rows if r["status"] == "completed" and r["value"] is not None]
    best = min(done, key=lambda r: r["value"]) if done else None
    st = jobs.read_status(d) or {}
    return {"sweep": sweep_id, "status": st.get("status"), "metric": spec["metric"], "trials_wanted": spec["trials"],
            "model": spec["model"], "data": spec["data"], "trials": rows, "best": best,
            "best_vs_second": sweep_stats.best_vs_second(rows, runs.metrics)}


def list_sweeps() -> list[dict]:
    out = []
    for st in jobs.list_jobs(KIND):
        spec = read_json(jobs.job_dir(KIND, st["id"]) / "spec.json") or {}
        out.append({"sweep": st["id"], "status": st.get("status"), "model": spec.get("model"),
                    "data": spec.get("data"), "trials": spec.get("trials"), "created": st.get("created")})
    return out


def promote(sweep_id: str, name: str) -> dict:
    """Register the best trial's run as a named model (`tunelab models list` shows it)."""
    from tunelab.models import registry

    best = show(sweep_id)["best"]
    if not best:
        raise TuneLabError(f"sweep {sweep_id} has no completed trial yet")
    entry = registry.add_model(name, best["run"])
    return {"sweep": sweep_id, "model": name, "run": best["run"], "value": best["value"], "entry": entry}


def study_for_plots(sweep_id: str):
    """The Optuna study (for optuna.visualization's plotly figures on the Runs page)."""
    return load_study(sweep_id)
