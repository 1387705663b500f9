"""Batched evaluation, report folders and the eval/compare CLI on a tiny random Llama model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import jobs
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import cost, evaluate, report_doc
from tunelab.evals.evaluate import EvalConfig

ROOT = Path(__file__).resolve().parents[1]

RECORDS = [
    {"id": "a", "instruction": "Name a colour.", "output": "Blue."},
    {"id": "b", "instruction": "Translate to French", "input": "good morning, my friend", "output": "bonjour mon ami"},
    {"id": "c", "instruction": "用一句话介绍北京。", "output": "北京是中国的首都。"},
    {"id": "d", "instruction": "What is two plus two? Answer with a number only.", "output": "4"},
    {"id": "e", "system": "You are terse.", "instruction": "Say hi", "output": "hi"},
]


def _tiny_model(folder: Path, seed: int) -> str:
    """A 2-layer random Llama with SmolLM2's tokenizer: real generate(), milliseconds per token."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunelab.models.loading import hf_dir

    tok = AutoTokenizer.from_pretrained(str(hf_dir("smollm2-135m-instruct")))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return [_tiny_model(base / f"tiny{i}", seed=i) for i in (1, 2)]


@pytest.fixture
def dataset(workspace):
    store.commit("qa-test", schema.to_table(RECORDS), "import")
    return "qa-test"


def _run(models, data, **kw) -> dict:
    rid = evaluate.create_report(EvalConfig(models=models, data=data, max_new_tokens=kw.pop("max_new_tokens", 8), **kw))
    return evaluate.run_report(rid)


def test_batched_and_single_agree_under_greedy(tiny_models, dataset):
    single = _run(tiny_models[:1], dataset, batch_size=1)
    batched = _run(tiny_models[:1], dataset, batch_size=4)  # left padding: prompts differ in length
    outs = [[o["output"] for ex in doc["examples"] for o in ex["outputs"].values()] for doc in (single, batched)]
    assert len(outs[0]) == len(RECORDS)
    assert outs[0] == outs[1]
    assert any(outs[0])  # the model did write something


def test_report_folder_reopens_identically(tiny_models, dataset):
    doc = _run(tiny_models, dataset, limit=3, batch_size=2)
    assert doc["status"] == "completed" and doc["progress"] == {"done": 6, "total": 6}
    assert evaluate.load_report(doc["report"]) == doc
    d = jobs.job_dir("reports", doc["report"])
    assert json.loads((d / "results.json").read_text()) == json.loads(json.dumps(doc))
    conf = json.loads((d / "config.json").read_text())
    assert conf["generation"]["temperature"] == 0.0 and conf["generation"]["max_new_tokens"] == 8
    assert conf["version"] == 1 and conf["data"] == dataset
    assert len((d / "examples.jsonl").read_text().splitlines()) == 6
    # per-example scores are the metrics of the stored answer against the stored reference
    ex = doc["examples"][1]
    for out in ex["outputs"].values():
        assert out["rouge_l"] == pytest.approx(evaluate.metrics.rouge_l(out["output"], ex["reference"]))
    m = doc["models"][0]
    assert m["examples"] == 3 and m["tokens_per_s"] > 0 and m["latency_s"] > 0 and m["peak_rss_mb"] > 100
    # the dataset moving on does not change the report
    store.commit(dataset, schema.to_table(RECORDS[:1]), "edit")
    assert evaluate.load_report(doc["report"])["examples"] == doc["examples"]
    assert [r["id"] for r in evaluate.list_reports()] == [doc["report"]]


def test_export_csv_and_json(tiny_models, dataset):
    doc = _run(tiny_models, dataset, limit=2)
    csv_path = report_doc.export_report(doc["report"], "r.csv")
    import csv

    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert len(rows) == 4 and rows[2]["prompt"] == "Translate to French\n\ngood morning, my friend"
    assert float(rows[2]["rouge_l"]) == doc["examples"][1]["outputs"][rows[2]["model"]]["rouge_l"]
    assert json.loads(report_doc.export_report(doc["report"], "r.json").read_text())["report"] == doc["report"]


def test_user_errors_are_one_sentence(tiny_models, dataset):
    with pytest.raises(TuneLabError, match="2 to 4 models"):
        evaluate.check_model_count(tiny_models[:1])
    with pytest.raises(TuneLabError, match="listed twice"):
        evaluate.create_report(EvalConfig(models=[tiny_models[0]] * 2, data=dataset))
    with pytest.raises(TuneLabError, match="unknown dataset"):
        evaluate.create_report(EvalConfig(models=tiny_models, data="nope"))
    with pytest.raises(TuneLabError, match="unknown model"):
        evaluate.create_report(EvalConfig(models=["no-such-model"], data=dataset))
    assert evaluate.list_reports() == []  # nothing half-created


