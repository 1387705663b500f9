"""Run folders: create, launch, queue, stop, resume, list and show training runs.

runs/<id>/ holds config.yaml, launch.json, status.json, pid, job.log, metrics.jsonl,
checkpoints/step-N/ and, from the first checkpoint, adapter/ (or model/) and output.json, which
make the run id usable as a MODEL everywhere. One run trains at a time by default: a launched
worker waits (status `queued`) until no other run is running and no older queued run is waiting.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import yaml

from tunelab import jobs, workspace
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, read_json, read_jsonl, write_json
from tunelab.models import registry
from tunelab.train import validate
from tunelab.train.config import LAUNCHERS, PREFERENCE_METHODS, TrainConfig

SHOW_METRICS = ("step", "loss", "eval_loss", "learning_rate", "grad_norm")
ACCEL_CHILD = "TUNELAB_ACCELERATE_CHILD"
RANKS = "ranks"  # runs/<id>/ranks/<rank>.pid: the processes of a running `accelerate launch`


def run_dir(run_id: str) -> Path:
    d = jobs.job_dir("runs", run_id)
    if not (d / "config.yaml").exists():
        raise TuneLabError(f"unknown run {run_id!r} (see `tunelab runs list`)")
    return d


def create(cfg: TrainConfig, launcher: str = "python", num_processes: int = 1,
           accelerate_config: str | None = None, run_id: str | None = None) -> str:
    """Check the config cheaply, write a new run folder (status queued) and return its id.

    Args:
        cfg: the run's config (written to config.yaml).
        launcher: "python" (one process) or "accelerate" (`accelerate launch`).
        num_processes: processes for the accelerate launcher.
        accelerate_config: an `accelerate config` YAML (FSDP, DeepSpeed...), copied into the run folder.
        run_id: the id to use (a sweep records it in its trial first); a new one when None.
    Returns:
        The new run id.
    """
    from tunelab.train import tracking
    from tunelab.train.inputs import check_resume_from
    from tunelab.train.setup import base_and_init, check_method, check_parallel

    check_launch(launcher, num_processes)
    if accelerate_config:  # FSDP / DeepSpeed on a machine without GPUs: one line, nothing launched
        check_parallel(check_accelerate_config(accelerate_config), _has_cuda())
    check_resume_from(cfg.training.resume_from)
    validate.check(cfg)  # every number in range (train/validate.py), before any folder exists
    if not cfg.data.data:
        raise TuneLabError("no dataset given: pass --data NAME (see `tunelab data list`)")
    check_method(cfg.method.method)
    tracking.check(cfg.training.report_to)  # `--report-to wandb` without wandb: one line, nothing launched
    check_continuation(cfg)
    ref = registry.resolve(cfg.model.model)
    if ref.kind == "openai":
        raise TuneLabError(f"{cfg.model.model} is an HTTP endpoint: training needs local weights")
    base_and_init(cfg)  # init_adapter (or a run as --model) is a run with an adapter: checked before any folder
    if ref.kind == "hf":  # refuse pickled weights here, not in the background worker
        from tunelab.models.loading import check_safetensors

        check_safetensors(ref.path)
    # Pin the dataset version so a resume trains on exactly the same records.
    cfg.data.data_version = store.resolve_version(cfg.data.data, cfg.data.data_version)
    if cfg.data.eval_data:  # and the eval dataset's: a resume or a re-run of this config evaluates the same records
        cfg.data.eval_data_version = store.resolve_version(cfg.data.eval_data, cfg.data.eval_data_version)
    run_id = run_id or jobs.new_id("run")
    d = jobs.job_dir("runs", run_id)
    d.mkdir(parents=True)
    cfg.to_yaml(d / "config.yaml")
    write_json(d / "launch.json", {"launcher": launcher, "num_processes": int(num_processes)})
    if accelerate_config:
        (d / "accelerate.yaml").write_bytes(Path(accelerate_config).read_bytes())
    jobs.write_status(d, status="queued", created=time.time(), step=0, max_steps=cfg.training.max_steps or None,
                      model=cfg.model.model, data=cfg.data.data, method=cfg.method.method, error=None)
    return run_id


PROMPT_LEARNING = ("P_TUNING", "PROMPT_TUNING", "PREFIX_TUNING")  # peft_type of a soft-prompt adapter


def check_continuation(cfg: TrainConfig) -> None:
    """Refuse, in one line, a start adapter the method cannot continue consistently.

    A P-tuning run cannot be a start: PEFT saves its soft prompt's output only, not the prompt encoder that
    trains it (and loads it frozen), and LoRA, full or a preference method on top of it would mix the virtual
    tokens' positions with the paths that skip prompt tokens. --method ptuning on a LoRA run would keep
    training the LoRA adapter instead of a soft prompt.
    """
    init = cfg.method.init_adapter or (cfg.model.model if registry.resolve(cfg.model.model).kind == "run" else "")
    if not init:
        return
    parent = registry.resolve(init)
    if parent.kind != "run" or not parent.adapter:
        return  # base_and_init refuses it with its own line
    peft_type = str((read_json(Path(parent.adapter) / "adapter_config.json") or {}).get("peft_type", "")).upper()
    method = cfg.method.method
    if peft_type in PROMPT_LEARNING:
        what = "preference training" if method in PREFERENCE_METHODS else f"--method {method}"
        raise TuneLabError(f"{init} is a P-tuning run: {what} cannot start from it (its saved soft prompt has no "
                           "encoder left to train); start a new ptuning run, or start from the base model or a LoRA run")
    if method == "ptuning":
        kind = peft_type.lower() or "weights"
        raise TuneLabError(f"--method ptuning learns a new soft prompt: it cannot continue {init}'s {kind} adapter "
                           "(use that run's method, or the base model)")


def check_launch(launcher: str, num_processes: int) -> None:
    """Refuse an unknown launcher or a process count it cannot run, in one line."""
    if launcher not in LAUNCHERS:
        raise TuneLabError(f"unknown launcher {launcher!r}: use {' or '.join(LAUNCHERS)}")
    if int(num_processes) < 1:
        raise TuneLabError(f"--num-processes must be 1 or more, not {num_processes}")
    if int(num_processes) > 1 and launcher != "accelerate":
        raise TuneLabError(f"--num-processes {num_processes} needs --launcher accelerate (the python launcher is one process)")


def check_accelerate_config(path: str) -> str:
    """Refuse, in one line, an accelerate config file that is missing or that accelerate cannot load.

    Returns its distributed_type ("MULTI_GPU", "FSDP", "DEEPSPEED"...).
    """
    if not Path(path).is_file():
        raise TuneLabError(f"accelerate config {path!r} not found")
    from tunelab.train.setup import accelerate_kind

    try:
        return accelerate_kind(path)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TuneLabError(f"accelerate config {path!r} cannot be loaded: {line}") from exc


def omp_env(busy_cores: float | None = None) -> dict[str, str]:
    """OpenMP's wait policy for a worker: spin on idle cores, sleep when other processes use them.

    OpenMP threads spin between the thousands of small parallel regions of a step. On idle cores
    that is the fast choice; when another process holds a core, a spinning thread waits for its
    descheduled partner and a step gets 10-20x slower. SmolLM2 LoRA, 10 steps, 2 cores (tokens/s,
    quiet / one core held by a busy loop): OpenMP's default 542-562 / 24; PASSIVE 421-426 / 319-329;
    GOMP_SPINCOUNT 20000 484 / 164. So PASSIVE only when the cores are busy at launch (more than
    half a core in use by others over 0.3 s); an OMP_WAIT_POLICY the user set is kept.
    """
    if os.environ.get("OMP_WAIT_POLICY"):
        return {"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]}
    if busy_cores is None:
        import psutil

        busy_cores = psutil.cpu_percent(interval=0.3) / 100 * (psutil.cpu_count() or 1)
    return {} if busy_cores < 0.5 else {"OMP_WAIT_POLICY": "PASSIVE"}


def start(run_id: str) -> int:
    """Launch the run's worker process; returns its pid."""
    run_dir(run_id)  # refuses an unknown run
    proc = jobs.launch("runs", run_id, ["train", "--worker", run_id], env=omp_env())
    return proc.pid  # launch recorded it in status.json


