"""The whole journey in a real browser: Debian Chromium driving `streamlit run app.py`.

Import a file through the upload widget, search it, clean and split it, generate a batch and
accept it, compare two models, train a short run and watch its curve, chat with the result,
export it. A screenshot of every step lands in tests/artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "samples" / "alpaca_mixed.jsonl"


def key(page, k: str):
    """The element Streamlit renders for the widget with key k (its class is st-key-<k>, dots as dashes)."""
    return page.locator(f'[class~="st-key-{k.replace(".", "-")}"]')


def goto(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    page.locator('[data-testid="stApp"]').wait_for()
    wait_idle(page)


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until the script run finished (Streamlit shows a status widget while running)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def test_journey(dashboard, page, shot):
    url, home = dashboard

    # 1. Data: upload a file through the browser's file chooser and import it.
    goto(page, url, "data")
    key(page, "data.upload").locator('input[type="file"]').set_input_files(str(SAMPLE))
    key(page, "data.upload_name").locator("input").fill("journey")
    key(page, "data.upload_name").locator("input").press("Enter")
    wait_idle(page)
    key(page, "data.import").locator("button").click()
    page.get_by_text("journey").first.wait_for()
    wait_idle(page)
    no_exception(page)
    assert (home / "datasets" / "journey" / "manifest.json").exists()
    shot(page, "01-data-imported")

    # 2. Search it: hits are marked.
    key(page, "data.query").locator("input").fill("capital")
    key(page, "data.query").locator("input").press("Enter")
    page.get_by_text("matching record(s)").wait_for()
    assert page.locator("mark").count() > 0
    shot(page, "02-data-search")
    key(page, "data.query").locator("input").fill("")
    key(page, "data.query").locator("input").press("Enter")
    wait_idle(page)

    # 3. Clean (preview, then apply) and split.
    page.get_by_role("tab", name="Clean").click()
    key(page, "data.clean_drop_empty").locator("label").click()
    wait_idle(page)
    key(page, "data.clean_preview").locator("button").click()
    wait_idle(page)
    key(page, "data.clean_apply").locator("button").click()
    wait_idle(page)
    no_exception(page)
    shot(page, "03-data-cleaned")
    page.get_by_role("tab", name="Split").click()
    key(page, "data.split").locator("button").click()
    wait_idle(page)
    no_exception(page)
    assert (home / "datasets" / "journey-test" / "manifest.json").exists()
    shot(page, "04-data-split")
