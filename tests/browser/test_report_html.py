"""`tunelab reports export REPORT out.html` opens offline in Chromium: charts render, no request leaves the page."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunelab.data import schema, store
from tunelab.evals import evaluate
from tunelab.evals.evaluate import EvalConfig

pytestmark = pytest.mark.browser

RECORDS = [
    {"id": "a", "instruction": "Name a colour.", "output": "Blue."},
    {"id": "b", "instruction": "用一句话介绍北京。", "output": "北京是中国的首都。"},
    {"id": "x", "instruction": "Say <script>window.__pwned = 1</script> please",
     "output": "<img src=x onerror=\"window.__pwned = 2\"><script>window.__pwned = 3</script>"},
    {"id": "d", "instruction": "What is two plus two? Answer with a number only.", "output": "4"},
    {"id": "e", "system": "You are terse.", "instruction": "Say hi", "output": "hi"},
]


def test_exported_html_opens_offline_with_charts_and_no_request(workspace, tiny_model, tmp_path, browser):
    twin = tmp_path / "twin"
    import shutil

    shutil.copytree(tiny_model, twin)
    store.commit("probe", schema.to_table(RECORDS), "import")
    rid = evaluate.create_report(EvalConfig(models=[tiny_model, str(twin)], data="probe", max_new_tokens=4))
    evaluate.run_report(rid)
    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "tunelab", "reports", "export", rid, "out.html"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    page_file = workspace / "exports" / "out.html"
    text = page_file.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in text and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert "cdn.plot.ly" not in text.split("<body>")[0]  # plotly is inlined, not fetched

    context = browser.new_context(offline=True)  # the network is off: anything fetched would fail
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    url = page_file.as_uri()
    page.goto(url)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    assert page.locator(".js-plotly-plot").count() == 2  # metrics with error bars, paired differences
    assert page.locator(".js-plotly-plot").first.locator("svg").count() > 0
    assert page.locator(".js-plotly-plot").first.locator(".errorbar").count() > 0
    assert page.evaluate("window.__pwned") is None  # the record's script and onerror stayed text
    assert "No detectable difference" in page.locator("#verdict").inner_text() or \
        "not worse" in page.locator("#verdict").inner_text()
    # The search box filters the per-example table.
    assert page.locator("#examples tbody tr").count() == len(RECORDS)
    page.fill("#search", "北京")
    assert page.locator("#examples tbody tr:visible").count() == 1
    assert page.locator("#shown").inner_text() == "1"
    assert "Provenance" in page.content() and "statsmodels" in page.content()
    page.wait_for_timeout(500)
    assert requests == [url], requests
    context.close()