def is_main_process() -> bool:
    """True outside distributed launches and on rank 0 inside them."""
    return os.environ.get("RANK", "0") == "0"


def status(run_id: str) -> dict:
    """status.json with dead processes noticed (a dead queued worker is interrupted too)."""
    return jobs.read_status(run_dir(run_id)) or {}


def wait_turn(job: jobs.Job) -> bool:
    """Block while another run trains or an older run waits; then mark this one running (job.start()).

    Returns False when a stop was requested while waiting.
    """
    d = job.dir
    if os.environ.get(ACCEL_CHILD):  # the accelerate wrapper already waited: rank 0 records its own pid
        return job.start()
    cfg = TrainConfig.from_yaml(d / "config.yaml")
    while not job.stopping:
        mine = read_json(d / "status.json") or {}  # re-read: `runs front` may move it up
        if (read_json(d / "status.json") or {}).get("status") == "stopped":  # stopped while queued
            return False
        with locked(workspace.subdir("runs") / ".queue.lock"):
            others = [j for j in jobs.list_jobs("runs") if j["id"] != d.name]
            busy = any(j["status"] == "running" for j in others) or any(
                j["status"] == "queued" and _rank(j) < _rank(mine) and jobs.job_alive(j)
                for j in others)
            if not busy or not cfg.training.wait_for_others:
                return job.start()
        time.sleep(1.0)
    return False


