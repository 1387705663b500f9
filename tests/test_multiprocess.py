"""Multi-process training (issue 14): `--launcher accelerate --num-processes 2` on CPU (DDP over gloo).

One module fixture trains a tiny llama through the real `tunelab` command twice: one process with
--grad-accum 2, and two processes with --grad-accum 1 (the same global batch) that are stopped mid-run
with `runs stop` and continued with `runs resume` to the end. The tests read those two runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tiny_model
from cli_run import one_line_error, tunelab
from polling import wait_for
from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.train import runs
from tunelab.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("accelerate_ddp", "accelerate_fsdp", "accelerate_deepspeed_zero2")
STEPS = 24
# Same seed and data, no dropout, float32: the only differences left are the order of float sums.
COMMON = ("--max-steps", str(STEPS), "--save-steps", "8", "--batch-size", "2", "--cutoff-len", "128", "--seed", "7",
          "--recipe", "manual", "--lora-dropout", "0", "--mixed-precision", "no", "--threads", "1",
          "--no-auto-report", "--json")
RANKS = "ranks"  # runs/<id>/ranks/<rank>.pid while an accelerate run is alive (runs.RANKS)
TWO = ("--grad-accum", "1", "--launcher", "accelerate", "--num-processes", "2")


def _processes_of(run_id: str) -> list[int]:
    """Every live process whose command line names the run (wrapper, accelerate launcher, ranks)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if run_id.encode() in cmd and jobs.pid_alive(int(p.name)):
            out.append(int(p.name))
    return out


def _train(home: Path, model: str, *extra: str) -> str:
    p = tunelab(home, "train", "--model", model, "--data", "tiny", *COMMON, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)["run"]


@pytest.fixture(scope="module")
def mp(tmp_path_factory):
    """{"home", "one", "two", "stopped": what the two-process run looked like once stopped} after both runs."""
    home = tmp_path_factory.mktemp("mp") / "ws"
    home.mkdir()
    model = str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setenv("TUNELAB_HOME", str(home))
        tiny_model.dataset()
        one = _train(home, model, "--grad-accum", "2")
        # the shipped DDP example config: on a machine without GPUs the same launcher runs gloo on CPU
        two = _train(home, model, *TWO, "--accelerate-config", str(ROOT / "examples" / "accelerate_ddp.yaml"),
                     "--detach")
        d = home / "runs" / two
        wait_for(lambda: len(runs.metrics(two)) >= 3, timeout=240, what="the run past step 3")
        rank_pids = [int(f.read_text()) for f in (d / RANKS).glob("*.pid")]
        before = set(_processes_of(two)) | set(rank_pids) | {int((d / "pid").read_text())}
        runs.stop(two)  # what `tunelab runs stop` calls, without a CLI start-up the run could finish during
        wait_for(lambda: not _processes_of(two), timeout=120, what="every process of the run to end")
        stopped = dict(runs.status(two), checkpoints=sorted(c.name for c in (d / "checkpoints").iterdir()),
                       pids=before, rank_pids=rank_pids, rows=len(runs.metrics(two)),
                       ranks_left=(d / RANKS).exists())
        p = tunelab(home, "runs", "resume", two)
        assert p.returncode == 0, p.stderr
        wait_for(lambda: runs.status(two).get("status") in jobs.FINAL, timeout=300, what="the resumed run")
        wait_for(lambda: not _processes_of(two), timeout=120, what="the resumed run's processes to end")
        yield {"home": home, "one": one, "two": two, "stopped": stopped}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


