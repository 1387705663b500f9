"""`tunelab compare/eval --json` carry intervals, paired tests, one verdict and provenance (issue 23)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.data import schema, store
from tunelab.evals import metrics

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Water boils at one hundred degrees.",
    "The moon goes around the Earth.",
    "Bees make honey from flowers.",
    "A triangle has three sides.",
    "The sun rises in the east.",
    "Cats like to sleep in the sun.",
    "Trees need water and light to grow.",
    "Ice is frozen water.",
    "A week has seven days.",
    "Fish live in water.",
]
KEYS = {"a", "b", "metric", "diff", "ci", "p", "p_adjusted", "test", "mde"}


@pytest.fixture
def echo_data(workspace):
    recs = [{"id": f"s{i}", "instruction": f"Repeat this sentence exactly: {s}", "output": s}
            for i, s in enumerate(SENTENCES)]
    store.commit("echo", schema.to_table(recs), "import")
    return workspace


def tunelab(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m tunelab ARGS` in home (generation on a busy 2-core machine can take minutes)."""
    env = dict(os.environ, TUNELAB_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True, env=env,
                          cwd=home.parent, timeout=900)


def _compare(home: Path, models: list[str], limit: int, tokens: int = 8) -> dict:
    r = tunelab(home, "compare", "--models", ",".join(models), "--data", "echo", "--limit", str(limit),
                "--max-new-tokens", str(tokens), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_identical_models_p_above_half_with_intervals_and_provenance(echo_data, tiny_model, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(tiny_model, twin)  # the same weights under another name: the same greedy answers
    doc = _compare(echo_data, [tiny_model, str(twin)], limit=6)
    for m in doc["models"]:
        assert set(m["ci"]) == {"rouge_l", "bleu", "exact_match"}
        lo, hi = m["ci"]["exact_match"]
        assert 0 <= lo <= m["exact_match"] <= hi <= 1
        assert m["warmup_s"] > 0  # speed is timed after an untimed warm-up generation
    assert len(doc["pairs"]) == 3 and all(KEYS <= set(p) for p in doc["pairs"])
    for p in doc["pairs"]:
        assert (p["a"], p["b"]) == (str(twin), tiny_model)
        assert p["diff"] == 0 and p["p"] > 0.5 and p["p_adjusted"] > 0.5
    assert {p["test"] for p in doc["pairs"]} == {"paired permutation", "paired bootstrap + permutation", "exact McNemar"}
    assert doc["verdict_detail"]["label"] != "better" and isinstance(doc["verdict"], str) and doc["verdict"]
    prov = doc["provenance"]
    assert prov["data"] == {**prov["data"], "name": "echo", "version": 1, "records": len(SENTENCES)}
    assert prov["models"][0]["sha256"] == prov["models"][1]["sha256"]  # same weights, same hash
    assert {"tunelab", "torch", "transformers", "peft", "scipy", "statsmodels"} <= set(prov["versions"])
    assert prov["versions"]["scipy"] and prov["machine"]["cpu"] and prov["seed"]["bootstrap"] == 0
    # eval carries the same keys for its one model
    r = tunelab(echo_data, "eval", tiny_model, "--data", "echo", "--limit", "4", "--max-new-tokens", "4", "--json")
    entry = json.loads(r.stdout)
    assert set(entry["ci"]) == {"rouge_l", "bleu", "exact_match"} and entry["pairs"] == []
    assert entry["verdict"] and entry["provenance"]["models"][0]["name"] == tiny_model
    assert isinstance(entry["slices"], list)


@pytest.mark.slow
def test_planted_better_model_p_below_001(echo_data, tiny_model):
    """SmolLM2 repeats the sentences; a random tiny model writes noise: a real, planted difference."""
    doc = _compare(echo_data, [tiny_model, "smollm2-135m-instruct"], limit=len(SENTENCES), tokens=16)
    pair = next(p for p in doc["pairs"] if p["metric"] == "rouge_l")
    assert pair["a"] == "smollm2-135m-instruct" and pair["diff"] > 0.3
    assert pair["p"] < 0.01 and pair["p_adjusted"] < 0.01 and pair["ci"][0] > 0
    # the numbers are those of the answers: recompute the mean difference from the examples
    d = [ex["outputs"]["smollm2-135m-instruct"]["rouge_l"] - ex["outputs"][tiny_model]["rouge_l"] for ex in doc["examples"]]
    assert pair["diff"] == pytest.approx(sum(d) / len(d), abs=1e-6)
    assert doc["examples"][0]["outputs"][tiny_model]["rouge_l"] == pytest.approx(
        metrics.rouge_l(doc["examples"][0]["outputs"][tiny_model]["output"], SENTENCES[0]))
    assert doc["verdict_detail"]["label"] == "better"
    assert doc["verdict"].startswith("smollm2-135m-instruct beats ")
    assert f"{len(SENTENCES)} examples" in doc["verdict"]