def worker(run_id: str) -> int:
    """Entry point of the launched process: train directly, or through `accelerate launch`."""
    d = run_dir(run_id)
    launch = read_json(d / "launch.json") or {}
    if launch.get("launcher") == "accelerate" and not os.environ.get(ACCEL_CHILD):
        return _accelerate(d, int(launch.get("num_processes", 1)))
    if os.environ.get(ACCEL_CHILD):  # `runs stop` signals every rank (each is a session of its own)
        (d / RANKS).mkdir(exist_ok=True)
        (d / RANKS / f"{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
    return main(d)


def _accelerate(d: Path, n: int) -> int:
    """Wait for the queue, then run the same worker under `accelerate launch` with n processes."""
    import subprocess

    # The children get SIGTERM from the process group and checkpoint; this wrapper just waits,
    # and records an outcome only when they could not (rank 0 owns the run's status meanwhile).
    signal.signal(signal.SIGTERM, lambda *a: None)
    job = jobs.Job("runs", d.name)
    if not wait_turn(job):
        job.finish("stopped")
        return 0
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n)]
    settings = {}
    if (d / "accelerate.yaml").exists():  # FSDP / DeepSpeed / multi-node settings live there
        cmd += ["--config_file", str(d / "accelerate.yaml")]
        settings = yaml.safe_load((d / "accelerate.yaml").read_text(encoding="utf-8")) or {}
    else:
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if n > 1:
            # torch's multi-process launcher: DDP over NCCL on GPUs, over gloo on CPUs. (--cpu would
            # start ONE process: accelerate's multi-CPU mode needs mpirun and a hostfile.)
            cmd.append("--multi_gpu")
    if n == 1 and not _has_cuda():
        cmd.append("--cpu")
    if n > 1 and int(settings.get("num_machines") or 1) == 1 and not settings.get("main_process_port"):
        cmd += ["--main_process_port", str(_free_port())]  # two runs must not meet on the default 29500
    cmd += ["-m", "tunelab", "train", "--worker", d.name]
    shutil.rmtree(d / RANKS, ignore_errors=True)
    try:
        rc = subprocess.call(cmd, env=dict(os.environ, **{ACCEL_CHILD: "1"}))
    finally:
        shutil.rmtree(d / RANKS, ignore_errors=True)  # the pids may be reused from now on
    st = read_json(d / "status.json") or {}
    if st.get("status") == "running":  # the children died without recording an outcome
        if st.get("stop_requested"):  # stopped before rank 0 took over the run's status
            job.finish("stopped")
        else:
            job.finish("failed" if rc else "interrupted", error=f"accelerate launch exited with {rc}")
    return rc


