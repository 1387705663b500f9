"""The Train page in a real browser: a refresh mid-run keeps the form, and an export downloads.

Both against real runs of a tiny model (registered with `tunelab models add`, trained by the real worker).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny_model, cli_run, polling

import tiny_model  # noqa: E402
from cli_run import tunelab  # noqa: E402
from test_journey import goto, key, no_exception, select, set_number, wait_idle  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def prepared(dashboard, tmp_path_factory):
    """The dashboard's workspace with a dataset and a tiny model registered as `tiny`."""
    url, home = dashboard
    path = tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama")
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNELAB_HOME", str(home))
    tiny_model.dataset(repeat=8)
    assert tunelab(home, "models", "add", "tiny", str(path)).returncode == 0
    yield url, home, mp
    mp.undo()


def _status(home: Path, run_id: str) -> str:
    from tunelab.train import runs

    return runs.status(run_id).get("status")


def test_refresh_mid_run_keeps_the_form(prepared, page, shot):
    from tunelab.train import runs

    url, home, _ = prepared
    goto(page, url, "train")
    select(page, "train.model", "tiny")
    set_number(page, "train.max_steps", 5000)  # long enough to still be running at the refresh
    set_number(page, "train.cutoff_len", 64)
    key(page, "train.start").locator("button").click()
    page.locator('[class*="st-key-train-chart-"]').first.wait_for(timeout=120_000)  # metrics are coming in
    wait_idle(page)
    run_id = next(r["run"] for r in runs.list_runs())
    try:
        assert _status(home, run_id) == "running"
        # The user starts preparing the next run while this one trains ...
        set_number(page, "train.max_steps", 123)
        set_number(page, "train.cutoff_len", 96)
        page.wait_for_url(lambda u: "max_steps=123" in u and "cutoff_len=96" in u, timeout=10_000)
        page.reload()  # ... and refreshes the page.
        page.locator('[data-testid="stApp"]').wait_for()
        wait_idle(page)
        no_exception(page)
        assert key(page, "train.max_steps").locator("input").input_value() == "123"  # not back to 0
        assert key(page, "train.cutoff_len").locator("input").input_value() == "96"
        model = key(page, "train.model")
        assert "tiny" in model.locator("input").input_value() + model.inner_text()
        assert "--max-steps 123" in page.locator('[data-testid="stCode"]', has_text="tunelab train").first.inner_text()
        key(page, "train.stop").wait_for()  # and it re-attached to the run, which still trains
        assert _status(home, run_id) == "running"
        shot(page, "train-refresh-keeps-form")
    finally:
        runs.stop(run_id)
        for _ in range(120):
            if _status(home, run_id) not in ("queued", "running"):
                break
            page.wait_for_timeout(500)


def test_an_export_downloads(prepared, page, shot, tmp_path):
    url, home, _ = prepared
    done = tunelab(home, "train", "--model", "tiny", "--data", "tiny", "--max-steps", "2", "--cutoff-len", "64",
                   "--no-auto-report", "--json")
    assert done.returncode == 0, done.stderr
    import json

    run_id = json.loads(done.stdout)["run"]
    goto(page, url, f"train?run={run_id}")
    page.get_by_text("Export this run").first.click()
    wait_idle(page)
    key(page, "train.export").locator("button").click()  # the default format: the adapter
    button = page.locator('[class*="st-key-train-download-"]').first
    button.wait_for(timeout=120_000)
    assert "MB)" in button.inner_text()
    page.locator('[class*="st-key-train-export_playground"]').wait_for()  # Open in Playground, not a CLI hint
    with page.expect_download() as dl:
        button.locator("button").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == f"{run_id}.zip"
    with zipfile.ZipFile(path) as z:
        assert f"{run_id}/adapter_config.json" in z.namelist()
    no_exception(page)
    shot(page, "train-export-downloaded")
