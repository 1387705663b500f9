"""Blind votes from stakeholders on a report's answers, the judge checked against them, and votes as DPO pairs.

A report with two or more models has one ballot item per (example, pair of models) both answered:
item "INDEX:K", K numbering the report's model pairs (itertools.combinations order). A voter sees the
request and the two answers, unnamed, in an order drawn from a hash of (report, voter, item): a
refresh shows the same order, and different voters see different ones. A vote is A (the left
answer), B (the right one) or tie, with an optional comment, appended to the report folder's
votes.jsonl (one line each; a voter's later vote on an item replaces the earlier one when read; a
damaged line is skipped and counted, never fatal):
    {"item", "index", "pair": [a, b], "shown": [left, right], "choice": "A"|"B"|"tie",
     "winner": a|b|"tie", "voter", "comment", "time"}
Results per pair count votes (win: b preferred, as in judge.json), with Wilson intervals. Where
the judge judged the same pair, the reviewers' majority per item is compared with the judge's
both-orders verdict: agreement rate and Cohen's kappa, with ties and without them.
When the dashboard is reachable from other machines the voting page asks for the report's access
code (`code()`, kept in vote_code.txt and put in the link by `link()`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

from tunelab import jobs
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate, judge, rates
from tunelab.jsonio import locked, read_json

FILE = "votes.jsonl"
CODE_FILE = "vote_code.txt"
CHOICES = ("A", "B", "tie")
MAX_VOTER, MAX_COMMENT = 80, 2000


def _dir(report_id: str) -> Path:
    d = jobs.job_dir(evaluate.KIND, report_id)
    if not (d / "config.json").exists():
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    return d


def voter_key(voter: str) -> str:
    """A voter's name as one identity: spaces collapsed, case folded ("Ann  Lee" is "ann lee")."""
    return " ".join((voter or "").split()).casefold()


def _hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:8], "big")


def items(doc: dict) -> list[dict]:
    """Every ballot item of a report document: [{"item", "index", "pair": [a, b]}]."""
    pairs = list(itertools.combinations(doc["config"]["models"], 2))
    return [{"item": f"{ex['index']}:{k}", "index": ex["index"], "pair": [a, b]}
            for ex in doc["examples"] for k, (a, b) in enumerate(pairs)
            if a in ex["outputs"] and b in ex["outputs"]]


def shown(report_id: str, voter: str, item: dict) -> list[str]:
    """The pair's two models in the order this voter sees them: [left (A), right (B)]."""
    a, b = item["pair"]
    return [a, b] if _hash(report_id, voter_key(voter), item["item"], "side") % 2 == 0 else [b, a]


