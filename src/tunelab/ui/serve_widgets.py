"""The Serve panel: start `tunelab serve` for the selected model as a background job, show how to call it, stop it.

Servers are jobs (tunelab.serve.manage, workspace/servers/<id>): the list below is re-read from disk
every 2 s, so a refresh, a second tab or the sidebar all see the same servers.
"""

from __future__ import annotations

import streamlit as st

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.serve import manage
from tunelab.ui.i18n import t

POLL_S = 2


def _start(model: str, engine: str) -> None:
    """The Start button's callback: runs before the page, so the port box may move to the next free port."""
    st.session_state.pop("serve.error", None)
    try:
        job_id = manage.start_server(model, port=int(st.session_state["serve.port"]), engine=engine)
    except TuneLabError as exc:
        st.session_state["serve.error"] = exc
        return
    st.session_state.setdefault("serve.mine", []).append(job_id)
    st.session_state["serve.port"] = manage.free_port(int(st.session_state["serve.port"]) + 1)


def _stop(job_id: str) -> None:
    try:
        manage.stop_server(job_id)
    except TuneLabError as exc:  # it ended on its own meanwhile: the list shows how
        st.session_state["serve.error"] = exc


def serve_panel(model: str, engine: str) -> None:
    """Start a server for `model` on 127.0.0.1, list the running ones with their URL, key and a snippet.

    Args:
        model: the Playground's selected model.
        engine: the Playground's engine ("auto", "transformers", "llama.cpp").
    """
    running = manage.list_servers()
    with st.expander(t("Serve as an API"), expanded=bool(running), icon=":material/api:"):
        st.caption(t("Runs `tunelab serve` in the background on this machine (127.0.0.1) with a new API key: "
                     "any OpenAI client can then call the model. It keeps running when you leave the page; "
                     "stop it here."))
        if "serve.port" not in st.session_state:
            st.session_state["serve.port"] = manage.free_port()
        c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
        c1.number_input(t("Port"), min_value=1024, max_value=65535, step=1, key="serve.port",
                        help=t("The port the server listens on, on 127.0.0.1 only."))
        c2.button(t("Serve {model}", model=model), key="serve.start", icon=":material/play_arrow:",
                  on_click=_start, args=(model, engine), type="primary")
        error = st.session_state.pop("serve.error", None)
        if error is not None:
            from tunelab.ui import layout

            layout.show_error(error)
        server_list()


@st.fragment(run_every=POLL_S)
def server_list() -> None:
    """Running servers, re-read from disk every POLL_S seconds; failures of servers started here too."""
    mine = set(st.session_state.get("serve.mine", []))
    servers = [s for s in manage.list_servers(active_only=False)
               if s.get("status") in jobs.ACTIVE or (s["id"] in mine and s.get("status") in ("failed", "interrupted"))]
    if not servers:
        st.caption(t("No server running."))
        return
    for s in servers:
        with st.container(border=True, key=f"serve.server.{s['id']}"):
            _server_card(s)


def _server_card(s: dict) -> None:
    model, url, status = s.get("model", "?"), s.get("url", ""), s.get("status")
    if status not in jobs.ACTIVE:
        st.error(t("Server for **{model}** ended: {error}", model=model, error=s.get("error") or t(status)),
                 icon=":material/error:")
        return
    if s.get("stop_requested"):
        st.markdown(f":material/hourglass_top: **{model}** — " + t("stopping ..."))
        return
    if not s.get("ready"):
        st.markdown(f":material/hourglass_top: **{model}** — " + t("loading the model ..."))
    else:
        st.markdown(f":material/check_circle: **{model}** — " + t("ready at {url}", url=url))
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    with c1:
        st.caption(t("Base URL"))
        st.code(url, language=None)
    try:
        key = manage.api_key(s["id"])
    except TuneLabError:
        key = None
    if key:
        c1.caption(t("API key") + f": `{manage.mask(key)}`")
        with c2.popover(t("Show the key"), icon=":material/key:"):
            st.caption(t("Copy it with the button in the box's corner."))
            st.code(key, language=None)
            st.code(f"export TUNELAB_API_KEY={key}", language="bash")
    c2.button(t("Stop"), key=f"serve.stop.{s['id']}", icon=":material/stop_circle:", on_click=_stop, args=(s["id"],))
    st.caption(t("Call it from Python with the `openai` package (the key read from TUNELAB_API_KEY):"))
    st.code(manage.snippet(url, model), language="python")
