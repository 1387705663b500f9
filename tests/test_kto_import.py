"""KTO records in a plain import (issue 22, item 5): the file's kind is decided from all its records,
and every record whose label is not true/false is named with its line or index."""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import tunelab
from tunelab.data import store
from tunelab.data.importer import import_path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _rows(name: str) -> list[dict]:
    return store.read(name).to_pylist()


def _jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_plain_import_of_the_kto_sample_keeps_its_labels(workspace):
    proc = tunelab(workspace, "data", "import", str(SAMPLES / "kto_feedback.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["imported"], doc["skipped"]) == (10, 1)
    assert doc["errors"] == [{"line": 10, "error": "`label` must be true or false, not text"}]
    rows = _rows("kto_feedback")
    assert [r["kto_tag"] for r in rows] == [True, False] * 5
    bad = next(r for r in rows if r["output"] == "About 50 °C.")
    assert bad["kto_tag"] is False  # a "bad" answer is not an SFT target
    assert all(r["chosen"] is None and r["rejected"] is None for r in rows)


def test_the_first_record_does_not_decide_alone(workspace, tmp_path):
    turns = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    recs = [{"messages": turns},                            # 1: no label (first!)
            {"messages": turns, "label": True},             # 2
            {"messages": turns, "label": False},            # 3
            {"messages": turns, "label": "maybe"},          # 4: not a boolean
            {"messages": turns, "label": 1},                # 5: a number is not a boolean in JSON
            {"messages": turns, "label": True}]             # 6
    result = import_path(_jsonl(tmp_path / "late.jsonl", recs))
    assert (result["imported"], result["skipped"]) == (3, 3)
    assert [(e["line"], e["error"]) for e in result["errors"]] == [
        (1, "missing `label`"), (4, "`label` must be true or false, not text"),
        (5, "`label` must be true or false, not a number")]
    assert [r["kto_tag"] for r in _rows("late")] == [True, False, True]


def test_pairs_after_a_plain_first_record_are_pairs(workspace, tmp_path):
    recs = [{"instruction": "Say hi.", "output": "Hi."},
            {"instruction": "2+2?", "chosen": "4", "rejected": "5"},
            {"instruction": "3+3?", "chosen": "6", "rejected": "7"}]
    result = import_path(_jsonl(tmp_path / "pairs.jsonl", recs))
    assert result["imported"] == 2 and [e["line"] for e in result["errors"]] == [1]
    assert [(r["chosen"], r["rejected"]) for r in _rows("pairs")] == [("4", "5"), ("6", "7")]


def test_a_class_label_column_is_not_a_kto_mark(workspace, tmp_path):
    recs = [{"instruction": f"Question {i}", "output": f"Answer {i}", "label": "math"} for i in range(3)]
    result = import_path(_jsonl(tmp_path / "classes.jsonl", recs))
    assert (result["imported"], result["skipped"]) == (3, 0)
    assert all(r["kto_tag"] is None for r in _rows("classes"))


def test_csv_label_words_are_kto_marks(workspace, tmp_path):
    path = tmp_path / "feedback.csv"
    path.write_text("instruction,output,label\nHi,Hello,true\nHi,Go away,false\nHi,Hey,perhaps\n", encoding="utf-8")
    result = import_path(str(path))
    assert result["imported"] == 2 and [(e["line"], e["error"]) for e in result["errors"]] == [
        (4, "`label` must be true or false, not text")]
    assert [(r["output"], r["kto_tag"]) for r in _rows("feedback")] == [("Hello", True), ("Go away", False)]
