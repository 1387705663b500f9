"""Nothing private leaks out (issue 22, item 7): `serve` off loopback needs a key or --insecure-no-key,
and credentials in an endpoint URL are never stored or listed."""

from __future__ import annotations

import json

import pytest
from chat_server import serve
from cli_run import one_line_error, tunelab

from tunelab.cli import main as cli
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.models import registry
from tunelab.serve import cli as serve_cli


def test_serve_off_loopback_without_a_key_is_refused_in_one_line(workspace, tiny_model):
    err = one_line_error(tunelab(workspace, "serve", tiny_model, "--host", "0.0.0.0", "--port", "8971",
                                 env={"TUNELAB_API_KEY": ""}))
    assert "--host 0.0.0.0" in err and "--insecure-no-key" in err
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        serve_cli.check_exposure(host, None)
    serve_cli.check_exposure("0.0.0.0", "a-key")
    serve_cli.check_exposure("192.168.1.5", None, insecure_no_key=True)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(TuneLabError, match="no API key"):
            serve_cli.check_exposure(host, None)


@pytest.fixture
def endpoint():
    """An OpenAI-compatible endpoint that answers "ok": (its port, each request's Authorization header)."""
    auth: list[str] = []
    with serve(lambda model, prompt: "ok", auth=auth) as (url, _):
        yield int(url.split(":")[2].split("/")[0]), auth


def test_a_key_in_an_endpoint_url_is_used_but_never_stored_or_listed(workspace, tiny_model, endpoint, capsys):
    port, auth = endpoint
    store.commit("probe", schema.to_table([{"id": "p0", "instruction": "Say hi.", "output": "hi"}]), "import")
    model = f"openai:http://user:SECRET-123@127.0.0.1:{port}/v1"
    capsys.readouterr()
    assert cli(["compare", "--models", f"{model},{tiny_model}", "--data", "probe", "--max-new-tokens", "4",
                "--judge", model, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "Bearer SECRET-123" in auth  # the key was sent, as the bearer key
    assert "SECRET-123" not in json.dumps(doc)
    assert doc["models"][0]["name"] == f"openai:http://***@127.0.0.1:{port}/v1"
    assert cli(["reports", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert "SECRET-123" not in listed and "***@127.0.0.1" in listed
    for p in workspace.rglob("*"):
        if p.is_file():
            assert b"SECRET-123" not in p.read_bytes(), p
    with pytest.raises(TuneLabError, match="holds a key"):
        registry.add_model("remote", f"http://user:SECRET-123@127.0.0.1:{port}/v1")
