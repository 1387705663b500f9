"""The blind voting page (a link for stakeholders: voting only) and the vote/judge panels of the Compare page."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pandas as pd
import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.evals import rates
from tunelab.ui.i18n import t, t_error
from tunelab.ui.launch import HOST_ENV, LOCAL, is_local

URL_PATH = "vote"


def is_voting() -> bool:
    """True when the browser opened the voting page (/vote): app.py then shows no sidebar and no menu."""
    try:
        url = st.context.url
    except Exception:  # AppTest and older runtimes have no browser context
        return False
    return bool(url) and urlparse(url).path.rstrip("/").endswith("/" + URL_PATH)


def exposed() -> bool:
    """True when the dashboard listens beyond this machine (`--host`): votes then need the report's code."""
    return not is_local(os.environ.get(HOST_ENV, LOCAL))


def hide_chrome() -> None:
    """No sidebar, menu or deploy button around the ballot: a reviewer sees only the vote."""
    st.html("<style>[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'], "
            "[data-testid='stSidebarNav'], [data-testid='stToolbar'] {display: none !important;}</style>")


def _remember_voter() -> None:
    name = " ".join(st.session_state.get("vote.voter", "").split())
    if name:
        st.query_params["voter"] = name  # a refresh keeps the voter, so the same order comes back
    elif "voter" in st.query_params:
        del st.query_params["voter"]


def voting_page() -> None:
    """The ballot for the report named in the URL (?report=ID[&code=...][&voter=...])."""
    from tunelab.evals import votes

    hide_chrome()
    st.title(t("Which answer is better?"))
    report = st.query_params.get("report")
    if not report:
        st.info(t("Open this page from the voting link you were sent."))
        return
    if exposed():
        st.session_state.setdefault("vote.code", st.query_params.get("code", ""))
        try:
            ok = votes.check_code(report, st.session_state["vote.code"])
        except TuneLabError as exc:
            st.error(t_error(str(exc)))
            return
        if not ok:
            st.text_input(t("Access code"), key="vote.code", type="password",
                          help=t("The code that came with your voting link."))
            st.warning(t("This voting page needs the access code that came with the link."))
            return
    st.session_state.setdefault("vote.voter", st.query_params.get("voter", ""))
    st.text_input(t("Your name"), key="vote.voter", on_change=_remember_voter, max_chars=votes.MAX_VOTER,
                  help=t("Your votes are kept under this name; the same name brings you back where you were."))
    voter = st.session_state["vote.voter"]
    if not voter.strip():
        st.caption(t("Type your name to start. You will see a request and two answers from different models, "
                     "without their names, and pick the better one."))
        return
    try:
        ballot = votes.ballot(report, voter)
    except TuneLabError as exc:
        st.error(t_error(str(exc)))
        return
    if st.session_state.get("vote.saved"):
        st.toast(t("Vote saved."), icon=":material/check:")
        st.session_state["vote.saved"] = False
    if ballot["item"] is None:
        st.success(t("Thank you: you voted on all {total} items.", total=ballot["total"]))
        return
    item = ballot["item"]
    st.progress(ballot["done"] / max(ballot["total"], 1),
                text=t("Item {k} of {n}", k=ballot["done"] + 1, n=ballot["total"]))
    st.markdown(f"**{t('Request')}**")
    st.container(border=True, key="vote.request").text(item["prompt"])
    cols = st.columns(2)
    for col, label, text, key in zip(cols, (t("Answer A"), t("Answer B")), item["answers"], ("a", "b")):
        col.markdown(f"**{label}**")
        col.container(border=True, key=f"vote.answer_{key}").text(text)
    with st.form("vote.form", clear_on_submit=True, border=False):
        st.text_area(t("Comment (optional)"), key="vote.comment", height=80)
        choice = None
        for col, (label, value) in zip(st.columns(3), ((t("A is better"), "A"), (t("Tie"), "tie"),
                                                        (t("B is better"), "B"))):
            if col.form_submit_button(label, width="stretch"):
                choice = value
    if choice:
        try:
            votes.cast(report, voter, item["item"], choice, st.session_state.get("vote.comment") or "")
        except TuneLabError as exc:
            st.error(t_error(str(exc)))
            return
        st.session_state["vote.saved"] = True
        st.rerun()


# ---------------------------------------------------------------- Compare page: judge, calibration, link, votes

