"""Every page in light and dark, English and Chinese: no traceback, the right language, a screenshot each.

The screenshots land in tests/artifacts/pages/<lang>-<scheme>-<page>.png (a test artefact for reviewing the
dashboard before a demo). The workspace holds the shipped samples so pages show data, not empty states.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_journey import wait_idle  # tests/browser is on sys.path (pytest prepend import mode)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "samples" / "alpaca_mixed.jsonl"
PAGES = ["", "data", "sql", "stats", "generate", "compare", "train", "playground"]
# The navigation's first entry in each language: proves the whole page rendered in that language.
HOME = {"en": "Home", "zh": "首页"}


@pytest.fixture(scope="module")
def seeded(dashboard):
    url, home = dashboard
    if not (home / "datasets" / "sample").exists():
        subprocess.run([sys.executable, "-m", "tunelab", "data", "import", str(SAMPLE), "--name", "sample"],
                       env=dict(os.environ, TUNELAB_HOME=str(home)), check=True, capture_output=True)
    return url


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_renders(seeded, browser, scheme, lang):
    url = seeded
    out = ROOT / "tests" / "artifacts" / "pages"
    out.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme,
                              locale="zh-CN" if lang == "zh" else "en-US")
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    problems = []
    try:
        for name in PAGES:
            page.goto(f"{url}/{name}?lang={lang}")
            page.locator('[data-testid="stApp"]').wait_for()
            wait_idle(page)
            page.locator('[data-testid="stSidebarNav"]').get_by_text(HOME[lang], exact=True).first.wait_for()
            errors = page.locator('[data-testid="stException"]')
            if errors.count():
                problems.append(f"{name or 'home'}: {errors.first.inner_text()[:300]}")
            background = page.locator('[data-testid="stApp"]').evaluate("e => getComputedStyle(e).backgroundColor")
            dark = sum(float(v) for v in re.findall(r"[\d.]+", background)[:3]) < 3 * 128
            if dark != (scheme == "dark"):
                problems.append(f"{name or 'home'}: background {background} in the {scheme} scheme")
            page.screenshot(path=str(out / f"{lang}-{scheme}-{name or 'home'}.png"), full_page=True)
    finally:
        ctx.close()
    assert not problems, "\n".join(problems)
