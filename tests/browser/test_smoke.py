import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "alpaca_mixed.jsonl"


def test_home_loads(dashboard, page, shot):
    url, home = dashboard
    page.goto(url)
    page.get_by_text("TuneLab").first.wait_for()
    shot(page, "00-home")


def _rgba(css: str) -> tuple[float, float, float, float]:
    nums = [float(x) for x in re.findall(r"[\d.]+", css)]
    return (*nums[:3], nums[3] if len(nums) > 3 else 1.0)


def _over(top: str, bottom: str) -> tuple[float, float, float]:
    """top composited over an opaque bottom colour (how a translucent tint is seen)."""
    r, g, b, a = _rgba(top)
    br, bg, bb, _ = _rgba(bottom)
    return (r * a + br * (1 - a), g * a + bg * (1 - a), b * a + bb * (1 - a))


def _contrast(c1: tuple, c2: tuple) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255)."""
    def lum(c):
        ch = [v / 255 for v in c[:3]]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(c1), lum(c2)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_token_preview_is_readable_in_both_themes(dashboard, browser, scheme, shot):
    """The Train page's token preview tints answer tokens with inline colours: readable on both themes."""
    url, home = dashboard
    if not (home / "datasets" / "sample").exists():
        subprocess.run([sys.executable, "-m", "tunelab", "data", "import", str(SAMPLE), "--name", "sample"],
                       env=dict(os.environ, TUNELAB_HOME=str(home)), check=True, capture_output=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme)
    page = ctx.new_page()
    try:
        page.goto(f"{url}/train")
        spans = page.locator('[data-testid="stHtml"] span')
        spans.first.wait_for(timeout=180_000)
        colours = spans.evaluate_all(
            "els => els.slice(0, 300).map(e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor])")
        page_bg = page.locator('[data-testid="stApp"]').evaluate("e => getComputedStyle(e).backgroundColor")
        shot(page, f"theme-{scheme}-train")
        assert len(colours) > 20
        tints = {bg for _, bg in colours}
        assert len(tints) >= 2  # answer tokens and prompt tokens are told apart
        worst = min(_contrast(_rgba(fg)[:3], _over(bg, page_bg)) for fg, bg in colours)
        assert worst >= 4.5, f"{scheme} theme: token text contrast {worst:.2f} < 4.5 (WCAG AA)"
    finally:
        ctx.close()
