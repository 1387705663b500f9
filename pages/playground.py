"""Playground: chat with one model, or two side by side (base vs tuned), keep good answers as data,
and rate answers (thumbs, a better answer, A over B) into a preference dataset."""

import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.ui import cache, chat, layout, play_state, serve_widgets
from tunelab.ui.i18n import t

layout.init_state()
play_state.restore()  # ?chat=ID: a refresh brings the conversation back (ui/play_state.py)
st.title(t("Playground"))
st.caption(t("Ask a question and watch the answer appear. Pick a second model to compare base and tuned side by side."))

choices = chat.model_choices()  # read from disk every run: a run that just finished appears
chat.preselect(choices)  # ?model=RUN_ID_OR_NAME[&compare=OTHER]: a link from another page, or a refresh
if "play.model_a" not in st.session_state and (pair := chat.default_pair(choices)):
    st.session_state["play.model_a"], st.session_state["play.model_b"] = pair
c1, c2 = st.columns(2)
model_a = c1.selectbox(t("Model"), choices, key="play.model_a",
                       help=t("A shipped model, one you added, or a finished training run."))
# Option labels built in the run: AppTest calls format_func outside it, where t() has no session.
labels_b = {chat.NO_MODEL: t(chat.NO_MODEL)} | {c: c for c in choices}
model_b = c2.selectbox(t("Compare with"), [chat.NO_MODEL] + choices, key="play.model_b", format_func=labels_b.get,
                       help=t("Optional second model: both answer the same prompt, side by side."))
chat.remember_selection(model_a, model_b)
chat.watch_choices(choices)
system = st.text_area(t("System prompt"), key="play.system", height=68, placeholder=t("You are a helpful assistant."),
                      help=t("Standing instructions the model sees before every message (its role, tone, rules)."))
with st.expander(t("Generation settings")):
    try:
        settings = chat.settings_form()
    except TuneLabError as exc:
        layout.show_error(exc)
        st.stop()
    engine = st.radio(t("Engine"), chat.ENGINES, key="play.engine", horizontal=True, help=t(chat.ENGINE_HELP))
with st.expander(t("Ratings")):
    rater = chat.Rater(chat.feedback_target(), system, engine)
serve_widgets.serve_panel(model_a, engine)

slots = {"A": model_a} | ({"B": model_b} if model_b != chat.NO_MODEL else {})
backends = {}
for slot, model in slots.items():
    try:
        with st.spinner(t("Loading {model} (the first time takes a while) ...", model=model)):
            backends[slot] = cache.backend(chat.backend_spec(model, engine))
    except TuneLabError as exc:
        layout.show_error(exc)
        st.stop()
    if getattr(backends[slot], "fallback_template", False):
        st.info(t("**{model}** is a base model without a chat template: TuneLab wraps your messages in a simple "
                  "Instruction/Response template. Answers can be rough; fine-tuning teaches it to chat.", model=model),
                icon=":material/info:")

log = st.session_state["play.history"]
# Locked while answers are being generated: on submit in the browser at once, and on every run
# until both answers are in (a rerun in the middle of an answer re-attaches to it below).
prompt = st.chat_input(t("Message"), key="play.prompt", disabled=chat.busy(), submit_mode="disable")
if prompt and not chat.busy():
    chat.ask(log, prompt, backends, slots, system, settings)

columns = dict(zip(slots, st.columns(len(slots))))
live: dict = {}
for slot, model in slots.items():
    with columns[slot]:
        if len(slots) > 1:
            st.subheader(model)
        chat.render_thread(log, slot, rater, live)
if live:
    st.button(t("Stop generating"), key="play.stop", icon=":material/stop_circle:", on_click=chat.stop_all)
play_state.save(log, system)  # before follow(): its rerun once both answers are in ends this run
chat.follow(live)  # both answers grow side by side; reruns once both are in
chat.preference_row(rater, log, slots)

if log and log[-1]["replies"]:
    st.divider()
    s1, s2, s3, s4 = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
    dataset = s1.text_input(t("Dataset"), value="playground", key="play.save_dataset",
                            help=t("Saving adds the last question and answer as one training record "
                                   "(a new dataset version)."))
    answered = sorted(log[-1]["replies"])  # A then B, whichever finished first
    slot = s2.radio(t("Answer"), answered, key="play.save_slot", horizontal=True,
                    format_func=lambda s: slots.get(s, s)) if len(answered) > 1 else answered[0]
    if s3.button(t("Save as training record"), key="play.save", icon=":material/bookmark_add:"):
        try:
            entry = chat.save_exchange(dataset, log, slot, system)
            st.success(t("Saved to **{dataset}**, version {version} ({records} records).", dataset=dataset,
                         version=entry["version"], records=entry["records"]))
        except TuneLabError as exc:
            layout.show_error(exc)
    if s4.button(t("Clear conversation"), key="play.clear", icon=":material/delete_sweep:"):
        chat.cancel_all()
        log.clear()
        play_state.save(log, system)
        st.rerun()
