"""The Generate page in Chromium: a batch that finishes on disk relabels the picker without a reload;
the acceptance chart names its prompt templates in a legend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_compare_browser import options
from test_journey import key, no_exception, select, wait_idle

pytestmark = pytest.mark.browser

SEEDS = Path(__file__).resolve().parents[2] / "data" / "samples" / "seeds.jsonl"


def test_picker_relabels_a_finished_batch_and_the_chart_has_a_legend(dashboard, page, shot, tiny_model,
                                                                      monkeypatch):
    from tunelab import jobs
    from tunelab.models import registry
    from tunelab.synth import generate, prompts

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))  # the dashboard's workspace
    registry.add_model("tiny-gen", tiny_model)
    prompts.get("default-en")
    cfg = generate.GenerateConfig(seeds=str(SEEDS), n=2, backend="local:tiny-gen", template="default-en",
                                  prompt_version=1, outputs=False, max_rounds=1, max_new_tokens=24)
    waiting = generate.create(cfg)  # queued: its process not started yet
    time.sleep(0.01)
    shown = generate.create(cfg)  # the newest, reviewed: the page opens on it
    generate.save_items(shown, [{"id": i, "strategy": "new", "instruction": f"Question {i}?", "input": "",
                                 "output": f"Answer {i}.", "status": "accepted" if i < 3 else "rejected",
                                 "rule": "", "reason": "", "source": ""} for i in range(5)])
    jobs.write_status(generate.batch_dir(shown), status="completed", prompt_version=1,
                      counts={"generated": 5, "accepted": 3})

    page.goto(f"{url}/generate")
    wait_idle(page)
    no_exception(page)
    chart = key(page, "gen.chart")
    chart.locator("svg").first.wait_for()
    legend = chart.locator("g.legend")
    assert legend.count() == 1, "the acceptance chart has no legend"
    assert legend.locator("text.legendtext").evaluate_all("els => els.map(e => e.textContent)") == ["default-en"]
    label = next(o for o in options(page, "gen.batch") if o.startswith(waiting))
    assert "queued" in label

    try:  # as `tunelab generate --job ID` would: a random tiny model, so the batch may end failed
        generate.run(cfg, batch_id=waiting)
    except Exception:  # noqa: BLE001 - recorded in status.json either way
        pass
    final = jobs.read_status(generate.batch_dir(waiting))["status"]
    assert final in jobs.FINAL
    deadline = time.time() + 30
    while True:  # no page.reload(): the picker's polling fragment must notice
        label = next(o for o in options(page, "gen.batch") if o.startswith(waiting))
        if final in label or time.time() > deadline:
            break
        page.wait_for_timeout(1000)
    shot(page, "generate-relabelled")
    assert final in label and "queued" not in label, f"stale label after the batch ended {final}: {label!r}"
    assert f"batch={shown}" in page.url  # the selection is in the URL

    select(page, "gen.batch", waiting)  # not the newest: a refresh must reopen it, not the default
    page.reload()
    wait_idle(page)
    box = key(page, "gen.batch")
    box.locator("input").wait_for()
    picked = box.locator("input").input_value() + (box.text_content() or "")
    assert waiting in picked, f"the selected batch was lost on refresh: {picked!r}"
    no_exception(page)
