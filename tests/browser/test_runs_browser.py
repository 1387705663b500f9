"""The Runs page in a real browser: pick two real runs, see both runs' curves and the settings that differ.

Every wait is on what the page shows (Playwright's expect), never a fixed sleep: it must pass on one busy core.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny_model

import tiny_model  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WAIT_MS = 120_000  # one busy core: a rerun that reads two runs' metrics can take a while


def _key(page, k: str):
    """The element Streamlit renders for key k (class st-key-<k>, dots as dashes)."""
    return page.locator(f'[class~="st-key-{k.replace(".", "-")}"]')


@pytest.fixture(scope="module")
def two_runs(dashboard, tmp_path_factory):
    """Two runs of a tiny model trained to the end in the dashboard's workspace, named and differing in two settings."""
    from tunelab.train import manage, runs
    from tunelab.train.config import TrainConfig

    url, home = dashboard
    model = str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNELAB_HOME", str(home))
    tiny_model.dataset()
    ids = []
    for name, lr, r in (("fast-lr", 1e-3, 8), ("slow-lr", 2e-4, 4)):
        cfg = TrainConfig.for_method("lora")
        cfg.set({"model": model, "data": "tiny", "max_steps": 4, "eval_steps": 2, "eval_split": 0.25,
                 "cutoff_len": 64, "auto_report": False, "learning_rate": lr, "lora_r": r})
        rid = runs.create(cfg)
        assert runs.main(runs.run_dir(rid)) == 0
        manage.rename(rid, name)
        ids.append(rid)
    yield url, ids
    mp.undo()


def _choose(page, label: str) -> None:
    """Add the option with this label to the runs multiselect, and wait until the page shows it chosen."""
    from playwright.sync_api import expect

    box = _key(page, "runs.selected")
    box.locator("input").click()
    box.locator("input").fill(label)
    page.get_by_role("option", name=label).first.click()
    expect(box).to_contain_text(label, timeout=WAIT_MS)  # the chosen run's chip


def test_select_two_runs_shows_both_curves_and_the_config_diff(two_runs, page, shot):
    from playwright.sync_api import expect

    url, (fast, slow) = two_runs
    page.goto(f"{url}/runs")
    expect(_key(page, "runs.selected")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Choose two to five runs to compare them.")).to_be_visible(timeout=WAIT_MS)
    _choose(page, "fast-lr")
    _choose(page, "slow-lr")
    page.keyboard.press("Escape")  # close the option list

    for box in ("runs.loss_box", "runs.eval_box"):  # training and eval loss: one trace per run in each chart
        traces = _key(page, box).locator(".scatterlayer .trace")
        expect(traces).to_have_count(2, timeout=WAIT_MS)
        legend = _key(page, box).locator(".legend")
        expect(legend).to_contain_text(f"fast-lr ({fast})")
        expect(legend).to_contain_text(f"slow-lr ({slow})")
    diff = _key(page, "runs.diff").locator("table")
    expect(diff).to_be_visible(timeout=WAIT_MS)
    expect(diff.locator("th", has_text="learning_rate")).to_have_count(1)
    expect(diff.locator("th", has_text="lora_r")).to_have_count(1)
    expect(diff.locator("th", has_text="cutoff_len")).to_have_count(0)  # the same in both: not shown
    expect(diff.locator("tr", has_text="lora_r")).to_contain_text("8")
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    shot(page, "runs-compare-two")