def read(report_id: str) -> tuple[list[dict], int]:
    """(the votes in force: each voter's latest per item, oldest first; damaged lines skipped)."""
    latest: dict[tuple[str, str], dict] = {}
    damaged = 0
    try:
        lines = (_dir(report_id) / FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        if not line.strip():
            continue
        try:
            v = json.loads(line)
            key = (voter_key(v["voter"]), v["item"])
            if v["winner"] not in (*v["pair"], "tie"):
                raise ValueError(v["winner"])
        except (ValueError, KeyError, TypeError):
            damaged += 1
            continue
        latest.pop(key, None)
        latest[key] = v
    return list(latest.values()), damaged


def ballot(report_id: str, voter: str) -> dict:
    """What a voter sees next: the first item they have not voted on, in their own seeded order.

    Returns:
        {"done", "total", "item": None when every item has their vote, else {"item", "prompt",
         "answers": [left text, right text]}} — no model names: the vote is blind.
    """
    doc = evaluate.load_report(report_id)
    key = voter_key(voter)
    if not key:
        raise TuneLabError("give your name to vote")
    todo = items(doc)
    voted = {v["item"] for v in read(report_id)[0] if voter_key(v["voter"]) == key}
    left = sorted((it for it in todo if it["item"] not in voted), key=lambda it: _hash(report_id, key, it["item"]))
    out = {"done": len(todo) - len(left), "total": len(todo), "item": None}
    if left:
        it = left[0]
        ex = next(e for e in doc["examples"] if e["index"] == it["index"])
        out["item"] = {"item": it["item"], "prompt": ex["prompt"],
                       "answers": [ex["outputs"][m]["output"] for m in shown(report_id, voter, it)]}
    return out


def cast(report_id: str, voter: str, item_id: str, choice: str, comment: str = "") -> dict:
    """Record one vote (append-only); returns the stored line.

    Args:
        report_id: the report voted on.
        voter: the voter's name (as they typed it; compared case- and space-insensitively).
        item_id: the ballot item ("INDEX:K").
        choice: "A" (the left answer), "B" (the right one) or "tie".
        comment: optional free text.
    """
    name = " ".join((voter or "").split())
    if not name:
        raise TuneLabError("give your name to vote")
    if len(name) > MAX_VOTER or len(comment or "") > MAX_COMMENT:
        raise TuneLabError(f"a voter name is at most {MAX_VOTER} characters and a comment at most {MAX_COMMENT}")
    if choice not in CHOICES:
        raise TuneLabError(f"a vote is A, B or tie, not {choice!r}")
    doc = evaluate.load_report(report_id)
    it = next((i for i in items(doc) if i["item"] == item_id), None)
    if it is None:
        raise TuneLabError(f"report {report_id} has no ballot item {item_id!r}")
    order = shown(report_id, name, it)
    vote = {"item": item_id, "index": it["index"], "pair": it["pair"], "shown": order, "choice": choice,
            "winner": "tie" if choice == "tie" else order[0] if choice == "A" else order[1],
            "voter": name, "comment": (comment or "").strip(), "time": time.time()}
    path = _dir(report_id) / FILE
    with locked(path.with_name(FILE + ".lock")):
        # A line left without its newline by a crash must not swallow this vote: start a fresh line.
        with open(path, "ab+") as fh:
            fh.seek(0, 2)
            if fh.tell():
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write((json.dumps(vote, ensure_ascii=False) + "\n").encode("utf-8"))
    return vote


def _majority(votes: list[dict]) -> dict[tuple[int, tuple[str, str]], str]:
    """The reviewers' verdict per (index, pair): the most voted outcome; "tie" when the top is shared."""
    by: dict[tuple[int, tuple[str, str]], Counter] = {}
    for v in votes:
        by.setdefault((v["index"], tuple(v["pair"])), Counter())[v["winner"]] += 1
    out = {}
    for key, c in by.items():
        top = c.most_common()
        out[key] = "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]
    return out


def _pair_result(a: str, b: str, votes: list[dict]) -> dict:
    c = Counter({b: 0, a: 0, "tie": 0})
    c.update(v["winner"] for v in votes)
    n = sum(c.values())
    counts = {"win": c[b], "tie": c["tie"], "loss": c[a]}
    decided = c[a] + c[b]
    return {"a": a, "b": b, "n": n, "counts": counts, "ci": {k: rates.wilson(counts[k], n) for k in counts},
            "preferred": dict(rates.rate(c[b], decided), p=rates.binom_p(c[b], decided)),
            "items": len({v["item"] for v in votes})}


def agreement(report_id: str, votes: list[dict] | None = None) -> dict:
    """How often the judge agrees with the reviewers on the pairs both judged (see the module doc).

    Returns:
        {"rate", "kappa", "n", "agree", "ci", "kappa_ci", "without_ties": {the same keys}, "sentence"}
        (rate and kappa None when no voted pair was judged).
    """
    verdicts = judge.load(report_id)
    votes = read(report_id)[0] if votes is None else votes
    people = _majority(votes)
    pairs = []
    if verdicts and verdicts.get("status") == "completed":
        pair = tuple(verdicts["pair"])
        judged = {r["index"]: r["winner"] for r in verdicts.get("results", []) if r.get("winner") is not None}
        for (index, p), label in sorted(people.items()):
            if set(p) == set(pair) and index in judged:
                pairs.append((label, judged[index]))
    out = _agree(pairs, list(verdicts["pair"]) + ["tie"] if pairs else [])
    decisive = [(h, j) for h, j in pairs if h != "tie" and j != "tie"]
    out["without_ties"] = _agree(decisive, list(verdicts["pair"]) if decisive else [])
    out["sentence"] = (f"the judge agrees with your reviewers on {out['agree']} of {out['n']} pairs, "
                       f"{rates.percent(out)}" if out["n"] else
                       "no pair your reviewers voted on has a judge verdict yet")
    return out


def _agree(pairs: list[tuple[str, str]], labels: list[str]) -> dict:
    agree = sum(1 for h, j in pairs if h == j)
    r = rates.rate(agree, len(pairs))
    k = rates.kappa([h for h, _ in pairs], [j for _, j in pairs], labels)
    return {"rate": r["rate"], "kappa": k["kappa"], "n": len(pairs), "agree": agree, "ci": r["ci"],
            "kappa_ci": k["ci"]}


def summary(report_id: str) -> dict:
    """Vote results per model pair with intervals, and the judge's agreement with the reviewers.

    Returns:
        {"report", "votes", "voters", "damaged", "items", "pairs": [{"a", "b", "n", "counts": {"win",
         "tie", "loss"}, "ci", "preferred", "items"}], "counts", "ci" (the main pair's: the judge's pair,
         else the report's first two models), "judge_agreement"}
    """
    doc = evaluate.load_report(report_id)
    votes, damaged = read(report_id)
    models = doc["config"]["models"]
    pairs = [_pair_result(a, b, [v for v in votes if v["pair"] == [a, b]])
             for a, b in itertools.combinations(models, 2)]
    verdicts = judge.load(report_id) or {}
    main = verdicts.get("pair") or models[:2]
    first = next((p for p in pairs if {p["a"], p["b"]} == set(main)), pairs[0] if pairs else None)
    return {"report": report_id, "votes": len(votes), "voters": _voters(votes),
            "damaged": damaged, "items": len(items(doc)), "pairs": pairs,
            "main": [first["a"], first["b"]] if first else None,
            "counts": first["counts"] if first else None, "ci": first["ci"] if first else None,
            "comments": [{"item": v["item"], "voter": v["voter"], "winner": v["winner"], "comment": v["comment"]}
                         for v in votes if v.get("comment")],
            "judge_agreement": agreement(report_id, votes)}


def _voters(votes: list[dict]) -> list[str]:
    """Each voter once, as they last wrote their name."""
    names = {voter_key(v["voter"]): v["voter"] for v in votes}
    return [names[k] for k in sorted(names)]


def to_preferences(report_id: str, into: str) -> dict:
    """The items reviewers preferred one answer on, as preference pairs: a new version of dataset `into`.

    chosen is the majority's answer, rejected the other; items the reviewers called a tie are left out.
    The version's manifest names the report (params and lineage).

    Returns:
        {"name", "version", "pairs", "report", "votes"}
    """
    from tunelab import workspace

    workspace.validate_name(into, "dataset name")
    doc = evaluate.load_report(report_id)
    votes, _ = read(report_id)
    examples = {ex["index"]: ex for ex in doc["examples"]}
    try:
        source = {r["id"]: r for r in store.read(doc["data"]["name"], doc["data"]["version"]).to_pylist()
                  if r.get("id")}
    except TuneLabError:
        source = {}
    records = []
    for (index, (a, b)), winner in sorted(_majority(votes).items()):
        if winner == "tie":
            continue
        ex = examples[index]
        loser = b if winner == a else a
        rec = source.get(ex["id"]) or {"instruction": ex["prompt"], "input": "", "system": "", "history": []}
        chosen, rejected = ex["outputs"][winner]["output"], ex["outputs"][loser]["output"]
        kept = {f: rec.get(f) for f in schema.FIELDS if f not in ("id", "output", "chosen", "rejected", "kto_tag")}
        records.append({**kept, "id": f"{ex['id']}-vote-{index}-{a}-{b}"[:200], "output": chosen,
                        "chosen": chosen, "rejected": rejected})
    if not records:
        raise TuneLabError(f"report {report_id} has no voted pair with a preferred answer yet "
                           "(ties are not preference pairs)")
    params = {"report": report_id, "votes": len(votes), "pairs": len(records),
              "voters": _voters(votes)}
    entry = store.append_records(into, records, "votes", params,
                                 lineage={"report": report_id, "source": doc["data"]["name"],
                                          "version": doc["data"]["version"]})
    return {"name": into, "version": entry["version"], "pairs": len(records), "report": report_id,
            "votes": len(votes)}


def code(report_id: str, create: bool = True) -> str | None:
    """The report's voting access code (made on first use when create is True)."""
    path = _dir(report_id) / CODE_FILE
    with locked(path.with_name(CODE_FILE + ".lock")):
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        if not create:
            return None
        value = secrets.token_urlsafe(9)
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
        return value


def check_code(report_id: str, given: str | None) -> bool:
    """True when given is the report's access code (compared in constant time)."""
    expected = code(report_id, create=False)
    return bool(expected and given) and hmac.compare_digest(expected.encode(), (given or "").strip().encode())


def link(report_id: str, base_url: str = "http://127.0.0.1:8501") -> dict:
    """The voting page's link for a report, with its access code: {"report", "url", "code"}."""
    if read_json(_dir(report_id) / "config.json") is None:
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    value = code(report_id)
    return {"report": report_id, "code": value,
            "url": f"{base_url.rstrip('/')}/vote?{urlencode({'report': report_id, 'code': value})}"}
