"""Widgets of the Generate page: prompt editor, batch launcher, review cards, acceptance chart.

Everything decided here is done by tunelab.synth; these functions only lay out widgets and call
it. Batches run as `tunelab generate --job ID` processes, so a refresh never loses one.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tunelab import jobs
from tunelab.data import store
from tunelab.synth import filters, generate, prompts
from tunelab.ui import charts, live
from tunelab.ui.i18n import t

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"
ENDPOINT = "OpenAI-compatible endpoint"
STATUSES = ("accepted", "rejected", "pending")
ITEM_PREFIX = "gen.item."
MAX_CARDS = 100


def _flash(message: str) -> None:
    st.session_state["gen.flash"] = message


def show_flash() -> None:
    """A success message left by a button callback (they run before the page draws)."""
    message = st.session_state.pop("gen.flash", None)
    if message:
        st.success(message, icon=":material/check_circle:")


# ------------------------------------------------------------------ seeds and prompt


def seed_sources() -> list[str]:
    """Datasets in the workspace, then the shipped sample seed files."""
    files = [str(p) for p in sorted(SAMPLES.glob("seed*.json*"))]
    return [d["name"] for d in store.list_datasets()] + files


def seeds_picker() -> str:
    sources = seed_sources()
    st.selectbox(t("Seed examples"), sources, key="gen.seeds", index=0 if sources else None,
                 help=t("A dataset, or a seed file (Alpaca JSON/JSONL or self-instruct seed_tasks.jsonl)."))
    path = st.text_input(t("…or a seed file path"), key="gen.seeds_path")
    return path.strip() or st.session_state.get("gen.seeds") or ""


def _load_version_into_editor(version: dict) -> None:
    st.session_state["gen.text"] = version["text"]
    st.session_state["gen.task"] = version.get("task_description", "")
    st.session_state["gen.mistakes_text"] = "\n".join(version.get("mistakes") or [])
    st.session_state["gen.loaded"] = (version["name"], version["version"])


def template_editor() -> dict:
    """Template + version pickers and the editor; returns the selected (saved) version."""
    names = prompts.templates()
    if st.session_state.get("gen.template") not in names:
        st.session_state["gen.template"] = names[0]
    c1, c2 = st.columns([2, 1])
    name = c1.selectbox(t("Prompt template"), names, key="gen.template")
    numbers = [v["version"] for v in prompts.versions(name)]
    if st.session_state.get("gen.version") not in numbers:
        st.session_state["gen.version"] = numbers[-1]
    number = c2.selectbox(t("Version"), numbers, key="gen.version", format_func=lambda v: f"v{v}")
    version = prompts.get(name, number)
    if st.session_state.get("gen.loaded") != (name, number):
        _load_version_into_editor(version)
    if version.get("note"):
        st.caption(t("v{number}: {note} (parent: {parent})", number=number, note=version["note"],
                     parent=version.get("parent") or "—"))
    # No format arguments: t() leaves the {placeholders} of these labels as they are.
    st.text_area(t("Template"), key="gen.text", height=220,
                 help=t("Variables: {seed_examples} {n} {task_description} {mistakes}"))
    st.text_input(t("Task description ({task_description})"), key="gen.task")
    st.text_area(t("Mistakes to avoid ({mistakes}), one per line"), key="gen.mistakes_text", height=90)
    c1, c2 = st.columns([2, 1])
    c1.text_input(t("Note for the new version"), key="gen.note", placeholder=t("what you changed and why"))
    c2.button(t("Save as new version"), key="gen.save", on_click=_save_version, args=(name, number))
    if _edited(version):
        st.warning(t("Unsaved edits: a batch uses the saved version shown above."), icon=":material/edit:")
    return version


def _edited(version: dict) -> bool:
    return (st.session_state.get("gen.text") != version["text"]
            or st.session_state.get("gen.task", "") != version.get("task_description", "")
            or _mistakes_lines() != (version.get("mistakes") or []))


def _mistakes_lines() -> list[str]:
    return [m.strip() for m in st.session_state.get("gen.mistakes_text", "").splitlines() if m.strip()]


def _save_version(name: str, parent: int) -> None:
    saved = prompts.save(name, st.session_state["gen.text"], st.session_state.get("gen.task", ""),
                         _mistakes_lines(), parent=parent, note=st.session_state.get("gen.note", ""))
    _select(saved)
    _flash(t("Saved {name} v{version}.", name=name, version=saved["version"]))


def _select(version: dict) -> None:
    st.session_state["gen.template"] = version["name"]
    st.session_state["gen.version"] = version["version"]
    _load_version_into_editor(version)


# ------------------------------------------------------------------ launching a batch


def backend_picker() -> str:
    from tunelab.models.registry import list_models

    names = [m["name"] for m in list_models()] + [ENDPOINT]
    labels = {n: n for n in names} | {ENDPOINT: t(ENDPOINT)}  # built in the run: AppTest calls format_func outside it
    model = st.selectbox(t("Model"), names, key="gen.model", format_func=labels.get)
    if model == ENDPOINT:
        c1, c2 = st.columns([2, 1])
        url = c1.text_input(t("Endpoint base URL (…/v1)"), key="gen.endpoint", placeholder="http://127.0.0.1:8000/v1",
                            on_change=_forget_key)
        c2.text_input(t("API key (optional)"), key="gen.endpoint_key", type="password", on_change=_bind_key,
                      help=t("Sent only to the URL it was typed for, kept only in this browser tab, never "
                             "written to disk. The server's own OPENAI_API_KEY is never sent to a URL typed here."))
        return f"openai:{url.strip()}"
    return f"local:{model}"


def _forget_key() -> None:
    """A new URL: a key typed for another URL is cleared (it must not follow the user there)."""
    ss = st.session_state
    url, bound = ss.get("gen.endpoint", "").strip(), ss.get("gen.endpoint_key_for")
    if bound and bound != url:
        ss["gen.endpoint_key"] = ""
        ss.pop("gen.endpoint_key_for", None)
    elif ss.get("gen.endpoint_key"):  # typed before any URL: it was meant for this one
        ss["gen.endpoint_key_for"] = url


def _bind_key() -> None:
    st.session_state["gen.endpoint_key_for"] = st.session_state.get("gen.endpoint", "").strip()


def endpoint_key(backend: str) -> str:
    """The key typed in this session for backend's URL, or "" (none typed, or typed for another URL)."""
    key = st.session_state.get("gen.endpoint_key") or ""
    url = backend.partition(":")[2].strip()
    return key if key and st.session_state.get("gen.endpoint_key_for") == url else ""