def test_cost_estimates(tiny_models):
    est = cost.estimate(tiny_models[0])
    assert est["params"] == cost.safetensors_params(Path(tiny_models[0]))
    assert est["run_gb"]["fp32"] > est["run_gb"]["bf16"] > est["run_gb"]["int4"]
    assert est["train_gb"]["full"] > est["train_gb"]["lora"] > est["train_gb"]["qlora"]
    # the config formula reproduces the exact count for a Llama layout
    from tunelab.jsonio import read_json

    geo = cost.Geometry.from_config(read_json(Path(tiny_models[0]) / "config.json"))
    assert geo.params() == est["params"]
    row = cost.table_row(cost.estimate("openai:http://127.0.0.1:9/v1"))
    assert row["params"] == "n/a" and row["tune lora"] == "n/a"


def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_compare_cli_shape(tiny_models, dataset):
    r = _cli("compare", "--models", ",".join(tiny_models), "--data", dataset, "--limit", "3", "--max-new-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [m["name"] for m in doc["models"]] == tiny_models
    for m in doc["models"]:
        assert {"name", "rouge_l", "bleu", "exact_match", "tokens_per_s", "latency_s"} <= set(m)
    assert len(doc["examples"]) == 3 and set(doc["examples"][0]["outputs"]) == set(tiny_models)
    assert doc["report"]
    r = _cli("eval", tiny_models[0], "--data", dataset, "--limit", "2", "--max-new-tokens", "4", "--json")
    entry = json.loads(r.stdout)
    assert entry["name"] == tiny_models[0] and entry["examples"] == 2 and entry["report"].startswith("eval-")
    r = _cli("compare", "--models", tiny_models[0], "--data", dataset, "--json")
    assert r.returncode == 1 and r.stderr.strip() == "error: compare takes 2 to 4 models, got 1"
    r = _cli("reports", "list", "--json")
    assert len(json.loads(r.stdout)["reports"]) == 2


def test_detach_runs_in_background_and_stop(tiny_models, dataset):
    import time

    r = _cli("compare", "--models", ",".join(tiny_models), "--data", dataset, "--max-new-tokens", "4", "--detach", "--json")
    rid = json.loads(r.stdout)["report"]
    deadline = time.time() + 120
    while evaluate.load_report(rid)["status"] in jobs.ACTIVE and time.time() < deadline:
        time.sleep(0.5)
    doc = evaluate.load_report(rid)
    assert doc["status"] == "completed", (jobs.job_dir("reports", rid) / "job.log").read_text()
    assert all(len(ex["outputs"]) == 2 for ex in doc["examples"])
    r = _cli("reports", "stop", rid)
    assert r.returncode == 1 and "not running" in r.stderr


@pytest.mark.slow
def test_compare_shipped_models_cli(dataset):
    r = _cli("compare", "--models", "smollm2-135m-instruct,gemma3-270m", "--data", dataset, "--limit", "3",
             "--max-new-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    a, b = doc["models"]
    assert a["tokens_per_s"] > 0 and b["tokens_per_s"] > 0
    assert [ex["outputs"][a["name"]]["output"] for ex in doc["examples"]] != [ex["outputs"][b["name"]]["output"] for ex in doc["examples"]]


def test_stop_keeps_what_was_finished(tiny_models, workspace):
    import time

    store.commit("long", schema.to_table([dict(r, id=f"{r['id']}{i}") for i in range(40) for r in RECORDS]), "import")
    r = _cli("compare", "--models", ",".join(tiny_models), "--data", "long", "--max-new-tokens", "32",
             "--batch-size", "1", "--detach", "--json")
    rid = json.loads(r.stdout)["report"]
    deadline = time.time() + 120
    while evaluate.load_report(rid)["progress"]["done"] < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert _cli("reports", "stop", rid).returncode == 0
    while evaluate.load_report(rid)["status"] in jobs.ACTIVE and time.time() < deadline:
        time.sleep(0.2)
    doc = evaluate.load_report(rid)
    assert doc["status"] == "stopped"
    assert 2 <= doc["models"][0]["examples"] < len(RECORDS) * 40


def test_best_per_column_picks_by_direction_and_skips_ties():
    models = [{"name": "a", "rouge_l": 0.2, "exact_match": 0.0, "latency_s": 3.0, "bleu": None},
              {"name": "b", "rouge_l": 0.5, "exact_match": 0.0, "latency_s": 9.0, "bleu": 0.1}]
    best = evaluate.best_per_column(models)
    assert best["rouge_l"] == "b" and best["latency_s"] == "a"
    assert "exact_match" not in best  # 0.0 for both: no winner to paint green
    assert "bleu" not in best  # only one model has a value
