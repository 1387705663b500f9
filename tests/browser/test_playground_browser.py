"""The Playground side by side in a real browser (issue 15): opened from a link, both answers stream at
once with the message box locked, a rerun in the middle of the answers loses neither, and both stay
when the next message is sent."""

from __future__ import annotations

import pytest
from test_journey import goto, key, no_exception, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWERS = '[data-testid="stChatMessage"]:has([data-testid="stChatMessageAvatarAssistant"])'


def _shown(page, k: str) -> str:
    """What a selectbox shows (its value sits in the input or in the text beside it)."""
    return key(page, k).locator("input").input_value() + key(page, k).inner_text()


def _answers(page) -> list[str]:
    return [t.strip() for t in page.locator(ANSWERS).all_inner_texts()]


def test_side_by_side_answers_arrive_together_and_survive(dashboard, page, shot, monkeypatch):
    from tunelab.models.loading import hf_dir
    from tunelab.models.registry import add_model

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    add_model("smol-b", str(hf_dir("smollm2-135m-instruct")))  # a second backend: both sides generate at once

    # Opened from a link, the way other pages open it: both models preselected.
    goto(page, url, "playground?model=smollm2-135m-instruct&compare=smol-b")
    no_exception(page)
    assert "smollm2-135m-instruct" in _shown(page, "play.model_a")
    assert "smol-b" in _shown(page, "play.model_b")
    page.get_by_text("Generation settings").click()
    tokens = key(page, "play.max_new_tokens").locator("input")
    tokens.fill("24")
    tokens.press("Enter")
    wait_idle(page)

    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill("Write a short story about a dragon who learns to bake bread.")
    box.press("Enter")
    # Both columns are generating at the same time, and the box is locked meanwhile.
    page.get_by_text("Generating ...").nth(1).wait_for(timeout=60_000)
    assert box.is_disabled()
    shot(page, "playground-streaming")
    # A rerun in the middle of both answers (any widget change) re-attaches; nothing is dropped.
    tokens.fill("25")
    tokens.press("Enter")
    page.get_by_text("tokens/s").nth(1).wait_for(timeout=90_000)
    wait_idle(page)
    no_exception(page)
    first = _answers(page)
    assert len(first) == 2 and all(first), first
    assert box.is_enabled()

    # The next message: both earlier answers stay, both new ones arrive.
    box.fill("Give it a title.")
    box.press("Enter")
    page.get_by_text("tokens/s").nth(3).wait_for(timeout=90_000)
    wait_idle(page)
    no_exception(page)
    now = _answers(page)
    assert len(now) == 4 and all(now), now
    assert now[0] == first[0] and now[2] == first[1], (first, now)  # column A's answers, then column B's
    shot(page, "playground-two-exchanges")


def test_serve_panel_in_the_browser(dashboard, page, shot, monkeypatch):
    """Start a server from the panel, call it with the key the page shows, see it in the sidebar, stop it."""
    import openai

    from tunelab import jobs
    from tunelab.serve import manage

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    try:
        goto(page, url, "playground?model=smollm2-135m-instruct")
        page.get_by_text("Serve as an API").click()
        key(page, "serve.start").locator("button").click()
        page.get_by_text("ready at").wait_for(timeout=90_000)
        wait_idle(page)
        no_exception(page)
        assert "server" in page.locator('[data-testid="stSidebar"]').inner_text()  # a job like any other
        base = next(t for t in page.locator('[data-testid="stCode"]').all_inner_texts() if t.startswith("http://127.0.0.1:"))
        page.get_by_role("button", name="Show the key").click()
        api_key = next(t.strip() for t in page.locator('[data-testid="stCode"]').all_inner_texts() if t.startswith("tl-"))
        page.keyboard.press("Escape")
        shot(page, "playground-serve-panel")
        client = openai.OpenAI(base_url=base.strip(), api_key=api_key, timeout=60, max_retries=0)
        reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=8,
                                               messages=[{"role": "user", "content": "Say hi."}])
        assert reply.choices[0].message.content.strip()

        [server] = [d for d in (home / "servers").iterdir()]
        page.locator('[class*="st-key-serve-stop-"]').locator("button").click()
        page.get_by_text("No server running.").wait_for(timeout=60_000)
        st = manage.wait_stopped(server.name)  # the process is gone too, not only its status
        assert st["status"] == "stopped" and not jobs.pid_alive(st["pid"])
    finally:  # a failure half-way must not leave a server running
        for s in manage.list_servers():
            manage.stop_server(s["id"])


def test_a_run_finishing_meanwhile_appears_in_the_pickers(dashboard, page, monkeypatch):
    """The pickers are re-read from disk while the page sits open: no click needed to see a new run."""
    import shutil
    import time

    from tunelab import jobs

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    goto(page, url, "playground?model=smollm2-135m-instruct")
    run_id = "run-finished-meanwhile"
    folder = jobs.job_dir("runs", run_id)
    jobs.write_status(folder, id=run_id, status="completed", created=time.time())  # what a run writes as it ends
    try:
        box = key(page, "play.model_b").locator("input")
        for _ in range(15):
            page.wait_for_timeout(2000)
            wait_idle(page)
            box.click()
            seen = page.get_by_role("option", name=run_id).count()
            page.keyboard.press("Escape")
            if seen:
                break
        assert seen, "the finished run never appeared in the picker"
    finally:
        shutil.rmtree(folder)
