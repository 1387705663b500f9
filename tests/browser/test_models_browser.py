"""The Models page in a real browser (issue 24): a model added from a stand-in Hub shows a moving
progress bar, lands in the catalog, and its cost and fit on this machine are shown."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: hub_server, tiny_model

from hub_server import StandInHub, make_repo  # noqa: E402
from test_journey import goto, key, no_exception, select, wait_idle  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    make_repo(root, "acme/tiny-chat", width=32)  # ~6 MB of weights at 1 MB/s: a bar to watch for seconds
    with StandInHub(root, licenses={"acme/tiny-chat": "mit"}, bytes_per_s=1e6) as h:
        yield h


@pytest.fixture(scope="module")
def dashboard_env(hub, tmp_path_factory):
    return {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path_factory.mktemp("hf"))}


def test_add_from_the_hub_with_a_progress_bar_then_its_fit(dashboard, hub, page, shot):
    url, home = dashboard
    goto(page, url, "models")
    key(page, "models.hub_id").locator("input").fill("acme/tiny-chat")
    key(page, "models.name").locator("input").fill("tiny")
    page.get_by_role("button", name="Add model").click()

    bar = page.locator('[data-testid="stProgress"]')
    bar.first.wait_for(timeout=60_000)
    added = page.get_by_text("acme/tiny-chat → tiny: added")
    seen = []  # what the bar said while the weights arrived
    for _ in range(600):
        if added.count():
            break
        if bar.count():
            try:
                seen.append(bar.first.inner_text(timeout=1000))
            except Exception:  # noqa: BLE001 - the bar left between count() and inner_text()
                pass
            if len(seen) == 5:
                shot(page, "models-1-downloading")
        page.wait_for_timeout(200)
    added.wait_for(timeout=60_000)
    moving = sorted({s for s in seen if " MB" in s})
    assert len(moving) >= 2 and all(s.startswith("acme/tiny-chat → tiny: ") for s in moving), seen
    wait_idle(page)
    no_exception(page)
    assert hub.weight_gets("acme/tiny-chat") == 1

    select(page, "models.cost_model", "tiny")
    table = page.locator('[data-testid="stTable"]').last
    text = table.inner_text()
    assert "lora" in text and "full" in text and "fits" in text
    assert "QLoRA's 4-bit weights need a CUDA GPU" in text or "GB of the" in text
    assert "GB free memory" in page.locator("body").inner_text()
    shot(page, "models-2-fit")

    from tunelab.models.registry import list_models  # the registry of the dashboard's workspace

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELAB_HOME", str(home))
        entry = next(m for m in list_models() if m["name"] == "tiny")
    assert entry["revision"] == hub.commit("acme/tiny-chat") and entry["license"] == "mit"