@pytest.mark.slow
def test_runs_stop_ends_every_process(mp):
    st = mp["stopped"]
    assert st["status"] == "stopped" and st["error"] is None
    assert not [p for p in st["pids"] if jobs.pid_alive(p)]
    assert 3 <= st["step"] < STEPS and f"step-{st['step']}" in st["checkpoints"]  # checkpointed where it stopped
    assert st["rows"] == st["step"] and not st["ranks_left"]
    # there were two ranks to stop: status.json's count, each rank's pid, and wrapper + launcher + ranks alive
    assert st.get("processes") == 2 and len(st["rank_pids"]) == 2 and len(st["pids"]) >= 4, st


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch_through_a_resume(mp):
    one, two = runs.show(mp["one"]), runs.show(mp["two"])
    assert one["status"] == two["status"] == "completed", (one["error"], two["error"])
    assert [m["step"] for m in one["metrics"]] == [m["step"] for m in two["metrics"]] == list(range(1, STEPS + 1))
    # measured: equal to the 6 decimals of the rows, before and after the resume (rank 0's share alone: ~1e-3 off)
    worst = max(_rel(a["loss"], b["loss"]) for a, b in zip(one["metrics"], two["metrics"]))
    assert worst < 1e-4, worst
    assert runs.status(mp["one"])["processes"] == 1 and runs.status(mp["two"])["processes"] == 2
    assert max(_rel(a["grad_norm"], b["grad_norm"]) for a, b in zip(one["metrics"], two["metrics"])) < 1e-4
    # tokens/s counts the tokens of the whole global batch, not rank 0's times the number of ranks
    rows_one, rows_two = runs.metrics(mp["one"]), runs.metrics(mp["two"])
    assert [r["tokens"] for r in rows_one] == [r["tokens"] for r in rows_two]
    assert all(r["tokens_per_s"] > 0 for r in rows_two)


@pytest.mark.slow
def test_metrics_and_checkpoints_are_written_once(mp):
    d = mp["home"] / "runs" / mp["two"]
    rows = runs.metrics(mp["two"])
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one row per step, not one per rank
    log = (d / "job.log").read_text()
    assert all(log.count(f"step {s}/{STEPS} ") == 1 for s in range(1, STEPS + 1)), log[-2000:]
    # the last two saves kept, each once: no second writer's half-written leftovers beside them
    ck = sorted((p.name for p in (d / "checkpoints").iterdir()), key=lambda n: int(n.split("-")[-1]))
    assert len(ck) == 2 and ck[-1] == f"step-{STEPS}" and all(n.startswith("step-") for n in ck), ck
    assert json.loads((d / "output.json").read_text())["step"] == STEPS
    assert not (d / RANKS).exists()


@pytest.mark.slow
def test_two_process_dpo_logs_the_global_batch_reward_metrics(workspace, tiny_model):
    """A preference run's loss and reward metrics are the global batch's too (they were rank 0's share)."""
    from tunelab.data import store
    from tunelab.data.schema import to_table

    words = ["apple", "river", "candle", "garden", "pencil", "window", "rocket", "button"]
    store.commit("pairs", to_table([{"id": f"p{i}", "instruction": f"Tell me about the {w}.", "input": "",
                                     "output": f"Yes, the {w}.", "chosen": f"Yes, the {w}.",
                                     "rejected": f"No. Go away, {w}."} for i, w in enumerate(words)]), op="test")
    args = ("--method", "dpo", "--data", "pairs", "--max-steps", "2", "--batch-size", "1", "--cutoff-len", "64",
            "--recipe", "manual", "--lora-dropout", "0", "--mixed-precision", "no", "--threads", "1",
            "--no-auto-report", "--json")
    one = tunelab(workspace, "train", "--model", tiny_model, *args, "--grad-accum", "4")
    two = tunelab(workspace, "train", "--model", tiny_model, *args, "--grad-accum", "2", "--launcher", "accelerate",
                  "--num-processes", "2")
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    rows = [runs.metrics(json.loads(p.stdout)["run"]) for p in (one, two)]
    assert [len(r) for r in rows] == [2, 2]
    for a, b in zip(*rows):
        for key in ("loss", "reward_margin", "reward_accuracy", "logps_chosen", "logps_rejected", "tokens"):
            assert _rel(a[key], b[key]) < 1e-4, (key, a[key], b[key])


