"""Nothing private leaks out (issue 22, item 7): `serve` off loopback needs a key or --insecure-no-key,
and credentials in an endpoint URL are never stored or listed."""

from __future__ import annotations

import json

import pytest
from cli_run import one_line_error, tunelab

from tunelab.errors import TuneLabError
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
