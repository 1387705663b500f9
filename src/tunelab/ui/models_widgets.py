"""The Models page's widgets: the catalog, adding a Hub model with a progress bar, the Hub token, and what
each model costs on this machine. Downloads run as `downloads` jobs (models/download.py): the bar reads
their status.json, so a refresh re-attaches."""

from __future__ import annotations

import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.models import download, hub, hub_search
from tunelab.train import catalog
from tunelab.ui import layout
from tunelab.ui.i18n import t

POLL_S = 0.5
ACTIVE = ("queued", "running")


def _size(n: int | None) -> str:
    if not n:
        return "—"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _params(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def catalog_table(rows: list[dict]) -> None:
    st.dataframe([{t("model"): r["name"], t("parameters"): _params(r["params"]),
                   t("architecture"): r["architecture"] or "?", t("license"): r["license"] or "?",
                   t("chat template"): r["template"], t("revision"): (r["revision"] or "")[:12],
                   t("disk"): _size(r["disk_bytes"]), t("source"): r["source"]} for r in rows],
                 hide_index=True, width="stretch")


def _start() -> None:
    st.session_state.pop("models.error", None)
    name = st.session_state["models.name"].strip() or st.session_state["models.hub_id"].strip().split("/")[-1].lower()
    try:
        job_id = download.start(name, st.session_state["models.hub_id"], st.session_state["models.revision"].strip())
    except TuneLabError as exc:
        st.session_state["models.error"] = exc
        return
    st.session_state.setdefault("models.mine", []).append(job_id)


def add_form() -> None:
    """Hub id, registry name and revision; the download runs as a job."""
    with st.form("models.add"):
        c1, c2, c3 = st.columns([3, 2, 1])
        c1.text_input(t("Hub id"), key="models.hub_id", placeholder="Qwen/Qwen2.5-0.5B-Instruct",
                      help=t("ORG/NAME on the Hugging Face Hub (or the mirror in HF_ENDPOINT)."))
        c2.text_input(t("Name in TuneLab"), key="models.name", placeholder=t("default: the repo's name"))
        c3.text_input(t("Revision"), key="models.revision", placeholder="main")
        st.form_submit_button(t("Add model"), icon=":material/download:", on_click=_start)
    if (error := st.session_state.pop("models.error", None)) is not None:
        layout.show_error(error)
    if hub.offline():
        st.caption(t("Hub downloads are off (HF_HUB_OFFLINE=1): start the dashboard with HF_HUB_OFFLINE=0 to add "
                     "models from the Hub; cached models still load."))


SIZE_CAPS = {0: "any size", 1e9: "up to 1B parameters", 3e9: "up to 3B parameters", 8e9: "up to 8B parameters"}


def _search() -> None:
    st.session_state.pop("models.search_error", None)
    try:
        st.session_state["models.hits"] = hub_search.search(st.session_state["models.query"],
                                                            max_params=st.session_state["models.max_params"] or None)
    except TuneLabError as exc:
        st.session_state["models.hits"] = None
        st.session_state["models.search_error"] = exc


def _add_hit(hub_id: str) -> None:
    """A search hit's Add button: the same download job as the form, named after the repo."""
    st.session_state.pop("models.error", None)
    try:
        job_id = download.start(hub_id.split("/")[-1].lower(), hub_id)
    except TuneLabError as exc:
        st.session_state["models.error"] = exc
        return
    st.session_state.setdefault("models.mine", []).append(job_id)


def search_box() -> None:
    """Search the Hub for text-generation models (most downloaded first, a size cap); each hit has an Add button."""
    if hub.offline():
        st.caption(t("Searching the Hub needs a network: start the dashboard with HF_HUB_OFFLINE=0 "
                     "(and HF_ENDPOINT for a mirror) to search it."))
        return
    with st.form("models.search"):
        c1, c2 = st.columns([3, 1])
        c1.text_input(t("Search the Hub"), key="models.query", placeholder="qwen instruct",
                      help=t("Words in the model id; text-generation models, most downloaded first."))
        c2.selectbox(t("Size"), list(SIZE_CAPS), key="models.max_params", format_func=lambda v: t(SIZE_CAPS[v]))
        st.form_submit_button(t("Search"), icon=":material/search:", on_click=_search)
    if (error := st.session_state.get("models.search_error")) is not None:
        layout.show_error(error)
    hits = st.session_state.get("models.hits")
    if hits is None:
        return
    if not hits:
        st.caption(t("No text-generation model on the Hub matches."))
        return
    head = st.columns([4, 2, 1, 2, 2, 1])
    for col, label in zip(head, (t("model"), t("downloads"), t("likes"), t("parameters"), t("size"), "")):
        col.markdown(f"**{label}**")
    for h in hits:
        c = st.columns([4, 2, 1, 2, 2, 1])
        c[0].text(h["id"])
        c[1].text(f"{h['downloads']:,}")
        c[2].text(f"{h['likes']:,}")
        c[3].text(_params(h["params"]))
        c[4].text(_size(h["size_bytes"]))
        c[5].button(t("Add"), key=f"models.add_hit.{h['id']}", on_click=_add_hit, args=(h["id"],))


@st.fragment(run_every=POLL_S)
def downloads() -> None:
    """Every download job of this workspace still going, and the last finished ones, from status.json."""
    jobs_ = download.list_jobs()[:5]
    if not jobs_:
        return
    for j in jobs_:
        label = f"{j.get('hub_id')} → {j.get('model')}"
        if j.get("status") in ACTIVE:
            st.progress(float(j.get("fraction") or 0.0), text=f"{label}: {j.get('progress') or t('starting')}")
        elif j.get("status") == "completed":
            st.caption(f":material/check_circle: {label}: {t('added')}")
        else:
            st.caption(f":material/error: {label}: {t(j.get('status') or 'failed')} — {j.get('error') or ''}")
    if any(j.get("id") in st.session_state.get("models.mine", []) and j.get("status") == "completed" for j in jobs_):
        if not st.session_state.get("models.refreshed"):
            st.session_state["models.refreshed"] = True
            st.rerun()  # the catalog and the cost picker show the new model


def token_form() -> None:
    """A Hub token for gated or private models: kept in the workspace (0600), never shown again."""
    with st.expander(t("Hub token (gated or private models)")):
        if hub.token_saved():
            st.caption(t("A token is saved in this workspace."))
        st.text_input(t("Token"), type="password", key="models.token",
                      help=t("Used when HF_TOKEN is not set. Stored in the workspace, readable only by you."))
        if st.button(t("Save token"), key="models.save_token"):
            try:
                hub.save_token(st.session_state["models.token"])
                st.session_state["models.token"] = ""
                st.success(t("Token saved."))
            except TuneLabError as exc:
                layout.show_error(exc)


def costs(names: list[str]) -> None:
    """For one model: memory and time per 1,000 examples for LoRA / QLoRA / full, generation speed, fit."""
    name = st.selectbox(t("What does it cost on this machine?"), names, key="models.cost_model")
    if not name:
        return
    try:
        c = _costs(name)
    except TuneLabError as exc:
        layout.show_error(exc)
        return
    st.caption(t("{device}, {free} GB free memory; a training example is counted as {tokens} tokens.",
                 device=c["device"].upper(), free=c["free_gb"], tokens=catalog.TOKENS_PER_EXAMPLE))
    # a plain table, not a data grid: a short verdict a reader (and a browser test) reads as text
    st.table([{t("method"): r["method"], t("memory"): f"{r['memory_gb']:.2f} GB",
               t("minutes per 1,000 examples"): f"{r['minutes_per_1000']:.1f}",
               t("fits"): t("fits") if r["fits"] else t("does not fit"), t("why"): r["reason"]}
              for r in c["training"]])
    g = c["generation"]
    st.caption(t("Generation: about {hf} tokens/s with transformers, {cpp} tokens/s with llama.cpp (GGUF).",
                 hf=g["transformers"], cpp=g["llama.cpp"]))


@st.cache_data(ttl=30, show_spinner=False)
def _costs(name: str) -> dict:
    return catalog.costs(name)
