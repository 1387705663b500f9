"""Issue 23: the judge asked in both orders, stakeholder votes, the judge checked against them, votes -> DPO pairs.

Answers and judges are real OpenAI-compatible HTTP servers on 127.0.0.1 (tests/chat_server.py) reached
through TuneLab's openai backend; intervals and kappa are checked against scipy and published values.
"""

from __future__ import annotations

import json
import re

import pytest
from chat_server import make_report, serve
from scipy.stats import binomtest

from tunelab.cli import main as cli
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.evals import judge, rates, votes

ALL_A = lambda model, prompt: "A"  # noqa: E731  a judge that always prefers the first position


def _answers(prompt: str) -> tuple[str, str]:
    """The two answers a judge prompt shows (default prompt layout)."""
    m = re.search(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n\nWhich", prompt, re.S)
    return m.group(1), m.group(2)


def _longer(model: str, prompt: str) -> str:
    """A judge that picks the longer answer, except on item 0 where it always says A."""
    if "item 0 " in prompt:
        return "A"
    a, b = _answers(prompt)
    return "A" if len(a) > len(b) else "B"


def _wilson(k: int, n: int) -> list[float]:
    ci = binomtest(k, n).proportion_ci(method="wilson")  # scipy's own Wilson interval: the oracle
    return [ci.low, ci.high]


def _judge(rid: str, reply, capsys) -> dict:
    with serve(reply) as (url, asked):
        capsys.readouterr()
        assert cli(["reports", "judge", rid, "--judge", f"openai:{url}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    doc["asked"] = asked
    return doc


def test_a_judge_that_always_answers_a_ends_as_all_ties(workspace, capsys):
    rid = make_report(6)
    doc = _judge(rid, ALL_A, capsys)
    assert len(doc["asked"]) == 12  # every pair asked twice: short-bot shown first, then long-bot first
    assert doc["counts"] == {"win": 0, "tie": 6, "loss": 0, "invalid": 0}
    assert doc["position_consistency"] == 0.0
    # Counted one order at a time, the same judge would have made a confident winner either way.
    assert doc["orders"]["ab"] == {"win": 0, "tie": 0, "loss": 6, "invalid": 0}
    assert doc["orders"]["ba"] == {"win": 6, "tie": 0, "loss": 0, "invalid": 0}
    assert doc["first_position"]["rate"] == 1.0 and doc["first_position"]["p"] == pytest.approx(
        binomtest(12, 12).pvalue)
    assert doc["ci"]["tie"] == pytest.approx(_wilson(6, 6), abs=1e-4)
    assert doc["prompt"] == judge.DEFAULT_PROMPT and doc["prompt_id"].startswith("sha256:")
    assert doc["judge_agreement"]["n"] == 0 and doc["judge_agreement"]["rate"] is None
    assert judge.load(rid)["position_consistency"] == 0.0  # stored with the report


def test_a_consistent_judge_wins_and_its_length_bias_is_measured(workspace, capsys, tmp_path):
    rid = make_report(6)
    doc = _judge(rid, _longer, capsys)
    # Items 1-5: long-bot in both orders (a win for b); item 0: "A" both times, so the orders disagree: a tie.
    assert doc["counts"] == {"win": 5, "tie": 1, "loss": 0, "invalid": 0}
    assert doc["position_consistency"] == pytest.approx(5 / 6, abs=1e-4)
    assert doc["ci"]["win"] == pytest.approx(_wilson(5, 6), abs=1e-4)
    lb = doc["length_bias"]  # 10 picks of the longer answer on items 1-5, 1 of 2 on item 0
    assert (lb["k"], lb["n"]) == (11, 12) and lb["ci"] == pytest.approx(_wilson(11, 12), abs=1e-4)
    assert lb["p"] == pytest.approx(binomtest(11, 12).pvalue)
    # A new prompt is a new version; the previous verdicts are kept in the history.
    prompt = tmp_path / "p.txt"
    prompt.write_text(judge.DEFAULT_PROMPT.replace("Which answer", "Which one"))
    with serve(_longer) as (url, _):
        assert cli(["reports", "judge", rid, "--judge", f"openai:{url}", "--judge-prompt", str(prompt)]) == 0
    again = judge.load(rid)
    assert again["prompt_id"] != doc["prompt_id"] and again["prompt"] == prompt.read_text()
    history = (workspace / "reports" / rid / judge.HISTORY).read_text().splitlines()
    assert [json.loads(h)["prompt_id"] for h in history] == [doc["prompt_id"]]


def test_cohens_kappa_matches_published_values():
    # Wikipedia's worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert rates.kappa(a, b, ["y", "n"])["kappa"] == pytest.approx(0.4)
    # Perfect agreement is 1; one label only on both sides is undefined, not a division by zero.
    assert rates.kappa(["y", "n"], ["y", "n"], ["y", "n"])["kappa"] == pytest.approx(1.0)
    assert rates.kappa(["y", "y"], ["y", "y"], ["y", "n"]) == {"kappa": None, "ci": None}
    assert rates.percent(rates.rate(31, 40)) == "78 % [62, 88]"  # the issue's own example


def _item(rid: str, index: int) -> str:
    return f"{index}:0"


def _vote_for(rid: str, voter: str, index: int, model: str, comment: str = "") -> dict:
    """Cast a vote for model (or "tie") on an item, whatever side this voter sees it on."""
    it = {"item": _item(rid, index), "pair": ["short-bot", "long-bot"]}
    left, right = votes.shown(rid, voter, it)
    choice = "tie" if model == "tie" else "A" if model == left else "B"
    assert right in it["pair"]
    return votes.cast(rid, voter, it["item"], choice, comment)


def test_votes_results_intervals_and_judge_agreement(workspace, capsys):
    rid = make_report(6)
    _judge(rid, _longer, capsys)  # judge: item 0 tie, items 1-5 long-bot
    # Ann: item 0 tie, item 1 short-bot, items 2-5 long-bot. Bo agrees on items 2 and 3 only.
    for i, m in enumerate(["tie", "short-bot", "long-bot", "long-bot", "long-bot", "long-bot"]):
        _vote_for(rid, "Ann", i, m, comment="too terse" if m == "short-bot" else "")
    _vote_for(rid, "Bo", 2, "long-bot")
    _vote_for(rid, "Bo", 3, "short-bot")
    _vote_for(rid, " bo ", 3, "long-bot")  # Bo changes his mind: the later vote counts (same voter)
    capsys.readouterr()
    assert cli(["reports", "votes", rid, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["votes"] == 8 and len(doc["voters"]) == 2 and doc["damaged"] == 0 and doc["items"] == 6
    (pair,) = doc["pairs"]
    assert (pair["a"], pair["b"]) == ("short-bot", "long-bot")
    assert doc["counts"] == pair["counts"] == {"win": 6, "tie": 1, "loss": 1}
    assert doc["ci"]["win"] == pytest.approx(_wilson(6, 8), abs=1e-4)
    assert pair["preferred"]["rate"] == pytest.approx(6 / 7, abs=1e-4)
    assert doc["comments"] == [{"item": "1:0", "voter": "Ann", "winner": "short-bot", "comment": "too terse"}]
    ag = doc["judge_agreement"]
    # Majority per item = Ann's (Bo agrees where he voted). Agreement 5 of 6 (item 1 differs).
    # Kappa by hand over (short, long, tie): po 5/6; pe = 1/6*0 + 4/6*5/6 + 1/6*1/6 = 21/36 -> (30-21)/(36-21) = 0.6.
    assert (ag["agree"], ag["n"], ag["rate"]) == (5, 6, pytest.approx(5 / 6, abs=1e-4))
    assert ag["kappa"] == pytest.approx(0.6) and ag["ci"] == pytest.approx(_wilson(5, 6), abs=1e-4)
    # Without ties (items 1-5): 4 of 5 agree; the judge always says long-bot, so kappa is 0 (chance level).
    assert (ag["without_ties"]["agree"], ag["without_ties"]["n"]) == (4, 5)
    assert ag["without_ties"]["kappa"] == pytest.approx(0.0)
    assert ag["sentence"] == "the judge agrees with your reviewers on 5 of 6 pairs, 83 % [44, 97]"
    # The judge command carries the same calibration next to its result.
    capsys.readouterr()
    doc = _judge(rid, _longer, capsys)
    assert doc["judge_agreement"]["sentence"] == ag["sentence"]


def test_a_ballot_is_blind_and_stable_per_voter(workspace):
    rid = make_report(6)
    first = votes.ballot(rid, "Ann")
    assert first == votes.ballot(rid, "  ann ")  # a refresh (or the same name typed again) sees the same
    assert first["done"] == 0 and first["total"] == 6
    assert not any("bot" in a for a in first["item"]["answers"])  # no model names
    item = lambda i: {"item": f"{i}:0", "pair": ["short-bot", "long-bot"]}  # noqa: E731
    sides = {v: [votes.shown(rid, v, item(i))[0] for i in range(6)] for v in ("Ann", "Bo", "Cy", "Di")}
    assert len({tuple(s) for s in sides.values()}) > 1  # different voters see different orders
    assert {m for s in sides.values() for m in s} == {"short-bot", "long-bot"}  # either model may be on the left
    votes.cast(rid, "Ann", first["item"]["item"], "A")
    nxt = votes.ballot(rid, "Ann")
    assert nxt["done"] == 1 and nxt["item"]["item"] != first["item"]["item"]


def test_votes_file_tolerates_a_damaged_line_and_refuses_bad_votes(workspace, capsys):
    rid = make_report(3)
    _vote_for(rid, "Ann", 0, "long-bot")
    path = workspace / "reports" / rid / votes.FILE
    with open(path, "a") as fh:
        fh.write('{"item": "1:0", "voter": "An')  # a writer that died mid-line
    _vote_for(rid, "Ann", 1, "short-bot")  # starts on a fresh line: not swallowed by the damage
    summary = votes.summary(rid)
    assert summary["votes"] == 2 and summary["damaged"] == 1
    with pytest.raises(TuneLabError, match="give your name"):
        votes.cast(rid, "   ", "0:0", "A")
    with pytest.raises(TuneLabError, match="A, B or tie"):
        votes.cast(rid, "Ann", "0:0", "left")
    with pytest.raises(TuneLabError, match="no ballot item"):
        votes.cast(rid, "Ann", "99:0", "A")
    capsys.readouterr()
    assert cli(["reports", "votes", "no-such-report"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown report" in err and "Traceback" not in err


def test_vote_link_carries_an_access_code(workspace, capsys):
    rid = make_report(2)
    assert cli(["reports", "vote-link", rid, "--url", "http://10.0.0.5:8501", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["url"] == f"http://10.0.0.5:8501/vote?report={rid}&code={out['code']}"
    assert votes.link(rid)["code"] == out["code"]  # the same code every time
    assert votes.check_code(rid, out["code"]) and not votes.check_code(rid, "guess") and not votes.check_code(rid, "")


@pytest.mark.slow
def test_votes_become_preference_pairs_a_dpo_run_accepts(workspace, tiny_model, capsys):
    from test_preference_train import NO_REPORT

    rid = make_report(6)
    for i, m in enumerate(["tie", "short-bot", "long-bot", "long-bot", "long-bot", "long-bot"]):
        _vote_for(rid, "Ann", i, m)
    capsys.readouterr()
    assert cli(["reports", "vote-pairs", rid, "--into", "prefs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"name": "prefs", "version": 1, "pairs": 5, "report": rid, "votes": 6}
    recs = store.read("prefs").to_pylist()
    assert len(recs) == 5 and all(r["chosen"] and r["rejected"] and r["output"] == r["chosen"] for r in recs)
    by_q = {r["instruction"]: r for r in recs}
    assert by_q["What is item 1 called, number 1?"]["chosen"] == "1." and "careful" in by_q[
        "What is item 1 called, number 1?"]["rejected"]
    entry = store.manifest("prefs")["versions"][-1]
    assert entry["params"]["report"] == rid and entry["lineage"]["report"] == rid
    assert cli(["train", "--model", tiny_model, "--data", "prefs", "--method", "dpo", "--recipe", "manual",
                "--max-steps", "2", "--batch-size", "2", "--cutoff-len", "128", *NO_REPORT, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "completed"
    from tunelab.train import runs

    rows = runs.metrics(run["run"])
    assert rows and "reward_margin" in rows[-1]
