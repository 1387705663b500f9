"""Serving from the dashboard (issue 15): `tunelab serve` as a background job started, listed and stopped
from the Playground's Serve panel, answering the `openai` client with the generated key."""

from __future__ import annotations

import pytest
from polling import wait_for

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.models.registry import add_model
from tunelab.serve import manage

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_server_left(workspace):
    """A test that fails half-way must not leave a server running."""
    yield
    for s in manage.list_servers():
        try:
            manage.stop_server(s["id"])
            manage.wait_stopped(s["id"])
        except TuneLabError:
            pass


def _ready(job_id: str) -> dict:
    wait_for(lambda: manage.server(job_id).get("ready") or manage.server(job_id).get("status") not in jobs.ACTIVE,
             timeout=120, every=0.3, what="the server to listen")
    st = manage.server(job_id)
    assert st.get("ready"), (jobs.job_dir(manage.JOB_KIND, job_id) / "job.log").read_text()[-2000:]
    return st


def _ask(url: str, key: str, model: str) -> str:
    import openai

    client = openai.OpenAI(base_url=url, api_key=key, timeout=60, max_retries=0)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}],
                                           max_tokens=8)
    return reply.choices[0].message.content


def test_server_job_answers_openai_and_stops(workspace, tiny_model):
    import openai

    add_model("tiny", tiny_model)
    job_id = manage.start_server("tiny")
    try:
        st = _ready(job_id)
        key = manage.api_key(job_id)
        assert st["status"] == "running" and st["url"].startswith("http://127.0.0.1:")
        assert key not in str(st) and key not in (jobs.job_dir("servers", job_id) / "job.log").read_text()
        assert [s["id"] for s in manage.list_servers()] == [job_id]
        assert any(j["kind"] == "servers" and j["id"] == job_id for j in jobs.active_jobs())  # the sidebar's list
        assert isinstance(_ask(st["url"], key, "tiny"), str)
        with pytest.raises(openai.AuthenticationError):
            _ask(st["url"], "wrong-key", "tiny")
    finally:
        manage.stop_server(job_id)
    final = manage.wait_stopped(job_id)
    assert final["status"] == "stopped" and not jobs.pid_alive(final["pid"])
    assert manage.list_servers() == [] and not jobs.active_jobs()


def test_bad_requests_are_one_line_and_start_nothing(workspace, tiny_model):
    add_model("tiny", tiny_model)
    with pytest.raises(TuneLabError, match="unknown model|not found|no model"):
        manage.start_server("no-such-model")
    with pytest.raises(TuneLabError, match="port must be"):
        manage.start_server("tiny", port=80)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(TuneLabError, match="already in use"):
            manage.start_server("tiny", port=s.getsockname()[1])
    assert manage.list_servers(active_only=False) == []
    assert manage.mask("tl-abcdefghijklmnop") == "tl-" + "•" * 8 + "mnop"


def test_serve_panel_starts_answers_and_stops(workspace, tiny_model):
    """Issue 15's must-show: start a server from the Playground's Serve panel, call it with the `openai`
    client using the URL and key the panel shows, stop it from the panel; no process is left."""
    from pagetest import open_page, texts

    from tunelab.ui import cache

    add_model("tiny", tiny_model)
    cache.backend.clear()
    at = open_page("pages/playground.py")
    at.selectbox(key="play.model_a").set_value("tiny").run()
    assert "No server running." in texts(at)
    at.button(key="serve.start").click().run()
    assert not at.exception, at.exception
    [s] = manage.list_servers()
    assert s["model"] == "tiny" and s["host"] == "127.0.0.1"
    _ready(s["id"])
    at.run()  # the list re-reads the job from disk
    codes = [c.value for c in at.code]
    url = next(c for c in codes if c.startswith("http://127.0.0.1:"))
    key = next(c for c in codes if c.startswith("tl-"))
    assert manage.mask(key) in texts(at) and "ready at" in texts(at)
    snippet = next(c for c in codes if "from openai import OpenAI" in c)
    assert f'base_url="{url}"' in snippet and key not in snippet  # the key is read from the environment
    assert isinstance(_ask(url, key, "tiny"), str)
    assert at.number_input(key="serve.port").value != s["port"]  # the next server would get another port

    at.button(key=f"serve.stop.{s['id']}").click().run()
    assert not at.exception, at.exception
    final = manage.wait_stopped(s["id"])
    assert final["status"] == "stopped" and not jobs.pid_alive(final["pid"])
    at.run()
    assert "No server running." in texts(at) and not jobs.active_jobs()


def test_serve_panel_shows_a_failed_start_in_one_line(workspace, tiny_model):
    from pagetest import open_page

    add_model("tiny", tiny_model)
    at = open_page("pages/playground.py")
    at.selectbox(key="play.model_a").set_value("tiny").run()
    import socket

    with socket.socket() as s:  # something else listens there: refused before anything starts
        s.bind(("127.0.0.1", 0))
        s.listen()
        at.number_input(key="serve.port").set_value(s.getsockname()[1]).run()
        at.button(key="serve.start").click().run()
    assert not at.exception, at.exception
    assert any("is already in use" in e.value for e in at.error)
    assert manage.list_servers(active_only=False) == []
