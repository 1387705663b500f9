"""Hub ids as MODEL (issue 24): the real `tunelab` command and the real huggingface_hub client against a
stand-in Hub on 127.0.0.1 (tests/hub_server.py) serving tiny random llamas, one of them gated."""

from __future__ import annotations

import json
import os
import stat

import pytest

import tiny_model
from cli_run import one_line_error, tunelab
from hub_server import StandInHub, make_repo

TOKEN = "hf_standin_secret_123"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    make_repo(root, "acme/tiny-chat", width=32)
    make_repo(root, "acme/gated-chat", width=32, init_range=0.3)
    (root / "acme" / "pickled").mkdir(parents=True)
    (root / "acme" / "pickled" / "config.json").write_text('{"model_type": "llama"}')
    (root / "acme" / "pickled" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with StandInHub(root, gated={"acme/gated-chat"}, token=TOKEN, licenses={"acme/tiny-chat": "apache-2.0"}) as h:
        yield h


@pytest.fixture
def env(hub, tmp_path):
    """Online, at the stand-in Hub, with an empty Hugging Face cache of this test's own."""
    return {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_add_chat_train_fetch_the_weights_once(workspace, hub, env):
    before = hub.weight_gets("acme/tiny-chat")
    p = _ok(tunelab(workspace, "models", "add", "tiny", "acme/tiny-chat", "--json", env=dict(env, TUNELAB_PROGRESS="1")))
    assert "acme/tiny-chat/model.safetensors: 100%" in p.stderr  # the byte bar (stderr is not a terminal here)
    added = json.loads(p.stdout)
    assert added["hub_id"] == "acme/tiny-chat" and added["revision"] == hub.commit("acme/tiny-chat")
    assert added["architecture"] == "LlamaForCausalLM" and added["license"] == "apache-2.0"
    assert os.path.realpath(added["path"]).startswith(env["HF_HOME"])

    listed = json.loads(_ok(tunelab(workspace, "models", "list", "--json", env=env)).stdout)["models"]
    row = next(m for m in listed if m["name"] == "tiny")
    assert {k: row[k] for k in ("revision", "architecture", "license", "template")} == {
        "revision": added["revision"], "architecture": "LlamaForCausalLM", "license": "apache-2.0", "template": "chatml"}
    assert all({"revision", "architecture", "license", "template"} <= set(m) for m in listed)

    for model in ("tiny", "acme/tiny-chat"):
        p = _ok(tunelab(workspace, "chat", model, "Hello", "--max-new-tokens", "4", env=env))
        assert "4 tokens" in p.stderr  # random weights: the answer is 4 tokens of noise

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELAB_HOME", str(workspace))
        tiny_model.dataset()
    p = _ok(tunelab(workspace, "train", "--model", "acme/tiny-chat", "--data", "tiny", "--max-steps", "2",
                    "--batch-size", "2", "--cutoff-len", "64", "--recipe", "manual", "--no-auto-report", "--json",
                    env=env))
    out = json.loads(p.stdout)
    assert out["status"] == "completed"
    p = _ok(tunelab(workspace, "chat", out["run"], "Hello", "--max-new-tokens", "4", env=env))
    assert hub.weight_gets("acme/tiny-chat") - before == 1  # add, two chats, a run and its model: one download


@pytest.mark.slow
def test_offline_uses_the_cache_once_fetched(workspace, hub, env):
    _ok(tunelab(workspace, "models", "add", "tiny", "acme/tiny-chat@main", env=env))
    gets = hub.weight_gets("acme/tiny-chat")
    p = _ok(tunelab(workspace, "chat", "acme/tiny-chat", "Hi", "--max-new-tokens", "2",
                    env=dict(env, HF_HUB_OFFLINE="1")))
    assert "2 tokens" in p.stderr and hub.weight_gets("acme/tiny-chat") == gets


def test_offline_says_how_to_turn_downloads_on(workspace, env):
    line = one_line_error(tunelab(workspace, "models", "add", "t", "acme/tiny-chat", env=dict(env, HF_HUB_OFFLINE="1")))
    assert "HF_HUB_OFFLINE=1" in line and "HF_HUB_OFFLINE=0" in line


def test_unreachable_hub(workspace, env):
    line = one_line_error(tunelab(workspace, "chat", "acme/tiny-chat", "Hi",
                                  env=dict(env, HF_ENDPOINT="http://127.0.0.1:9")))
    assert "cannot reach the Hub at http://127.0.0.1:9" in line


def test_unknown_repo_and_revision(workspace, env, hub):
    line = one_line_error(tunelab(workspace, "models", "add", "t", "acme/no-such-model", env=env))
    assert "no model acme/no-such-model" in line
    line = one_line_error(tunelab(workspace, "models", "add", "t", "acme/tiny-chat", "--revision", "v9", env=env))
    assert "has no revision 'v9'" in line
    line = one_line_error(tunelab(workspace, "models", "add", "t", "acme/pickled", env=env))
    assert "no safetensors weights" in line and "pytorch_model.bin" in line
    assert not [r for r in hub.requests if "/acme/pickled/resolve/" in r[1] and r[1].endswith(".bin")]


def test_gated_repo_needs_a_token(workspace, env, hub):
    line = one_line_error(tunelab(workspace, "models", "add", "g", "acme/gated-chat", env=env))
    assert "gated" in line and "HF_TOKEN" in line and "Models page" in line
    line = one_line_error(tunelab(workspace, "models", "add", "g", "acme/gated-chat", env=dict(env, HF_TOKEN="hf_wrong")))
    assert "no access" in line and "hf_wrong" not in line
    assert not any(p.endswith(".safetensors") for (r, p) in hub.gets if r == "acme/gated-chat")


@pytest.mark.slow
def test_gated_repo_added_with_hf_token(workspace, env, hub):
    p = _ok(tunelab(workspace, "models", "add", "g", "acme/gated-chat", "--json", env=dict(env, HF_TOKEN=TOKEN)))
    assert json.loads(p.stdout)["revision"] == hub.commit("acme/gated-chat")
    assert TOKEN not in p.stdout + p.stderr and TOKEN not in (workspace / "models" / "registry.json").read_text()


def test_token_saved_in_the_workspace_is_private(workspace, env, hub, monkeypatch):
    from tunelab.models import hub as hubmod

    hubmod.save_token(TOKEN)
    f = workspace / "models" / "hf_token"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    p = _ok(tunelab(workspace, "models", "add", "g", "acme/gated-chat", "--json", env=env))  # no HF_TOKEN: the file
    assert TOKEN not in p.stdout + p.stderr


def test_disk_space_checked_before_download(workspace, hub, env, monkeypatch):
    from tunelab.errors import TuneLabError
    from tunelab.models import hub as hubmod

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = hubmod.plan("acme/tiny-chat")
    assert p["commit"] == hub.commit("acme/tiny-chat") and "model.safetensors" in p["files"]
    assert p["bytes"] == sum(f.stat().st_size for f in (hub.root / "acme/tiny-chat").iterdir())
    with pytest.raises(TuneLabError, match=r"needs .* GiB but only .* GiB is free"):
        hubmod.check_disk(10 * 2**50, hubmod.cache_dir(), "acme/tiny-chat")


def test_hub_ids_are_told_apart_from_paths(tmp_path, monkeypatch):
    from tunelab.models.hub import parse

    assert parse("Qwen/Qwen2.5-0.5B") == ("Qwen/Qwen2.5-0.5B", None)
    assert parse("acme/tiny@v1.0") == ("acme/tiny", "v1.0")
    assert parse("smollm2-135m-instruct") is None and parse("/abs/x") is None and parse("a/b/c") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local" / "model").mkdir(parents=True)
    assert parse("local/model") is None  # an existing folder is a folder


@pytest.mark.slow
def test_interrupted_download_resumes_where_it_stopped(workspace, tmp_path):
    """Kill `models add` mid-download; the next one asks only for the missing bytes (a Range request)."""
    import subprocess
    import sys
    import time

    root = tmp_path / "slow-repos"
    make_repo(root, "acme/slow", width=32)
    weights = (root / "acme" / "slow" / "model.safetensors").stat().st_size
    with StandInHub(root, bytes_per_s=weights / 6) as slow:  # about 6 s for the weights
        env = {"HF_ENDPOINT": slow.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
        full = {**os.environ, "TUNELAB_HOME": str(workspace), **env}
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "models", "add", "slow", "acme/slow"], env=full,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        blobs = tmp_path / "hf" / "hub" / "models--acme--slow" / "blobs"
        deadline = time.time() + 120
        while time.time() < deadline:
            part = list(blobs.glob("*.tunelab-part")) if blobs.is_dir() else []  # models/hub.py keeps partial weights here
            if part and part[0].stat().st_size > weights // 4:
                break
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        kept = max(f.stat().st_size for f in blobs.glob("*.tunelab-part"))
        assert 0 < kept < weights
        _ok(tunelab(workspace, "models", "add", "slow", "acme/slow", env=env))
    asks = [r for (repo, path, r) in slow.ranges if path == "model.safetensors"]
    assert asks[0] == "" and len(asks) == 2 and asks[1].startswith("bytes=")
    assert 0 < int(asks[1][len("bytes="):].split("-")[0]) <= kept  # resumed, not fetched again from 0
    added = json.loads(_ok(tunelab(workspace, "models", "list", "--json", env=env)).stdout)["models"]
    assert next(m for m in added if m["name"] == "slow")["revision"] == slow.commit("acme/slow")