def strategy_picker() -> list[str]:
    picked = []
    c1, c2, c3 = st.columns(3)
    if c1.checkbox(t("New instructions"), value=True, key="gen.s_new"):
        picked.append("new")
    if c2.checkbox(t("Fill missing outputs"), key="gen.s_fill"):
        picked.append("fill")
    if c3.checkbox(t("Paraphrase records"), key="gen.s_para"):
        picked.append("paraphrase")
    st.checkbox(t("Also write outputs for new instructions (a second call)"), value=True, key="gen.outputs")
    return picked


def launch(cfg: generate.GenerateConfig) -> None:
    """Start `tunelab generate --job ID` in the background and select its batch."""
    # Only the key typed for this URL in this tab goes along ("" = none), never the server's own.
    batch_id = generate.start_batch(cfg, api_key=endpoint_key(cfg.backend))
    st.session_state["gen.batch"] = batch_id
    _flash(t("Started batch {id} (`tunelab generate --job {id}`).", id=batch_id))


@st.fragment(run_every=2.0)
def progress(batch_id: str) -> None:
    """Live progress of a running batch; reruns the page when it finishes."""
    st_ = jobs.read_status(generate.batch_dir(batch_id)) or {}
    if st_.get("status") in jobs.ACTIVE:
        done, total = st_.get("done", 0), max(st_.get("total", 1), 1)
        st.progress(min(done / total, 1.0), text=f"{t(st_.get('status') or 'queued')}: {st_.get('progress', '')}")
    else:
        st.rerun()