def _rank_pids(d: Path) -> list[int]:
    """The live processes of the run's `accelerate launch` (each still running this run's worker)."""
    import psutil

    pids = []
    for f in (d / RANKS).glob("*.pid"):
        try:
            pid = int(f.read_text())
            cmd = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            continue
        if d.name in cmd and jobs.pid_alive(pid):  # not a reused pid
            pids.append(pid)
    return pids


def _free_port() -> int:
    """A free TCP port on this machine for the ranks' rendezvous (two runs must not share 29500)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def stop(run_id: str) -> dict:
    """Ask a run to stop: it checkpoints after the current step and records `stopped`.

    Every rank of an accelerate run gets SIGTERM (torch starts each in a session of its own, out of
    reach of the signal to rank 0's process group); the ranks agree to stop after the same step.
    """
    d = run_dir(run_id)
    signalled = jobs.stop("runs", run_id).get("pid")  # rank 0 once it runs, else the wrapper
    for pid in set(_rank_pids(d)) - {signalled}:
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
    return status(run_id)


def resume(run_id: str) -> dict:
    """Relaunch a stopped, interrupted or failed run from its last checkpoint with the same config."""
    d = run_dir(run_id)
    st = status(run_id)
    if st.get("status") in jobs.ACTIVE:
        raise TuneLabError(f"{run_id} is already {st['status']}")
    if st.get("status") == "completed":
        raise TuneLabError(f"{run_id} has completed; start a new run from it with --model {run_id}")
    cfg = TrainConfig.from_yaml(d / "config.yaml")
    cfg.training.resume_from = "last"
    cfg.to_yaml(d / "config.yaml")
    jobs.write_status(d, status="queued", error=None, stop_requested=False, created=st.get("created", time.time()))
    start(run_id)
    return status(run_id)


def show(run_id: str) -> dict:
    """The `runs show` document: status, step, metrics rows (CLI.md shape), error and the before/after report."""
    from tunelab.evals import auto

    d = run_dir(run_id)
    st = status(run_id)
    rows = _metric_rows(d / "metrics.jsonl")
    return {"run": run_id, "status": st.get("status"), "step": st.get("step", 0), "max_steps": st.get("max_steps"),
            "metrics": [{k: r.get(k) for k in SHOW_METRICS} for r in rows], "error": st.get("error"),
            "report": auto.summary(run_id)}


def list_runs() -> list[dict]:
    """Every run, newest first: id, status, progress and what it trains."""
    out = []
    for st in jobs.list_jobs("runs"):
        if st.get("status") == "queued":
            st = dict(status(st["id"]), id=st["id"])  # status() re-reads the folder, without the id
        out.append({"run": st["id"], "status": st.get("status"), "step": st.get("step", 0),
                    "max_steps": st.get("max_steps"), "model": st.get("model"), "data": st.get("data"),
                    "method": st.get("method"), "created": st.get("created"), "error": st.get("error"),
                    "queue_rank": st.get("queue_rank")})
    waiting = sorted((r for r in out if r["status"] == "queued"), key=_rank)
    for i, r in enumerate(waiting, 1):  # the order wait_turn serves them in (oldest first)
        r["position"] = i
    return out


def metrics(run_id: str) -> list[dict]:
    """Every metrics row of a run (all fields), tolerant of a half-written last line and of damaged rows."""
    return _metric_rows(run_dir(run_id) / "metrics.jsonl")


def _metric_rows(path: Path) -> list[dict]:
    """metrics.jsonl rows with an integer step; a value of a shown metric that is not a number reads as None.

    A damaged row (edited by hand, cut by a full disk) is skipped with one warning naming the file.
    """
    from tunelab.jsonio import warn_damaged

    rows, bad = [], 0
    for r in read_jsonl(path):
        if r.get("step").__class__ is not int:
            bad += 1
            continue
        rows.append({k: (v if k not in SHOW_METRICS or _number(v) else None) for k, v in r.items()})
    if bad:
        warn_damaged(path, f"{bad} row(s) without a step number")
    return rows


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def log_tail(run_id: str, lines: int = 30) -> str:
    """The last lines of the run's job.log."""
    p = run_dir(run_id) / "job.log"
    if not p.exists():
        return ""
    with open(p, "rb") as fh:
        fh.seek(max(0, p.stat().st_size - 20000))
        return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])


