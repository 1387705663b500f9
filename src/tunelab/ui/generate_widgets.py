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
    st.selectbox("Seed examples", sources, key="gen.seeds", index=0 if sources else None,
                 help="A dataset, or a seed file (Alpaca JSON/JSONL or self-instruct seed_tasks.jsonl).")
    path = st.text_input("…or a seed file path", key="gen.seeds_path")
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
    name = c1.selectbox("Prompt template", names, key="gen.template")
    numbers = [v["version"] for v in prompts.versions(name)]
    if st.session_state.get("gen.version") not in numbers:
        st.session_state["gen.version"] = numbers[-1]
    number = c2.selectbox("Version", numbers, key="gen.version", format_func=lambda v: f"v{v}")
    version = prompts.get(name, number)
    if st.session_state.get("gen.loaded") != (name, number):
        _load_version_into_editor(version)
    if version.get("note"):
        st.caption(f"v{number}: {version['note']} (parent: {version.get('parent') or '—'})")
    st.text_area("Template", key="gen.text", height=220,
                 help="Variables: {seed_examples} {n} {task_description} {mistakes}")
    st.text_input("Task description ({task_description})", key="gen.task")
    st.text_area("Mistakes to avoid ({mistakes}), one per line", key="gen.mistakes_text", height=90)
    c1, c2 = st.columns([2, 1])
    c1.text_input("Note for the new version", key="gen.note", placeholder="what you changed and why")
    c2.button("Save as new version", key="gen.save", on_click=_save_version, args=(name, number))
    if _edited(version):
        st.warning("Unsaved edits: a batch uses the saved version shown above.", icon=":material/edit:")
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
    _flash(f"Saved {name} v{saved['version']}.")


def _select(version: dict) -> None:
    st.session_state["gen.template"] = version["name"]
    st.session_state["gen.version"] = version["version"]
    _load_version_into_editor(version)


# ------------------------------------------------------------------ launching a batch


def backend_picker() -> str:
    from tunelab.models.registry import list_models

    names = [m["name"] for m in list_models()] + [ENDPOINT]
    model = st.selectbox("Model", names, key="gen.model")
    if model == ENDPOINT:
        url = st.text_input("Endpoint base URL (…/v1)", key="gen.endpoint", placeholder="http://127.0.0.1:8000/v1")
        return f"openai:{url.strip()}"
    return f"local:{model}"


def strategy_picker() -> list[str]:
    picked = []
    c1, c2, c3 = st.columns(3)
    if c1.checkbox("New instructions", value=True, key="gen.s_new"):
        picked.append("new")
    if c2.checkbox("Fill missing outputs", key="gen.s_fill"):
        picked.append("fill")
    if c3.checkbox("Paraphrase records", key="gen.s_para"):
        picked.append("paraphrase")
    st.checkbox("Also write outputs for new instructions (a second call)", value=True, key="gen.outputs")
    return picked


def launch(cfg: generate.GenerateConfig) -> None:
    """Start `tunelab generate --job ID` in the background and select its batch."""
    generate.check(cfg)
    batch_id = generate.create(cfg)
    jobs.launch("generations", batch_id, ["generate", "--job", batch_id, "--no-accept", "--json"])
    st.session_state["gen.batch"] = batch_id
    _flash(f"Started batch {batch_id} (`tunelab generate --job {batch_id}`).")


@st.fragment(run_every=2.0)
def progress(batch_id: str) -> None:
    """Live progress of a running batch; reruns the page when it finishes."""
    st_ = jobs.read_status(generate.batch_dir(batch_id)) or {}
    if st_.get("status") in jobs.ACTIVE:
        done, total = st_.get("done", 0), max(st_.get("total", 1), 1)
        st.progress(min(done / total, 1.0), text=f"{st_.get('status')}: {st_.get('progress', '')}")
    else:
        st.rerun()


# ------------------------------------------------------------------ review


def batch_picker() -> str | None:
    batches = jobs.list_jobs("generations")
    if not batches:
        st.info("No batches yet: generate one above.")
        return None
    labels = {b["id"]: _label(b) for b in batches}
    if st.session_state.get("gen.batch") not in labels:
        st.session_state["gen.batch"] = batches[0]["id"]
    return st.selectbox("Batch", list(labels), key="gen.batch", format_func=labels.get)


