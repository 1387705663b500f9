"""The voting page (pages/vote.py) and the Compare page's judge and votes panels, through app.py with AppTest."""

from __future__ import annotations

from chat_server import make_report, serve
from pagetest import APP, TIMEOUT, texts
from streamlit.testing.v1 import AppTest

from tunelab.cli import main as cli
from tunelab.evals import votes
from tunelab.ui.launch import HOST_ENV


def _vote_page(query: dict) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/vote.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_a_local_vote_needs_no_code_and_moves_to_the_next_item(workspace, monkeypatch):
    monkeypatch.setenv(HOST_ENV, "127.0.0.1")
    rid = make_report(3)
    at = _vote_page({"report": rid})
    assert "Type your name to start." in texts(at) and not at.text_input(key="vote.voter").value
    at.text_input(key="vote.voter").set_value("Ann").run()
    assert at.query_params["voter"] == "Ann"  # a refresh keeps the voter (and so the same order)
    first = votes.ballot(rid, "Ann")["item"]
    shown = [t.value for t in at.text]
    assert first["prompt"] in shown and first["answers"][0] in shown and first["answers"][1] in shown
    assert not any("bot" in s for s in shown)  # blind: no model names
    at.text_area(key="vote.comment").set_value("clearer")
    _button(at, "B is better").click().run()
    assert not at.exception, at.exception
    (vote,) = votes.read(rid)[0]
    assert vote["item"] == first["item"] and vote["choice"] == "B" and vote["comment"] == "clearer"
    assert vote["winner"] == vote["shown"][1] and vote["voter"] == "Ann"
    assert "Item 2 of 3" in [p.proto.text for p in at.get("progress")]


def test_an_exposed_dashboard_asks_for_the_reports_access_code(workspace, monkeypatch):
    monkeypatch.setenv(HOST_ENV, "0.0.0.0")
    rid = make_report(2)
    code = votes.link(rid)["code"]
    at = _vote_page({"report": rid, "code": "wrong"})
    assert "needs the access code" in texts(at)
    assert not [t for t in at.text_input if t.key == "vote.voter"]  # no ballot without the code
    at.text_input(key="vote.code").set_value(code).run()
    assert "needs the access code" not in texts(at)
    assert at.text_input(key="vote.voter")  # the ballot opens
    at2 = _vote_page({"report": rid, "code": code})  # the link's own code works straight away
    assert at2.text_input(key="vote.voter") and "needs the access code" not in texts(at2)


def test_no_report_in_the_link_says_where_to_get_one(workspace):
    at = _vote_page({})
    assert "Open this page from the voting link you were sent." in [i.value for i in at.info]


def test_compare_shows_the_judge_checks_and_the_votes_beside_it(workspace, capsys):
    rid = make_report(4)
    # A judge that always picks long-bot (the answer mentioning 'careful'): consistent in both orders.
    judge = lambda m, p: "A" if "careful" in p.split("Answer B:")[0].split("Answer A:")[1] else "B"  # noqa: E731
    with serve(judge) as (url, _):
        assert cli(["reports", "judge", rid, "--judge", f"openai:{url}", "--json"]) == 0
    capsys.readouterr()
    for i in range(4):
        it = {"item": f"{i}:0", "pair": ["short-bot", "long-bot"]}
        left = votes.shown(rid, "Ann", it)[0]
        votes.cast(rid, "Ann", it["item"], "A" if (left == "long-bot") == (i < 3) else "B")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/compare.py")
    at.query_params.update({"report": rid})
    at.run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "The two orders agree on 100 % [51, 100] of pairs" in shown
    assert "win 100 % [51, 100], tie 0 % [0, 49], loss 0 % [0, 49]" in shown
    assert "The judge agrees with your reviewers on 3 of 4 pairs, 75 % [30, 95]" in shown
    assert f"/vote?report={rid}&code=" in " ".join(c.value for c in at.code)
    assert "4 votes from 1 reviewers." in shown
    at.text_input(key="compare.vote_into").set_value("prefs")
    at.button(key="compare.vote_pairs").click().run()
    assert "prefs v1: 4 preference pairs." in " ".join(s.value for s in at.success)

