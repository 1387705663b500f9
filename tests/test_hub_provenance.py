"""A report names the exact Hub commit of every Hub model it compares, whether added by name or given
directly by hub id (issue 24): the real huggingface_hub client against the stand-in Hub on 127.0.0.1."""

from __future__ import annotations

import re

import pytest
from hub_server import StandInHub, make_repo

from tunelab.evals import evaluate, provenance
from tunelab.evals.evaluate import EvalConfig
from tunelab.jsonio import read_json


@pytest.mark.slow
def test_report_provenance_records_the_hub_commit_of_a_model_given_by_id(workspace, tmp_path, monkeypatch):
    import tiny_model
    from tunelab.models import registry

    root = tmp_path / "repos"
    make_repo(root, "acme/tiny-chat", width=32)
    make_repo(root, "acme/other-chat", width=32, init_range=0.3)
    with StandInHub(root) as hub:
        for k, v in {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
                     "HF_TOKEN": ""}.items():
            monkeypatch.setenv(k, v)
        registry.add_model("other", "acme/other-chat")  # added by name
        tiny_model.dataset()
        rid = evaluate.create_report(EvalConfig(models=["acme/tiny-chat", "other"], data="tiny", limit=2,
                                                max_new_tokens=2))
        evaluate.run_report(rid)
        commits = {r: hub.commit(r) for r in ("acme/tiny-chat", "acme/other-chat")}
    saved = read_json(workspace / "reports" / rid / provenance.FILE)
    models = {m["name"]: m for m in saved["models"]}
    direct, added = models["acme/tiny-chat"], models["other"]
    assert re.fullmatch(r"[0-9a-f]{40}", direct["revision"])
    assert (direct["hub_id"], direct["revision"]) == ("acme/tiny-chat", commits["acme/tiny-chat"])
    assert (added["hub_id"], added["revision"]) == ("acme/other-chat", commits["acme/other-chat"])
    assert direct["source"] == f"acme/tiny-chat@{commits['acme/tiny-chat'][:12]}"
    # The document every view reads (compare --json, HTML) carries the same.
    doc = evaluate.load_report(rid)
    shown = {m["name"]: m for m in doc["provenance"]["models"]}
    assert shown["acme/tiny-chat"]["revision"] == commits["acme/tiny-chat"]
