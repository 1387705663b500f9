"""The Compare page in Chromium: a report that finishes on disk relabels the picker without a reload;
the metric panels carry a legend naming each model."""

from __future__ import annotations

import time

import pytest
from test_journey import key, no_exception, select, wait_idle

pytestmark = pytest.mark.browser


def options(page, k: str) -> list[str]:
    """The option labels of a selectbox (opened, read, closed: no rerun)."""
    for _ in range(3):  # a rerun can redraw the box under the click: open it again
        wait_idle(page)
        key(page, k).locator("input").click()
        try:
            page.get_by_role("option").first.wait_for(timeout=10_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            page.keyboard.press("Escape")
            continue
        texts = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        return texts
    raise AssertionError(f"the options of {k} did not open")


def test_picker_relabels_a_finished_report_and_charts_have_a_legend(dashboard, page, shot, tiny_model,
                                                                     monkeypatch):
    from test_eval import RECORDS

    from tunelab import jobs
    from tunelab.data import schema, store
    from tunelab.evals import evaluate
    from tunelab.models import registry

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))  # the dashboard's workspace
    for name in ("tiny-a", "tiny-b"):
        registry.add_model(name, tiny_model)
    store.commit("qa-test", schema.to_table(RECORDS), "import")
    cfg = dict(models=["tiny-a", "tiny-b"], data="qa-test", limit=1, max_new_tokens=2)
    waiting = evaluate.create_report(evaluate.EvalConfig(**cfg))  # queued: its process not started yet
    time.sleep(0.01)
    shown = evaluate.create_report(evaluate.EvalConfig(**cfg))
    evaluate.run_report(shown)  # the newest: the page opens on it

    page.goto(f"{url}/compare")
    wait_idle(page)
    no_exception(page)
    bars = key(page, "compare.bars")
    bars.locator("svg").first.wait_for()
    legend = bars.locator("g.legend")
    assert legend.count() == 1, "the metric panels have no legend"
    assert legend.locator("text.legendtext").evaluate_all("els => els.map(e => e.textContent)") == ["tiny-a", "tiny-b"]
    assert key(page, "compare.scatter").locator("g.legend").count() == 1
    label = next(o for o in options(page, "compare.report") if o.startswith(waiting))
    assert "queued" in label

    evaluate.run_report(waiting)  # as its background process would: it completes on disk
    assert jobs.read_status(jobs.job_dir("reports", waiting))["status"] == "completed"
    deadline = time.time() + 30
    while True:  # no page.reload(): the picker's polling fragment must notice
        label = next(o for o in options(page, "compare.report") if o.startswith(waiting))
        if "completed" in label or time.time() > deadline:
            break
        page.wait_for_timeout(1000)
    shot(page, "compare-relabelled")
    assert "completed" in label, f"stale label after the report finished: {label!r}"
    assert f"report={shown}" in page.url  # the selection is in the URL

    select(page, "compare.report", waiting)  # not the newest: a refresh must reopen it, not the default
    assert f"report={waiting}" in page.url
    page.reload()
    wait_idle(page)
    box = key(page, "compare.report")
    box.locator("input").wait_for()
    picked = box.locator("input").input_value() + (box.text_content() or "")
    assert waiting in picked, f"the selected report was lost on refresh: {picked!r}"
    no_exception(page)
