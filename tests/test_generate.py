"""Generation batches end to end: lineage, the CLI, background jobs, a real OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab import jobs
from tunelab.cli import main
from tunelab.data import store
from tunelab.synth import generate

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "samples" / "seeds.jsonl"
TUNELAB = [sys.executable, "-m", "tunelab"]


def _batch_on_disk(seeds: str, seed_version: int | None) -> str:
    cfg = generate.GenerateConfig(seeds=seeds, n=3, backend="openai:http://127.0.0.1:9/v1#tiny", prompt_version=1)
    batch = generate.create(cfg)
    items = [{"id": i, "strategy": "new", "instruction": f"Question number {i} about cooking?", "input": "",
              "output": f"answer {i}", "status": s, "rule": "", "reason": "", "source": ""}
             for i, s in enumerate(("accepted", "rejected", "accepted"))]
    generate.save_items(batch, items)
    jobs.write_status(generate.batch_dir(batch), status="completed", seed_dataset=seeds, seed_version=seed_version,
                      model="tiny")
    return batch


def test_accept_records_lineage_and_only_once(workspace):
    store.append_records("seedset", [{"instruction": "Give three tips for staying healthy.", "output": "x"}], op="import")
    batch = _batch_on_disk("seedset", store.resolve_version("seedset"))
    out = generate.accept(batch, "grown")
    assert out == {"name": "grown", "version": 1, "added": 2}
    entry = store.manifest("grown")["versions"][-1]
    assert entry["op"] == "generate"
    assert entry["lineage"] == {"template": "default-en", "prompt_version": 1,
                                "backend": "openai:http://127.0.0.1:9/v1#tiny", "model": "tiny",
                                "seed_dataset": "seedset", "seed_version": 1, "batch": batch}
    assert [r["output"] for r in store.read("grown").to_pylist()] == ["answer 0", "answer 2"]
    with pytest.raises(Exception, match="no accepted items left"):
        generate.accept(batch, "grown")  # already added: a second click adds nothing


def test_seeds_from_self_instruct_file_alpaca_file_and_dataset(workspace, tmp_path):
    from tunelab.synth import seeds

    si = seeds.load(str(SEEDS))
    assert len(si.records) >= 20 and si.version is None
    assert {"instruction", "input", "output", "is_classification"} <= set(si.records[0])
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "说一句问候语。"}, {"question": "Name a colour.", "answer": "Red"},
                                  {"output": "no instruction"}], ensure_ascii=False), encoding="utf-8")
    got = seeds.load(str(alpaca))
    assert [r["instruction"] for r in got.records] == ["说一句问候语。", "Name a colour."]
    assert got.errors == [{"line": 2, "error": "missing `instruction`"}]
    store.append_records("mine", [{"instruction": "Q?", "output": "A"}], op="import")
    assert seeds.load("mine").version == 1


def test_cli_user_errors_are_one_line(workspace, capsys):
    assert main(["generate", "--seeds", "nope.jsonl", "--n", "2", "--into", "x", "--json"]) == 1
    assert capsys.readouterr().err.strip() == "error: no seed dataset or file 'nope.jsonl' (give a dataset name or a path)"
    assert main(["generate", "--seeds", str(SEEDS), "--n", "2", "--json"]) == 1
    assert "--into" in capsys.readouterr().err
    assert main(["generate", "--seeds", str(SEEDS), "--n", "2", "--into", "a/b"]) == 1
    assert "invalid dataset name" in capsys.readouterr().err


def test_detached_batch_reports_failure_in_its_folder(workspace, capsys):
    """--detach runs in the background; an unreachable endpoint ends as `failed` with the reason."""
    rc = main(["generate", "--seeds", str(SEEDS), "--n", "2", "--into", "x", "--backend",
               "openai:http://127.0.0.1:9/v1#m", "--detach", "--json"])
    assert rc == 0
    batch = json.loads(capsys.readouterr().out)["batch"]
    d = generate.batch_dir(batch)
    deadline = time.time() + 120
    while (jobs.read_status(d) or {}).get("status") in jobs.ACTIVE and time.time() < deadline:
        time.sleep(0.5)
    st = jobs.read_status(d)
    assert st["status"] == "failed", (d / "job.log").read_text()
    assert "cannot reach http://127.0.0.1:9/v1" in st["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _generate_json(workspace, *args: str) -> dict:
    env = dict(os.environ, TUNELAB_HOME=str(workspace))
    out = subprocess.run([*TUNELAB, "generate", "--seeds", str(SEEDS), "--json", *args],
                         capture_output=True, text=True, env=env, timeout=1800)  # a loaded 2-core box
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _check_result(result: dict, n: int) -> None:
    assert set(result) >= {"generated", "accepted", "rejected", "prompt_version"}
    assert result["prompt_version"] == 1
    assert result["generated"] == result["accepted"] + len(result["rejected"])
    assert result["generated"] >= n  # n items plus whatever could not be parsed
    assert all(r["reason"] for r in result["rejected"])


@pytest.mark.slow
def test_cli_generate_with_local_smollm2(workspace):
    result = _generate_json(workspace, "--n", "5", "--into", "grown")
    _check_result(result, 5)
    assert result["accepted"] >= 1, result
    assert store.read("grown").num_rows == result["accepted"]
    lineage = store.manifest("grown")["versions"][-1]["lineage"]
    assert lineage["backend"] == "local:smollm2-135m-instruct" and lineage["model"] == "smollm2-135m-instruct"
    assert all(r["output"].strip() for r in store.read("grown").to_pylist())


@pytest.mark.slow
def test_cli_generate_through_tunelab_serve(workspace):
    """A real HTTP round trip: `tunelab serve` in a subprocess, the openai: backend pointed at it."""
    port = _free_port()
    env = dict(os.environ, TUNELAB_HOME=str(workspace))
    server = subprocess.Popen([*TUNELAB, "serve", "smollm2-135m-instruct", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_http(f"http://127.0.0.1:{port}/v1/models", server)
        backend = f"openai:http://127.0.0.1:{port}/v1"
        result = _generate_json(workspace, "--n", "3", "--into", "served", "--backend", backend)
    finally:
        server.terminate()
        server.wait(timeout=30)
    _check_result(result, 3)
    assert result["accepted"] >= 1, result
    lineage = store.manifest("served")["versions"][-1]["lineage"]
    assert lineage["backend"] == backend and lineage["model"]