def lineage(run_id: str) -> dict:
    """Where a run came from: base model, parent run (when continuing an adapter), dataset version."""
    out = read_json(run_dir(run_id) / "output.json") or {}
    cfg = config(run_id)
    return dict(out.get("lineage") or {"init_adapter": cfg.method.init_adapter or None, "data": cfg.data.data,
                                       "data_version": cfg.data.data_version}, base=out.get("base") or cfg.model.model)


def config(run_id: str) -> TrainConfig:
    return TrainConfig.from_yaml(run_dir(run_id) / "config.yaml")


def _rank(st: dict) -> float:
    """A queued run's place: its creation time, or the rank `runs front` gave it (kept in status.json)."""
    rank = st.get("queue_rank")
    return float(rank if rank is not None else st.get("created") or 0)


def front(run_id: str) -> dict:
    """Move a queued run to the front of the queue (it starts next)."""
    st = status(run_id)
    if st.get("status") != "queued":
        raise TuneLabError(f"{run_id} is not queued (status: {st.get('status')})")
    ranks = [_rank(r) for r in jobs.list_jobs("runs") if r.get("status") == "queued"]
    jobs.write_status(run_dir(run_id), queue_rank=min(ranks) - 1.0)
    return status(run_id)


def cancel(run_id: str) -> dict:
    """Take a queued run out of the queue (it ends `stopped`, never having trained)."""
    st = status(run_id)
    if st.get("status") != "queued":
        raise TuneLabError(f"{run_id} is not queued (status: {st.get('status')}): use `tunelab runs stop`")
    return stop(run_id)


def main(run_dir: Path) -> int:
    """The worker: wait for its turn, train (sft.train), record the final status. Returns the exit code."""
    from tunelab.train import preference, sft
    from tunelab.train.sft import log

    # jobs.running records the outcome (failed: the error in one line); SIGTERM only sets
    # job.stopping, so the loop finishes its step and checkpoints before the run is `stopped`.
    try:
        with jobs.running("runs", run_dir.name, start=False, on_term="flag", owner=is_main_process(),
                          on_stop=lambda: log("stop requested: saving a checkpoint after this step")) as job:
            if wait_turn(job):
                job.outcome = sft.train(run_dir, lambda: job.stopping)  # "completed" or "stopped"
            else:
                job.outcome = "stopped"  # while queued
        if job.status == "completed" and is_main_process():  # early stopping completes too
            from tunelab.evals import auto

            # the before/after report, a background job (never raises); a dpo/orpo/kto run's
            # preference accuracy on held-out pairs is measured here first
            auto.start(run_dir, log, measure=preference.preference_accuracy)
        return 0
    except TuneLabError as exc:
        log(f"error: {exc}")
        return 1
    except Exception:  # a bug or resource error: the log keeps the traceback, status.json one line
        traceback.print_exc()
        return 1
