"""Every `tunelab data` command through a real subprocess: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECORDS = [
    {"instruction": "Explain machine learning", "input": "", "output": "It finds patterns in data."},
    {"instruction": "什么是机器学习？", "input": "", "output": "机器学习是人工智能的一个分支。"},
    {"instruction": "Explain machine learning", "input": "", "output": "It finds patterns in data."},
    {"instruction": "Email me", "input": "", "output": "Write to bob@example.com or call 13812345678."},
    {"instruction": "Empty answer", "input": "", "output": ""},
    {"instruction": "Tell a joke", "input": "", "output": "Why did the chicken cross the road?"},
]
KEYS = {"id", "instruction", "input", "output", "system", "history"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    src = root / "mine.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    src.write_text("\n".join(lines[:3] + ["{broken json"] + lines[3:]) + "\n", encoding="utf-8")
    return root


def tl(home: Path, *args: str, ok: bool = True):
    """Run `tunelab data ARGS --json`; return (parsed stdout or None, completed process)."""
    env = dict(os.environ, TUNELAB_HOME=str(home / "ws"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "tunelab", "data", *args], capture_output=True, text=True,
                          env=env, cwd=home, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return None, proc


def test_import_list_show(home):
    out, proc = tl(home, "import", str(home / "mine.jsonl"), "--json")
    assert out["name"] == "mine" and out["version"] == 1 and out["imported"] == 6 and out["skipped"] == 1
    assert out["errors"][0]["line"] == 4
    assert len(proc.stdout.strip().splitlines()) == 1  # exactly one JSON document
    out, _ = tl(home, "list", "--json")
    assert out == {"datasets": [{"name": "mine", "version": 1, "records": 6}]}
    out, _ = tl(home, "show", "mine", "--offset", "1", "--limit", "2", "--json")
    assert out["total"] == 6 and len(out["records"]) == 2 and set(out["records"][0]) == KEYS
    assert out["records"][0]["instruction"] == "什么是机器学习？"
    out, _ = tl(home, "show", "mine", "--version", "1", "--json")
    assert len(out["records"]) == 6
    human = subprocess.run([sys.executable, "-m", "tunelab", "data", "list"], capture_output=True, text=True,
                           env=dict(os.environ, TUNELAB_HOME=str(home / "ws")))
    assert "name" in human.stdout.splitlines()[0] and "mine" in human.stdout


def test_search_and_sql(home):
    out, _ = tl(home, "search", "mine", "机器学习", "--json")
    assert out["records"][0]["instruction"] == "什么是机器学习？" and set(out["records"][0]) == KEYS
    out, _ = tl(home, "search", "mine", "chicken", "--field", "output", "--limit", "1", "--json")
    assert out["total"] == 1 and out["records"][0]["instruction"] == "Tell a joke"
    out, _ = tl(home, "sql", "SELECT count(*) AS n FROM mine", "--json")
    assert out == {"columns": ["n"], "rows": [[6]]}
    _, proc = tl(home, "sql", "DROP VIEW mine", "--json", ok=False)
    assert proc.stderr.startswith("error: ")
    _, proc = tl(home, "sql", "SELECT * FROM read_csv('/etc/passwd')", ok=False)
    assert "/etc/passwd" in proc.stderr


def test_stats_clean_undo_versions(home):
    out, _ = tl(home, "stats", "mine", "--model", "/no/such/model", "--json")
    assert out["records"] == 6 and out["duplicates"] == 1 and out["empty_output"] == 1
    assert set(out["tokens"]) >= {"p50", "p95", "max"} and set(out["truncated"]) == {"256", "512", "1024", "2048"}
    assert "fallback" in out["tokenizer"]
    out, _ = tl(home, "clean", "mine", "--dedup", "exact", "--drop-empty", "--redact-pii", "--strip", "--json")
    assert out.pop("near_duplicates") == []  # exact dedup: no near twins to show
    assert out == {"version": 2, "before": 6, "after": 4, "removed": {
        "redacted_email": 1, "redacted_phone": 1, "empty": 1, "duplicate_exact": 1}}
    shown, _ = tl(home, "search", "mine", "email", "--json")
    assert shown["records"][0]["output"] == "Write to [EMAIL] or call [PHONE]."
    out, _ = tl(home, "versions", "mine", "--json")
    assert out["head"] == 2 and [v["op"] for v in out["versions"]] == ["import", "clean"]
    out, _ = tl(home, "undo", "mine", "--json")
    assert out["version"] == 1 and out["records"] == 6
    _, proc = tl(home, "undo", "mine", ok=False)
    assert "nothing to undo" in proc.stderr


def test_split_export_delete(home):
    out, _ = tl(home, "split", "mine", "--test-size", "0.5", "--seed", "1", "--json")
    assert out == {"train": {"name": "mine-train", "records": 3, "version": 1},
                   "test": {"name": "mine-test", "records": 3, "version": 1}}
    out, _ = tl(home, "export", "mine-test", "test.json", "--format", "alpaca", "--json")
    assert out["records"] == 3 and len(json.loads(Path(out["path"]).read_text(encoding="utf-8"))) == 3
    out, _ = tl(home, "delete", "mine-train", "--json")
    assert out == {"name": "mine-train", "deleted": True}
    listed, _ = tl(home, "list", "--json")
    assert "mine-train" not in [d["name"] for d in listed["datasets"]]


@pytest.mark.parametrize("args", [
    ("show", "nosuch"),
    ("show", "../etc"),
    ("search", "/etc/passwd", "x"),
    ("stats", "..", "--model", "/x"),
    ("clean", "a/b", "--strip"),
    ("undo", "nosuch"),
    ("import", "/no/such/file.jsonl"),
    ("import", "README.md", "--name", "../escape"),
    ("import", "x.csv", "--map", "instruction"),
    ("split", "nosuch", "--test-size", "0.1"),
    ("export", "nosuch", "out.json"),
    ("sql", "SELECT 1; SELECT 2"),
])
def test_user_errors_are_one_line_and_non_zero(home, args):
    tl(home, *args, "--json", ok=False)
    assert not (home / "etc").exists() and not (home / "escape").exists()


def test_nothing_importable_exits_non_zero(home):
    bad = home / "bad.jsonl"
    bad.write_text("{not json\n[1, 2]\n", encoding="utf-8")
    env = dict(os.environ, TUNELAB_HOME=str(home / "ws"))
    proc = subprocess.run([sys.executable, "-m", "tunelab", "data", "import", str(bad), "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
