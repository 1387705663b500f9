"""Experiment tracking: every run's metrics go to TensorBoard, and to MLflow or W&B when report_to names them.

The training loop hands each metrics.jsonl row to `Trackers.log(row)` (torchtune's metric-logger idea: a
sink with log and close). TensorBoard event files are always written, to runs/<id>/tb/, so
`tensorboard --logdir data/workspace/runs` lists every run by its id. MLflow and W&B are optional
packages; both default to offline stores (MLflow: the workspace's mlflow.db unless MLFLOW_TRACKING_URI
is set; W&B: WANDB_MODE=offline unless set), because a fine-tune on a laptop must not need a server.
A tracker that breaks mid-run is dropped with one line in the log: metrics.jsonl stays the record.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json, write_json

TRACKERS = ("tensorboard", "mlflow", "wandb")
OPTIONAL = ("mlflow", "wandb")  # the package each needs has the tracker's name (import and pip alike)
MLFLOW_DB = "mlflow.db"  # the workspace's MLflow store: `mlflow ui --backend-store-uri sqlite:///<workspace>/mlflow.db`
TB_DIR = "tb"  # runs/<id>/tb: TensorBoard names the run "<id>/tb"
STATE = "tracking.json"  # runs/<id>/tracking.json: the MLflow run id to resume into, the trackers in use
SKIP = ("step", "time")  # row keys that are not curves


def parse(report_to: str | None) -> list[str]:
    """The trackers a report_to value names ("mlflow,wandb"), TensorBoard first and always; refuses unknown ones."""
    names = ["tensorboard"]
    for name in (report_to or "").replace(" ", "").lower().split(","):
        if name in ("", "none"):
            continue
        if name not in TRACKERS:
            raise TuneLabError(f"unknown tracker {name!r} in report_to: use tensorboard, mlflow or wandb "
                               "(several: mlflow,wandb)")
        if name not in names:
            names.append(name)
    return names


def check(report_to: str | None) -> list[str]:
    """parse(), and refuse (before a run is launched) a tracker whose package is not installed."""
    names = parse(report_to)
    for name in names:
        if name in OPTIONAL and not installed(name):
            raise TuneLabError(f"--report-to {name} needs the {name} package, which is not installed: "
                               f"pip install {name}")
        if name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI") and not installed("sqlalchemy"):
            raise TuneLabError("--report-to mlflow keeps runs in the workspace's mlflow.db, which needs SQLAlchemy "
                               "(mlflow-skinny lacks it): pip install mlflow, or set MLFLOW_TRACKING_URI")
    return names


def installed(package: str) -> bool:
    """True when the package can be imported (a stray folder of that name, such as W&B's ./wandb, is not it)."""
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None


def tag(key: str) -> str:
    """The TensorBoard / MLflow / W&B name of a metrics row key: eval_loss -> eval/loss, loss -> train/loss."""
    return "eval/" + key[5:] if key.startswith("eval_") else "train/" + key


def scalars(row: dict) -> dict[str, float]:
    """The row's numeric metrics by tag (None, text and the step/time keys left out)."""
    return {tag(k): float(v) for k, v in row.items()
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardSink:
    """Event files under runs/<id>/tb, flushed every row so a crash loses nothing that metrics.jsonl has."""

    def __init__(self, run_dir: Path, first_step: int, config_yaml: str):
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run restarts after its checkpoint: purge_step makes TensorBoard drop the events of
        # the earlier attempt from that step on, so the curve has no doubled segment.
        self.writer = SummaryWriter(log_dir=str(run_dir / TB_DIR), purge_step=first_step if first_step > 1 else None)
        if first_step <= 1:
            self.writer.add_text("config", "```\n" + config_yaml + "\n```", 0)

    def log(self, step: int, values: dict[str, float], walltime: float | None) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step, walltime=walltime)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


class MLflowSink:
    """One MLflow run per TuneLab run (a resume continues it); experiment "tunelab" unless MLFLOW_EXPERIMENT_NAME."""

    def __init__(self, run_dir: Path, params: dict, state: dict):
        import mlflow

        self.mlflow = mlflow
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "tunelab"
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # MLflow 3 refuses a plain ./mlruns folder store ("maintenance mode"): SQLite is its local default.
            ws = workspace.home()
            mlflow.set_tracking_uri(f"sqlite:///{ws / MLFLOW_DB}")
            if mlflow.get_experiment_by_name(name) is None:  # artifacts beside it, not in the caller's cwd
                mlflow.create_experiment(name, artifact_location=(ws / "mlruns").as_uri())
        mlflow.set_experiment(name)
        if state.get("mlflow_run_id"):
            self.run = mlflow.start_run(run_id=state["mlflow_run_id"])
        else:
            self.run = mlflow.start_run(run_name=run_dir.name, tags={"tunelab.run": run_dir.name})
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        state["mlflow_run_id"] = self.run.info.run_id

    def log(self, step: int, values: dict[str, float], walltime: float | None) -> None:
        ts = int(walltime * 1000) if walltime else None
        for name, value in values.items():
            if math.isfinite(value):
                self.mlflow.log_metric(name, value, step=step, timestamp=ts)

    def close(self, failed: bool) -> None:
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


class WandbSink:
    """A W&B run whose id is the TuneLab run id (a resume continues it), offline unless WANDB_MODE says otherwise."""

    def __init__(self, run_dir: Path, params: dict, state: dict):
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "tunelab", name=run_dir.name,
                              id=run_dir.name, resume="allow", dir=str(run_dir), config=params)
        state["wandb_run_id"] = run_dir.name

    def log(self, step: int, values: dict[str, float], walltime: float | None) -> None:
        self.run.log(values, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


SINKS = {"tensorboard": TensorBoardSink, "mlflow": MLflowSink, "wandb": WandbSink}


class Trackers:
    """Every tracker of one run: `log(row)` per metrics row, `close()` at the end (or use it as a context manager).

    The sinks open at the first row, on the process that writes metrics.jsonl: other ranks and runs
    that fail while loading open nothing, and a resumed run knows its first step.
    """

    def __init__(self, run_dir: Path, names: list[str]):
        self.run_dir, self.names = Path(run_dir), names
        self.sinks: dict[str, object] | None = None

    def _open(self, first_step: int) -> None:
        from tunelab.train.config import TrainConfig

        text = (self.run_dir / "config.yaml").read_text(encoding="utf-8")
        params = TrainConfig.from_yaml(text).flat()
        state = read_json(self.run_dir / STATE) or {}
        self.sinks = {}
        for name in self.names:
            try:
                if name == "tensorboard":
                    self.sinks[name] = TensorBoardSink(self.run_dir, first_step, text)
                else:
                    self.sinks[name] = SINKS[name](self.run_dir, params, state)
            except Exception as exc:  # noqa: BLE001 - tracking must never cost the run
                _warn(name, exc)
        state["trackers"] = list(self.sinks)
        state["tensorboard"] = TB_DIR if "tensorboard" in self.sinks else None
        write_json(self.run_dir / STATE, state)

    def log(self, row: dict) -> None:
        """Send one metrics.jsonl row (its "step" is the x axis) to every tracker."""
        if self.sinks is None:
            self._open(int(row["step"]))
        values = scalars(row)
        for name, sink in list(self.sinks.items()):
            try:
                sink.log(int(row["step"]), values, row.get("time"))
            except Exception as exc:  # noqa: BLE001
                _warn(name, exc)
                self.sinks.pop(name)

    def close(self, failed: bool = False) -> None:
        """Flush and end every tracker (failed: MLflow records FAILED, W&B a non-zero exit code)."""
        for name, sink in (self.sinks or {}).items():
            try:
                sink.close(failed)
            except Exception as exc:  # noqa: BLE001
                _warn(name, exc)
        self.sinks = {}

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def open_trackers(run_dir: Path, report_to: str | None = None) -> Trackers:
    """The trackers of the run in run_dir (report_to defaults to its config.yaml's); nothing opens before log()."""
    if report_to is None:
        from tunelab.train.config import TrainConfig

        report_to = TrainConfig.from_yaml(Path(run_dir) / "config.yaml").training.report_to
    return Trackers(Path(run_dir), parse(report_to))


def _warn(name: str, exc: Exception) -> None:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(f"tracking: {name} turned off for this run: {first}", file=sys.stderr, flush=True)
