"""Stakeholders vote through the voting page in Chromium; `tunelab reports votes --json` then counts their votes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.browser


def _texts(page) -> list[str]:
    return page.locator("[data-testid='stText']").all_inner_texts()


def _start(page, url: str, voter: str) -> None:
    page.goto(url)
    page.get_by_label("Your name", exact=True).fill(voter)
    page.get_by_label("Your name", exact=True).press("Enter")
    page.get_by_text("Item 1 of").wait_for()


def _vote(page, label: str, k: int, n: int, comment: str = "") -> None:
    page.get_by_text(f"Item {k} of {n}").wait_for()
    if comment:
        page.get_by_label("Comment (optional)", exact=True).fill(comment)
    page.get_by_role("button", name=label).click()
    page.get_by_text(f"Item {k + 1} of {n}" if k < n else f"you voted on all {n} items").wait_for()


def test_reviewers_vote_through_the_voting_page(dashboard, page, shot, monkeypatch):
    from chat_server import make_report

    url, home = dashboard
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    rid = make_report(3, name="vote-qa")
    link = f"{url}/vote?report={rid}"

    _start(page, link, "Ann")
    # Only the ballot: no sidebar, no page menu.
    assert page.locator("[data-testid='stSidebar']").count() == 0
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    assert page.get_by_text("Workspace").count() == 0
    before = _texts(page)
    assert len(before) == 3 and not any("bot" in t for t in before)  # request + two unnamed answers
    page.reload()  # the voter is kept in the URL: the same item in the same order comes back
    page.get_by_text("Item 1 of 3").wait_for()
    assert page.get_by_label("Your name", exact=True).input_value() == "Ann"
    assert _texts(page) == before
    shot(page, "vote-page")
    _vote(page, "A is better", 1, 3, comment="shorter is better here")
    _vote(page, "B is better", 2, 3)
    _vote(page, "Tie", 3, 3)

    _start(page, link, "Bo")
    _vote(page, "B is better", 1, 3)

    env = dict(os.environ, TUNELAB_HOME=str(home), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "tunelab", "reports", "votes", rid, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["votes"] == 4 and doc["voters"] == ["Ann", "Bo"] and doc["damaged"] == 0
    c = doc["counts"]
    assert c["tie"] == 1 and c["win"] + c["loss"] == 3 and doc["pairs"][0]["n"] == 4
    assert doc["ci"]["tie"][0] < 0.25 < doc["ci"]["tie"][1]
    assert doc["comments"][0]["comment"] == "shorter is better here" and doc["comments"][0]["voter"] == "Ann"
    assert doc["judge_agreement"] == dict(doc["judge_agreement"], n=0, rate=None, kappa=None)