def judge_results(doc: dict) -> None:
    """The judge's win/tie/loss counts and the prompt it was given, when the report was judged."""
    from tunelab.evals import judge

    verdicts = judge.load(doc["report"])
    if not verdicts:
        return
    st.subheader(t("Judge"))
    a, b = verdicts["pair"]
    if verdicts.get("status") == "failed":
        st.error(t_error(verdicts.get("error") or ""))
    elif verdicts.get("counts"):
        c = verdicts["counts"]
        st.markdown(t("**{b}** vs **{a}**, judged by `{judge}`: {win} win, {tie} tie, {loss} loss ({invalid} unreadable).",
                      a=a, b=b, judge=verdicts["judge"], **c))
        if verdicts.get("n"):
            share = {k: rates.percent(rates.rate(c[k], verdicts["n"])) for k in ("win", "tie", "loss")}
            st.caption(t("Shares with their 95 % intervals: win {win}, tie {tie}, loss {loss}.", **share))
        judge_checks(verdicts, doc["report"])  # both orders, length bias, agreement with reviewers
    else:
        st.caption(t("The judge runs once the answers are in."))
    with st.expander(t("Judge prompt")):
        st.caption(t("Prompt version {id}, stored with the report.", id=verdicts.get("prompt_id") or "-"))
        st.code(verdicts["prompt"], language=None)


def judge_checks(verdicts: dict, report_id: str) -> None:
    """Beside a judge result: both orders' agreement, the length bias, and the judge against the reviewers."""
    from tunelab.evals import votes

    if verdicts.get("consistency"):
        st.caption(t("The two orders agree on {pct} of pairs (a win needs both); the judge picked the longer "
                     "answer in {longer} of its picks (chance: 50 %).",
                     pct=rates.percent(verdicts["consistency"]), longer=rates.percent(verdicts["length_bias"])))
    st.caption(calibration_line(votes.agreement(report_id)))


def calibration_line(agreement: dict) -> str:
    """"The judge agrees with your reviewers on 31 of 40 pairs, 78 % [62, 88]", with kappa."""
    if not agreement["n"]:
        return t("No pair your reviewers voted on has a judge verdict yet: send them the voting link.")
    return t("The judge agrees with your reviewers on {agree} of {n} pairs, {pct} (Cohen's kappa {kappa}).",
             agree=agreement["agree"], n=agreement["n"], pct=rates.percent(agreement),
             kappa="n/a" if agreement["kappa"] is None else f"{agreement['kappa']:.2f}")


def _base_url() -> str:
    try:
        url = st.context.url or ""
    except Exception:
        url = ""
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "http://127.0.0.1:8501"


def _make_pairs(report_id: str) -> None:
    from tunelab.evals import votes

    try:
        out = votes.to_preferences(report_id, st.session_state["compare.vote_into"].strip())
    except TuneLabError as exc:
        st.session_state["compare.vote_msg"] = ("error", str(exc))
        return
    st.session_state["compare.vote_msg"] = ("ok", t("{name} v{version}: {pairs} preference pairs. Train on them with "
                                                    "method dpo.", **out))


def votes_panel(report_id: str) -> None:
    """Compare page: the voting link for stakeholders, the votes so far, and votes -> preference pairs."""
    from tunelab.evals import votes

    with st.expander(t("Votes from your reviewers"), icon=":material/how_to_vote:"):
        try:
            link = votes.link(report_id, _base_url())
            s = votes.summary(report_id)
        except TuneLabError as exc:
            st.error(t_error(str(exc)))
            return
        st.caption(t("Send this link: a reviewer sees only the ballot (a request and two unnamed answers). "
                     "Local-only unless the dashboard was started with --host; then the code is required."))
        st.code(link["url"], language=None)
        st.caption(t("Access code: {code} · `tunelab reports votes {id}`", code=link["code"], id=report_id))
        if not s["votes"]:
            st.caption(t("No votes yet."))
            return
        rows = [{t("Pair"): f"{p['b']} vs {p['a']}", t("Votes"): p["n"], t("Preferred"): p["counts"]["win"],
                 t("Tie"): p["counts"]["tie"], t("Not preferred"): p["counts"]["loss"],
                 t("Preferred in decided votes"): rates.percent(p["preferred"])} for p in s["pairs"] if p["n"]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"compare.votes.{report_id}")
        st.caption(t("{votes} votes from {voters} reviewers.", votes=s["votes"], voters=len(s["voters"])))
        st.caption(calibration_line(s["judge_agreement"]))
        st.session_state.setdefault("compare.vote_into", f"{report_id}-prefs"[:64])
        st.text_input(t("Preference dataset"), key="compare.vote_into")
        st.button(t("Make preference pairs from the votes"), key="compare.vote_pairs", on_click=_make_pairs,
                  args=(report_id,), icon=":material/thumbs_up_down:")
        msg = st.session_state.pop("compare.vote_msg", None)
        if msg:
            (st.error if msg[0] == "error" else st.success)(t_error(msg[1]) if msg[0] == "error" else msg[1])