def test_example_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    kinds = {}
    for name in EXAMPLES:
        path = ROOT / "examples" / f"{name}.yaml"
        cfg = load_config_from_file(str(path))
        kinds[name] = cfg.distributed_type
        args = launch_command_parser().parse_args(["--config_file", str(path), "--num_processes", "2",
                                                   "-m", "tunelab", "train"])
        args, _, _ = _validate_launch_command(args)  # what `accelerate launch` does with it
        assert args.num_processes == 2
        runs.check_accelerate_config(str(path))
        assert f"{name}.yaml" in (ROOT / "examples" / "README.md").read_text()
    assert [k.value for k in kinds.values()] == ["MULTI_GPU", "FSDP", "DEEPSPEED"]
    assert yaml.safe_load((ROOT / "examples" / "accelerate_deepspeed_zero2.yaml").read_text())[
        "deepspeed_config"]["zero_stage"] == 2


def test_process_count_and_accelerate_config_refused_in_one_line(workspace, tmp_path):
    cfg = TrainConfig.for_method("lora")
    cfg.set({"data": "tiny"})
    with pytest.raises(TuneLabError, match="needs --launcher accelerate"):
        runs.create(cfg, "python", 2)
    with pytest.raises(TuneLabError, match="1 or more"):
        runs.create(cfg, "accelerate", 0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("compute_environment: LOCAL_MACHINE\nnot_an_accelerate_key: 1\n")
    with pytest.raises(TuneLabError, match="cannot be loaded"):
        runs.check_accelerate_config(str(bad))
    p = tunelab(workspace, "train", "--data", "tiny", "--num-processes", "2")
    assert "needs --launcher accelerate" in one_line_error(p)
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())  # nothing launched


@pytest.mark.skipif(runs._has_cuda(), reason="the refusal is for machines without CUDA")
def test_gpu_only_accelerate_configs_refused_on_cpu_before_launch(workspace, tmp_path):
    """FSDP / DeepSpeed have no CPU mode in accelerate: one line at `train`, no run folder, never a silent DDP."""
    tiny_model.dataset()
    cfg = TrainConfig.for_method("full")
    cfg.set({"data": "tiny"})
    # the FSDP example made CPU-friendly by hand: accelerate would have trained it as plain DDP (MULTI_CPU)
    quiet = yaml.safe_load((ROOT / "examples" / "accelerate_fsdp.yaml").read_text())
    quiet.update(use_cpu=True, fsdp_config=dict(quiet["fsdp_config"], fsdp_sync_module_states=False,
                                                 fsdp_cpu_ram_efficient_loading=False))
    (tmp_path / "fsdp_cpu.yaml").write_text(yaml.safe_dump(quiet))
    for path, name in ((ROOT / "examples" / "accelerate_fsdp.yaml", "FSDP"), (tmp_path / "fsdp_cpu.yaml", "FSDP"),
                       (ROOT / "examples" / "accelerate_deepspeed_zero2.yaml", "DeepSpeed")):
        with pytest.raises(TuneLabError, match=f"^{name} .*needs CUDA GPUs"):
            runs.create(cfg, "accelerate", 2, accelerate_config=str(path))
    p = tunelab(workspace, "train", "--data", "tiny", "--method", "full", "--launcher", "accelerate",
                "--num-processes", "2", "--accelerate-config", str(ROOT / "examples" / "accelerate_fsdp.yaml"))
    assert "FSDP (distributed_type: FSDP) needs CUDA GPUs" in one_line_error(p)
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())  # nothing launched


def test_worker_stops_when_accelerate_sets_up_another_kind():
    """What the worker checks after `Accelerator()`: the config's kind is the kind that runs."""
    from tunelab.train.setup import check_parallel

    check_parallel("MULTI_GPU", cuda=False, got="MULTI_CPU")  # DDP over gloo on CPUs: fine
    check_parallel("FSDP", cuda=True, got="FSDP")
    with pytest.raises(TuneLabError, match="asks for FSDP but accelerate set up MULTI_GPU"):
        check_parallel("FSDP", cuda=True, got="MULTI_GPU")