# ------------------------------------------------------------------ review


def batch_picker() -> str | None:
    """Pick a batch to review; key gen.batch, mirrored in the URL as ?batch=ID.

    This session's choice, else the link's ?batch=, else the newest. Labels are read from disk on every
    run; while a listed batch is queued or running a fragment polls and reruns the page on a change.
    """
    batches = jobs.list_jobs("generations")
    if not batches:
        st.info(t("No batches yet: generate one above."))
        return None
    labels = {b["id"]: _label(b) for b in batches}
    live.choose("batch", "gen.batch", list(labels), batches[0]["id"])
    picked = st.selectbox(t("Batch"), list(labels), key="gen.batch", format_func=labels.get)
    live.remember("batch", picked)
    live.watch("generations", {b["id"]: b.get("status") for b in batches}, key="gen.watch")
    return picked


def batch_size(n: int, strategies: list[str]) -> int:
    """About how many items a batch brings: n per checked strategy."""
    return int(n) * len(strategies)


def _label(b: dict) -> str:
    c = b.get("counts") or {}
    got = t("{accepted}/{generated} accepted", accepted=c.get("accepted", 0),
            generated=c.get("generated", 0)) if c else ""
    return f"{b['id']} · {b.get('template', '')} v{b.get('prompt_version') or '?'} · {t(b.get('status') or 'queued')} {got}"


def _key(field: str, i: int) -> str:
    return f"{ITEM_PREFIX}{field}.{i}"


def _sync_widgets(batch_id: str, items: list[dict]) -> None:
    """Load a batch's items into the card widgets when another batch (or none) was shown."""
    if st.session_state.get("gen.reviewing") == batch_id:
        return
    for k in [k for k in st.session_state if str(k).startswith(ITEM_PREFIX)]:
        del st.session_state[k]
    for i, it in enumerate(items):
        st.session_state[_key("instruction", i)] = it["instruction"]
        st.session_state[_key("input", i)] = it.get("input", "")
        st.session_state[_key("output", i)] = it.get("output", "")
        st.session_state[_key("status", i)] = it.get("status", "pending")
        st.session_state[_key("reason", i)] = it.get("reason", "")
    st.session_state["gen.reviewing"] = batch_id


def _edits(items: list[dict]) -> list[dict]:
    """The items with what the reviewer changed in the cards."""
    out = []
    for i, it in enumerate(items):
        it = dict(it)
        if _key("status", i) in st.session_state:
            for field in ("instruction", "input", "output", "status", "reason"):
                it[field] = st.session_state[_key(field, i)]
            if it["status"] != items[i].get("status") or it["reason"] != items[i].get("reason"):
                it["rule"] = "review" if it["status"] == "rejected" else ""
            if it["status"] != "rejected":
                it["reason"] = ""
        out.append(it)
    return out


def card(i: int, item: dict) -> None:
    added = item.get("added_to")
    # Built in the run: AppTest calls format_func outside it, where t() has no session.
    status_labels = {"accepted": t("accepted"), "rejected": t("rejected"), "pending": t("pending")}
    with st.container(border=True):
        c1, c2 = st.columns([3, 1])
        c1.text_area(t("Instruction"), key=_key("instruction", i), height=68, disabled=bool(added))
        c2.radio(t("Status"), STATUSES, key=_key("status", i), horizontal=False, disabled=bool(added),
                 format_func=status_labels.get)
        if item.get("input") or item.get("strategy") == "paraphrase":
            st.text_input(t("Input"), key=_key("input", i), disabled=bool(added))
        st.text_area(t("Output"), key=_key("output", i), height=68, disabled=bool(added))
        st.text_input(t("Reason (when rejected)"), key=_key("reason", i), disabled=bool(added),
                      placeholder=t("why this item is wrong — it can become a 'mistake to avoid'"))
        note = [item.get("strategy", ""), t("added to {dataset}", dataset=added) if added else ""]
        if item.get("source"):
            note.append(t("from: {source}", source=item["source"][:80]))
        st.caption(" · ".join(n for n in note if n))


