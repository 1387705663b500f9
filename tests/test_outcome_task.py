"""Outcome: the DEFAULT `tunelab train` teaches SmolLM2-135M one new task, and the run's own
before/after report says so with a paired test.

The task: label a product review with a format the base model cannot guess ("label: pos" /
"label: neg"; the instruction never names the labels). The training reviews and the test reviews
share no sentence: the test subjects and phrases are held out, so the tuned model must carry the
sentiment it already knows into the new format, not recall answers. The base model never writes the
format (exact match 0); the tuned one must on at least 80 % of the test rows, and the report made
after the run (evals/auto.py, on the `-test` twin) must call it "better" on exact match.
"""

from __future__ import annotations

import json
import random
import sys
import time

import pytest

from tunelab.cli import main as cli
from tunelab.evals import auto
from tunelab.train import runs

INSTRUCTION = "Classify this review."
SUBJECTS = ["The pizza", "The hotel room", "This phone", "The service", "The movie", "This jacket",
            "The concert", "The laptop", "Our guide", "The coffee", "This novel", "The delivery"]
HELD_OUT_SUBJECTS = ["The museum", "This blender", "The haircut", "The train ride", "This game", "The sofa"]
GOOD = ["was wonderful", "exceeded every expectation", "made my whole week", "was worth every penny",
        "is the best I have had", "was a real delight", "works perfectly", "left me very happy"]
BAD = ["was awful", "broke after one day", "was a total waste of money", "ruined my evening",
       "is the worst I have had", "was a huge disappointment", "stopped working at once", "left me angry"]
HELD_OUT_GOOD = ["was fantastic", "I loved every minute", "was excellent value", "made me smile"]
HELD_OUT_BAD = ["was terrible", "I hated every minute", "was a rip-off", "made me furious"]


def _rows(subjects, good, bad, n, seed, prefix) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        positive = len(rows) % 2 == 0  # balanced labels
        review = f"{rng.choice(subjects)} {rng.choice(good if positive else bad)}."
        if review in seen:
            continue
        seen.add(review)
        rows.append({"id": f"{prefix}{len(rows)}", "instruction": INSTRUCTION, "input": review,
                     "output": "label: pos" if positive else "label: neg"})
    return rows


@pytest.mark.slow
@pytest.mark.outcome  # ~3-6 min on 2 cores: run by .ci/run after the fast suite
def test_default_train_learns_a_new_labelling_task(workspace, tmp_path, capsys):
    train = _rows(SUBJECTS, GOOD, BAD, 64, seed=1, prefix="t")
    test = _rows(HELD_OUT_SUBJECTS, HELD_OUT_GOOD, HELD_OUT_BAD, 24, seed=2, prefix="h")
    assert not {r["input"] for r in train} & {r["input"] for r in test}
    for name, rows in (("reviews", train), ("reviews-test", test)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        assert cli(["data", "import", str(path), "--name", name, "--json"]) == 0
    capsys.readouterr()

    started = time.time()
    rc = cli(["train", "--model", "smollm2-135m-instruct", "--data", "reviews", "--json"])  # no tuning flags
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    run_id = json.loads(out)["run"]
    assert runs.status(run_id)["status"] == "completed"
    end = time.time() + 900
    while time.time() < end and (auto.summary(run_id) or {}).get("status") not in ("completed", "failed", "skipped"):
        time.sleep(2)
    s = auto.summary(run_id)
    minutes = (time.time() - started) / 60
    st = runs.status(run_id)
    print(f"\nreviews: {st['step']}/{st['max_steps']} steps, {minutes:.1f} min with the report; "
          f"base EM {s['base']['exact_match']}, tuned EM {s['tuned']['exact_match']}; {s['sentence']}",
          file=sys.stderr)
    assert s["status"] == "completed", s
    assert s["data"]["name"] == "reviews-test" and s["tuned"]["examples"] == len(test)
    assert s["base"]["exact_match"] <= 0.05, s["base"]
    assert s["tuned"]["exact_match"] >= 0.8, s["tuned"]
    em = next(p for p in s["pairs"] if p["metric"] == "exact_match")  # the report's own paired test (McNemar)
    tuned_only = em["a_only"] if em["a"] == run_id else em["b_only"]
    assert em["p"] < 0.01 and tuned_only >= 0.75 * len(test), em
    assert s["verdict_label"] == "better", s["verdict"]
