"""The loop on the Compare page: fix the data from a report's mistakes, or send them to Generate."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.ui import charts as ch
from tunelab.ui.i18n import t, t_error


def _fix(report_id: str, examples: list[int], into: str) -> None:
    from tunelab import workflow

    try:
        out = workflow.fix(report_id, into, examples, allow_test=st.session_state.get("compare.fix_allow_test", False))
    except TuneLabError as exc:
        st.session_state["compare.loop_error"] = str(exc)
        return
    st.session_state["compare.fixed"] = out
    st.session_state["compare.loop_error"] = None


def _seeds(report_id: str, examples: list[int], into: str) -> None:
    from tunelab import workflow

    try:
        out = workflow.seeds(report_id, into, examples=examples)
    except TuneLabError as exc:
        st.session_state["compare.loop_error"] = str(exc)
        return
    st.session_state["compare.seeded"] = out
    st.session_state["compare.loop_error"] = None
    # The Generate page opens on these seeds and this prompt version.
    st.session_state["gen.seeds"] = out["seeds"]["name"]
    st.session_state["gen.template"] = out["prompt"]["name"]
    st.session_state["gen.version"] = out["prompt"]["version"]


def _continue(run_id: str, data: str) -> None:
    from tunelab import workflow

    try:
        new = workflow.continue_training(run_id, data)
    except TuneLabError as exc:
        st.session_state["compare.loop_error"] = str(exc)
        return
    st.session_state["compare.continued"] = new
    st.session_state["train.run"] = new
    st.session_state["compare.loop_error"] = None


def loop_panel(doc: dict) -> None:
    """Where the tuned model is wrong, and one click each to fix the data, seed Generate, train again."""
    from tunelab import workflow
    from tunelab.train import runs

    tuned = workflow.tuned_model(doc)
    st.subheader(t("Fix the data"))
    threshold = st.slider(t("Wrong when ROUGE-L is below"), 0.0, 1.0, workflow.WRONG_BELOW, 0.05,
                          key="compare.wrong_below", help=t("…and the answer is not an exact match."))
    wrong = workflow.wrong_examples(doc, tuned, threshold)
    if not wrong:
        st.caption(t("{model} answered every example well enough.", model=tuned))
        return
    st.caption(t("{n} of {total} answers of {model} are wrong.", n=len(wrong), total=len(doc["examples"]), model=tuned))
    st.dataframe(pd.DataFrame([{"#": e["index"], "prompt": e["prompt"], "reference": e["reference"],
                                "answer": e["answer"], ch.metric_name("rouge_l"): round(e["rouge_l"] * 100, 1)} for e in wrong]),
                 hide_index=True, width="stretch", key="compare.wrong",
                 column_config={"prompt": t("Prompt"), "reference": t("Reference"), "answer": t("Answer")})
    indices = [e["index"] for e in wrong]
    key = f"compare.loop_examples.{doc['report']}"
    st.session_state.setdefault(key, indices)
    st.session_state[key] = [i for i in st.session_state[key] if i in indices] or indices
    chosen = st.multiselect(t("Examples"), indices, key=key)
    run = (doc.get("meta") or {}).get("run") or (tuned if any(
        r["name"] == tuned and r["ref"].get("kind") == "run" for r in doc.get("model_refs") or []) else None)
    train_data = ""
    if run:
        try:
            train_data = runs.config(run).data.data
        except TuneLabError:
            run = None
    st.session_state.setdefault("compare.fix_into", train_data or f"{doc['data']['name']}-fixed")
    st.session_state.setdefault("compare.seeds_into", f"{doc['data']['name']}-seeds")
    c1, c2 = st.columns(2)
    with c1:
        into = st.text_input(t("Training dataset"), key="compare.fix_into",
                             help=t("The corrected answers (each example's reference) are added as a new version."))
        st.checkbox(t("Add test rows anyway (they stop testing anything)"), key="compare.fix_allow_test")
        st.button(t("Add as training records"), key="compare.fix", icon=":material/playlist_add:",
                  on_click=_fix, args=(doc["report"], chosen, into.strip()), disabled=not chosen)
    with c2:
        seeds_into = st.text_input(t("Seed dataset"), key="compare.seeds_into")
        st.button(t("Send to Generate"), key="compare.seeds", icon=":material/auto_awesome:",
                  on_click=_seeds, args=(doc["report"], chosen, seeds_into.strip()), disabled=not chosen)
    if st.session_state.get("compare.loop_error"):
        st.error(t_error(st.session_state["compare.loop_error"]))
    fixed = st.session_state.get("compare.fixed")
    if fixed and fixed.get("report") == doc["report"]:
        st.success(t("{name} v{version}: {added} added, {corrected} corrected from this report.", **fixed))
        if run:
            st.button(t("Continue training {run} on {name}", run=run, name=fixed["name"]), key="compare.continue",
                      type="primary", icon=":material/model_training:", on_click=_continue,
                      args=(run, fixed["name"]))
        st.code(f"tunelab train --model {run or tuned} --data {fixed['name']}", language="bash")
    seeded = st.session_state.get("compare.seeded")
    if seeded and seeded.get("report") == doc["report"]:
        st.success(t("Seeds {seeds} v{sv} and prompt {prompt} v{pv} with these mistakes to avoid are ready.",
                     seeds=seeded["seeds"]["name"], sv=seeded["seeds"]["version"], prompt=seeded["prompt"]["name"],
                     pv=seeded["prompt"]["version"]))
        st.page_link("pages/generate.py", label=t("Go to Generate"), icon=":material/auto_awesome:")
    if st.session_state.get("compare.continued"):
        st.success(t("Started {run}: its own before/after report follows when it finishes.",
                     run=st.session_state["compare.continued"]))
        st.page_link("pages/train.py", label=t("Go to Train"), icon=":material/model_training:")