def review(batch_id: str) -> list[dict]:
    """Review cards for a batch; edits are saved to the batch file as they happen."""
    items = generate.load_items(batch_id)
    _sync_widgets(batch_id, items)
    c = generate.counts(items)
    titles = {"generated": t("Generated"), "accepted": t("Accepted"), "rejected": t("Rejected"),
              "pending": t("Pending")}
    for col, (key, title) in zip(st.columns(4), titles.items()):
        col.metric(title, c.get(key, 0))
    st.button(t("Accept all pending"), key="gen.accept_rest", on_click=_accept_rest, args=(items,))
    if len(items) > MAX_CARDS:
        st.caption(t("Showing the first {shown} of {total} items.", shown=MAX_CARDS, total=len(items)))
    for i, it in enumerate(items[:MAX_CARDS]):
        card(i, it)
    edited = _edits(items)
    if edited != items:
        generate.save_items(batch_id, edited)
    return edited


def _accept_rest(items: list[dict]) -> None:
    for i in range(len(items)):
        if st.session_state.get(_key("status", i)) == "pending":
            st.session_state[_key("status", i)] = "accepted"


def reasons_panel(batch_id: str, items: list[dict]) -> None:
    """Rejection reasons, most common first, and the button that feeds them into the prompt."""
    counted = filters.reason_counts(items)
    if not counted:
        st.caption(t("No rejected items in this batch."))
        return
    reason, n_items = t("reason"), t("items")
    st.dataframe([{reason: r, n_items: n} for r, n in counted], hide_index=True, use_container_width=True)
    st.multiselect(t("Mistakes to add"), [r for r, _ in counted], default=[r for r, _ in counted], key="gen.reasons")
    st.button(t("Add these mistakes to the next prompt version"), key="gen.mistakes",
              on_click=_add_mistakes, args=(batch_id,))


def _add_mistakes(batch_id: str) -> None:
    cfg = generate.load_config(batch_id)
    latest = prompts.get(cfg.template)  # newest, so edits saved since the batch are kept
    saved = prompts.new_version_with_mistakes(latest, st.session_state.get("gen.reasons") or [])
    _select(saved)
    _flash(t("Saved {name} v{version} with {n} mistake(s) to avoid.", name=saved["name"], version=saved["version"],
             n=len(saved["mistakes"])))


def accept_panel(batch_id: str) -> None:
    cfg = generate.load_config(batch_id)
    default = f"{Path(cfg.seeds).stem if '/' in cfg.seeds else cfg.seeds}-generated"
    st.session_state.setdefault("gen.target", default[:64])
    c1, c2 = st.columns([2, 1])
    c1.text_input(t("Target dataset"), key="gen.target",
                  help=t("Created when it does not exist; each accept adds a version."))
    c2.button(t("Accept into dataset"), key="gen.accept", type="primary", on_click=_accept, args=(batch_id,))


def _accept(batch_id: str) -> None:
    result = generate.accept(batch_id, st.session_state["gen.target"].strip())
    st.session_state.pop("gen.reviewing", None)  # reload cards: accepted items are now marked as added
    _flash(t("Added {n} record(s) to {name} v{version}.", n=result["added"], name=result["name"],
             version=result["version"]))


def acceptance_chart() -> None:
    """Acceptance rate per prompt version over every finished batch."""
    rows = generate.acceptance_by_version()
    if not rows:
        return
    st.plotly_chart(charts.acceptance(rows), width="stretch", key="gen.chart")
