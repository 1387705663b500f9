"""The Train page's run view: the regression suite as kept / lost / gained per task (real runs, real lm-eval)."""

from __future__ import annotations

import time

import pytest
from pagetest import open_page, texts

import regress_parity
import tiny_model
from tunelab import jobs
from tunelab.evals import regress
from tunelab.train import runs
from tunelab.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama", init_range=0.5))


def _run(model: str) -> str:
    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "recipe": "manual", "learning_rate": 0.05, "auto_report": False})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


@pytest.mark.slow
def test_run_view_shows_kept_lost_gained_per_task(workspace, tiny, tmp_path):
    run = _run(tiny)
    doc = regress.run(run, tasks_dir=regress_parity.write(tmp_path / "parity"))
    at = open_page("pages/train.py")
    shown = texts(at)
    s = doc["summary"]
    assert f"{s['kept']} kept · {s['lost']} lost · {s['gained']} gained, of 1 tasks" in shown
    frame = next(df.value for df in at.dataframe if "Verdict" in df.value.columns)
    (row,) = frame.to_dict("records")
    assert row["Task"] == "parity" and row["Checks"] == "an even number of characters"
    assert row["Verdict"] == doc["tasks"][0]["verdict"] and row["Items"] == 24
    assert row["Base"] == f"{100 * doc['tasks'][0]['base']:.0f} % ± {100 * doc['tasks'][0]['stderr']['base']:.0f} %"
    assert f"`tunelab reports regress {run}`" in shown
    assert at.button(key=f"train.regress_run.{run}").label == "Run the regression suite again"


@pytest.mark.slow
def test_the_button_launches_the_suite_as_a_background_job(workspace, tiny):
    run = _run(tiny)
    at = open_page("pages/train.py")
    assert "Not run yet for this run" in texts(at)
    at.button(key=f"train.regress_run.{run}").click().run()
    assert not at.exception
    st = regress.job_status(run)
    assert st["status"] in jobs.ACTIVE and st["pid"]  # a process of its own: the page only reads its folder
    assert "The regression suite is" in texts(at)
    jobs.stop(regress.KIND, run)
    end = time.time() + 120
    while regress.job_status(run)["status"] in jobs.ACTIVE and time.time() < end:
        time.sleep(0.5)
    assert regress.job_status(run)["status"] in ("stopped", "interrupted")