def _label(b: dict) -> str:
    c = b.get("counts") or {}
    got = f"{c.get('accepted', 0)}/{c.get('generated', 0)} accepted" if c else ""
    return f"{b['id']} · {b.get('template', '')} v{b.get('prompt_version') or '?'} · {b.get('status')} {got}"


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
    with st.container(border=True):
        c1, c2 = st.columns([3, 1])
        c1.text_area("Instruction", key=_key("instruction", i), height=68, disabled=bool(added))
        c2.radio("Status", STATUSES, key=_key("status", i), horizontal=False, disabled=bool(added))
        if item.get("input") or item.get("strategy") == "paraphrase":
            st.text_input("Input", key=_key("input", i), disabled=bool(added))
        st.text_area("Output", key=_key("output", i), height=68, disabled=bool(added))
        st.text_input("Reason (when rejected)", key=_key("reason", i), disabled=bool(added),
                      placeholder="why this item is wrong — it can become a 'mistake to avoid'")
        note = [item.get("strategy", ""), f"added to {added}" if added else ""]
        if item.get("source"):
            note.append(f"from: {item['source'][:80]}")
        st.caption(" · ".join(n for n in note if n))


def review(batch_id: str) -> list[dict]:
    """Review cards for a batch; edits are saved to the batch file as they happen."""
    items = generate.load_items(batch_id)
    _sync_widgets(batch_id, items)
    c = generate.counts(items)
    m = st.columns(4)
    for col, key in zip(m, ("generated", "accepted", "rejected", "pending")):
        col.metric(key.capitalize(), c.get(key, 0))
    st.button("Accept all pending", key="gen.accept_rest", on_click=_accept_rest, args=(items,))
    if len(items) > MAX_CARDS:
        st.caption(f"Showing the first {MAX_CARDS} of {len(items)} items.")
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
        st.caption("No rejected items in this batch.")
        return
    st.dataframe([{"reason": r, "items": n} for r, n in counted], hide_index=True, use_container_width=True)
    st.multiselect("Mistakes to add", [r for r, _ in counted], default=[r for r, _ in counted], key="gen.reasons")
    st.button("Add these mistakes to the next prompt version", key="gen.mistakes",
              on_click=_add_mistakes, args=(batch_id,))


def _add_mistakes(batch_id: str) -> None:
    cfg = generate.load_config(batch_id)
    latest = prompts.get(cfg.template)  # newest, so edits saved since the batch are kept
    saved = prompts.new_version_with_mistakes(latest, st.session_state.get("gen.reasons") or [])
    _select(saved)
    _flash(f"Saved {saved['name']} v{saved['version']} with {len(saved['mistakes'])} mistake(s) to avoid.")


def accept_panel(batch_id: str) -> None:
    cfg = generate.load_config(batch_id)
    default = f"{Path(cfg.seeds).stem if '/' in cfg.seeds else cfg.seeds}-generated"
    st.session_state.setdefault("gen.target", default[:64])
    c1, c2 = st.columns([2, 1])
    c1.text_input("Target dataset", key="gen.target", help="Created when it does not exist; each accept adds a version.")
    c2.button("Accept into dataset", key="gen.accept", type="primary", on_click=_accept, args=(batch_id,))


def _accept(batch_id: str) -> None:
    result = generate.accept(batch_id, st.session_state["gen.target"].strip())
    st.session_state.pop("gen.reviewing", None)  # reload cards: accepted items are now marked as added
    _flash(f"Added {result['added']} record(s) to {result['name']} v{result['version']}.")


def acceptance_chart() -> None:
    """Acceptance rate per prompt version over every finished batch."""
    import plotly.express as px

    rows = generate.acceptance_by_version()
    if not rows:
        return
    data = [dict(r, label=f"{r['template']} v{r['version']}", text=f"{r['accepted']}/{r['items']}") for r in rows]
    fig = px.bar(data, x="label", y="rate", text="text", range_y=[0, 1],
                 labels={"label": "prompt version", "rate": "acceptance rate"})
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, use_container_width=True, key="gen.chart")
