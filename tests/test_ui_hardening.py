"""Issue 11 hardening of the dashboard: a local-only listener, uploads that never silently change an
existing dataset, and endpoint keys that go only where the user typed them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import free_port

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ 1. the dashboard listens locally


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the sockets listening on port."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.append(addr)
    return found


def _outside_ip() -> str | None:
    """This machine's address on its network (not loopback), when it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP: no packet is sent, only a route is picked
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def _start(argv: list[str], tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, TUNELAB_HOME=str(tmp_path / "ws"), HF_HUB_OFFLINE="1")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the CLI and the Streamlit child
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_listening(proc: subprocess.Popen, port: int, timeout: float = 90) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = _listeners(port)
        if found:
            return found
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.3)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


@pytest.mark.parametrize("how", ["tunelab app", "make run's launcher"])
def test_dashboard_listens_on_loopback_only(how, tmp_path):
    port = free_port()
    argv = ([sys.executable, "-m", "tunelab", "app", "--port", str(port)] if how == "tunelab app" else
            # what `make run` ran before HOST was passed: the launcher alone must be local too
            [sys.executable, "-m", "tunelab.ui.launch", "--server.port", str(port), "--server.headless", "true"])
    proc = _start(argv, tmp_path)
    try:
        listeners = _wait_listening(proc, port)
        assert listeners == ["0100007F"], listeners  # 127.0.0.1 only: no 0.0.0.0, no IPv6 ::
        assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=30).status_code == 200
        ip = _outside_ip()
        if ip:
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=3).close()
    finally:
        _stop(proc)
    assert "warning" not in proc.stderr.read().lower()


def test_app_host_wider_than_loopback_prints_one_warning(tmp_path):
    port = free_port()
    proc = _start([sys.executable, "-m", "tunelab", "app", "--host", "0.0.0.0", "--port", str(port)], tmp_path)
    try:
        assert _wait_listening(proc, port) == ["00000000"]  # it did widen: 0.0.0.0
    finally:
        _stop(proc)
    said = proc.stderr.read()
    line = said.splitlines()[0] if said else ""
    assert line.startswith("warning:") and "0.0.0.0" in line, said  # the first thing said
    assert "anyone on the network" in line and "no authentication" in line
    assert said.count("anyone on the network") == 1


# ------------------------------------------------------------------ 8. endpoint keys


class _Endpoint:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 that records every Authorization header.

    echo=True answers 401 with the header in the error message (a hostile or careless server)."""

    def __init__(self, echo: bool = False):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.auth = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                seen.append(self.headers.get("Authorization"))
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                seen.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if echo:
                    self._send(401, {"error": {"message": f"invalid key in {self.headers.get('Authorization')}"}})
                    return
                text = "1. Name three red fruits.\n2. Explain what rain is.\n3. Write a haiku about snow."
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 20}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    ep = _Endpoint()
    yield ep
    ep.close()


@pytest.fixture
def echoing_endpoint():
    ep = _Endpoint(echo=True)
    yield ep
    ep.close()


SERVER_KEY = "sk-server-env-0123456789abcdef"
TYPED_KEY = "sk-typed-in-browser-9876543210"


@pytest.fixture
def server_key(monkeypatch):
    """The dashboard server's own key, in its environment (as a user's shell might hold it)."""
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)


def _generate_page(url: str, key: str | None = None, url_after_key: str | None = None):
    from pagetest import open_page

    at = open_page("pages/generate.py")
    at.selectbox(key="gen.model").set_value("OpenAI-compatible endpoint").run()
    at.text_input(key="gen.endpoint").input(url).run()
    if key is not None:
        at.text_input(key="gen.endpoint_key").input(key).run()
    if url_after_key:
        at.text_input(key="gen.endpoint").input(url_after_key).run()
    at.number_input(key="gen.n").set_value(2)
    at.checkbox(key="gen.outputs").uncheck().run()
    assert not at.exception, at.exception
    return at


def _launch_and_wait(at, timeout: float = 180) -> Path:
    """Press Generate (a real `tunelab generate --job` process) and wait for its batch to end."""
    from tunelab import jobs
    from tunelab.synth import generate

    at.button(key="gen.run").click().run()
    assert not at.exception, at.exception
    batch = at.session_state["gen.batch"]
    d = generate.batch_dir(batch)
    deadline = time.time() + timeout
    while (jobs.read_status(d) or {}).get("status") in ("queued", "running"):
        assert time.time() < deadline, (d / "job.log").read_text()
        time.sleep(0.3)
    return d


def _job_text(d: Path) -> str:
    """Every file under d, as text."""
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in d.rglob("*") if p.is_file())


def test_typed_endpoint_never_gets_the_servers_env_key(workspace, server_key, endpoint):
    d = _launch_and_wait(_generate_page(endpoint.url))
    status = json.loads((d / "status.json").read_text())
    assert status["status"] == "completed", (d / "job.log").read_text()
    assert endpoint.auth and set(endpoint.auth) == {None}  # no Authorization header at all
    assert SERVER_KEY not in _job_text(d)


def test_key_typed_for_the_url_is_sent_and_never_written(workspace, server_key, endpoint):
    d = _launch_and_wait(_generate_page(endpoint.url, key=TYPED_KEY))
    assert json.loads((d / "status.json").read_text())["status"] == "completed", (d / "job.log").read_text()
    assert set(endpoint.auth) == {f"Bearer {TYPED_KEY}"}
    text = _job_text(d)  # config.json, status.json, batch.jsonl, job.log, pid
    assert {p.name for p in d.iterdir()} >= {"config.json", "status.json", "job.log"}
    assert TYPED_KEY not in text and SERVER_KEY not in text
    assert TYPED_KEY not in _job_text(workspace)  # nor anywhere else in the workspace


def test_a_key_does_not_follow_the_user_to_another_url(workspace, server_key, endpoint):
    other = _Endpoint()
    try:
        at = _generate_page(endpoint.url, key=TYPED_KEY, url_after_key=other.url)
        assert at.text_input(key="gen.endpoint_key").value == ""  # cleared, visibly
        d = _launch_and_wait(at)
    finally:
        other.close()
    assert json.loads((d / "status.json").read_text())["status"] == "completed", (d / "job.log").read_text()
    assert other.auth and set(other.auth) == {None}
    assert endpoint.auth == []  # the first URL was never called


def test_an_echoed_key_never_reaches_the_error_or_the_job_files(workspace, server_key, echoing_endpoint):
    at = _generate_page(echoing_endpoint.url, key=TYPED_KEY)
    d = _launch_and_wait(at)
    status = json.loads((d / "status.json").read_text())
    assert status["status"] == "failed" and "401" in status["error"] and "***" in status["error"], status
    assert set(echoing_endpoint.auth) == {f"Bearer {TYPED_KEY}"}  # it did get (and echo) the key
    assert TYPED_KEY not in _job_text(d)
    at.run()
    from pagetest import texts

    assert "401" in texts(at) and TYPED_KEY not in texts(at)


def test_backend_error_messages_never_carry_the_key(monkeypatch, echoing_endpoint):
    from tunelab.errors import TuneLabError
    from tunelab.models.generation import GenerationSettings
    from tunelab.models.openai_backend import OpenAIBackend
    from tunelab.models.registry import resolve

    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)  # a terminal user's own key, their own choice of URL
    backend = OpenAIBackend(resolve(f"openai:{echoing_endpoint.url}#fake"))
    with pytest.raises(TuneLabError) as err:
        backend.chat([[{"role": "user", "content": "hi"}]], GenerationSettings(max_new_tokens=4))
    assert "401" in str(err.value) and SERVER_KEY not in str(err.value) and "***" in str(err.value)
    with pytest.raises(TuneLabError) as err:
        "".join(backend.stream_chat([{"role": "user", "content": "hi"}], GenerationSettings(max_new_tokens=4)))
    assert "401" in str(err.value) and SERVER_KEY not in str(err.value)


def test_cli_still_sends_the_shells_key_to_the_endpoint_it_names(workspace, endpoint):
    """`tunelab generate --backend openai:URL` in a terminal: the user's own key for the user's own URL."""
    seeds = ROOT / "data" / "samples" / "seeds.jsonl"
    env = dict(os.environ, OPENAI_API_KEY=SERVER_KEY, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "tunelab", "generate", "--seeds", str(seeds), "--n", "2",
                           "--backend", f"openai:{endpoint.url}", "--no-outputs", "--no-accept", "--json"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert set(endpoint.auth) == {f"Bearer {SERVER_KEY}"}
    assert SERVER_KEY not in done.stdout + done.stderr


def test_endpoint_env_blanks_the_key_for_endpoints_only():
    from tunelab.synth.generate import endpoint_env

    assert endpoint_env("openai:http://evil.example/v1") == {"OPENAI_API_KEY": ""}
    assert endpoint_env("openai:http://x/v1#m", "typed") == {"OPENAI_API_KEY": "typed"}
    assert endpoint_env("local:smollm2-135m-instruct") == {}


# ------------------------------------------------------------------ 2. uploads and existing datasets

SAMPLES = ROOT / "data" / "samples"


def _data_page():
    from pagetest import open_page

    return open_page("pages/data.py")


def _heads() -> dict:
    from tunelab.data import store

    return {d["name"]: d["version"] for d in store.list_datasets()}


def test_upload_into_an_existing_name_asks_before_adding_a_version(workspace):
    from pagetest import texts

    from tunelab.data import store
    from tunelab.data.importer import import_path

    import_path(str(SAMPLES / "qa.csv"))  # the shipped `qa`, 20-odd records
    shipped = store.read("qa").num_rows
    at = _data_page()
    mine = b"question,answer\nWhat is 2+2?,4\n"
    at.file_uploader(key="data.upload").upload("qa.csv", mine, "text/csv")
    at.run()
    at.button(key="data.import").click().run()
    assert not at.exception, at.exception
    assert _heads() == {"qa": 1} and len(store.manifest("qa")["versions"]) == 1  # nothing written yet
    assert "A dataset named `qa` already exists (v1" in texts(at)

    at.button(key="data.import_no").click().run()  # cancel: still nothing, and the question is gone
    assert _heads() == {"qa": 1} and not at.button(key="data.import").disabled
    assert "already exists" not in texts(at)

    at.button(key="data.import").click().run()
    at.button(key="data.import_yes").click().run()  # confirmed: a new version, the old one kept
    assert not at.exception, at.exception
    assert _heads() == {"qa": 2} and store.read("qa").num_rows == 1 and store.read("qa", 1).num_rows == shipped
    assert "`qa` v2: imported 1 record(s)" in texts(at)


def test_upload_under_a_new_name_imports_without_asking(workspace):
    from pagetest import texts

    from tunelab.data.importer import import_path

    import_path(str(SAMPLES / "qa.csv"))
    at = _data_page()
    at.file_uploader(key="data.upload").upload("qa.csv", b"question,answer\nWhat is 2+2?,4\n", "text/csv")
    at.text_input(key="data.upload_name").input("my_qa")
    at.run()
    at.button(key="data.import").click().run()
    assert not at.exception, at.exception
    assert _heads() == {"qa": 1, "my_qa": 1} and "already exists" not in texts(at)


def _info_upload(n_missing: int) -> list[tuple[str, bytes, str]]:
    """A dataset_info.json naming two shipped files (uploaded with it) and n_missing absent ones."""
    info = {"qa": {"file_name": "qa.csv", "columns": {"prompt": "question", "response": "answer"}},
            "alpaca_mixed": {"file_name": "alpaca_mixed.jsonl"}}
    info |= {f"gone_{i:03d}": {"file_name": f"gone_{i:03d}.json"} for i in range(n_missing)}
    return [("dataset_info.json", json.dumps(info).encode(), "application/json"),
            ("qa.csv", (SAMPLES / "qa.csv").read_bytes(), "text/csv"),
            ("alpaca_mixed.jsonl", (SAMPLES / "alpaca_mixed.jsonl").read_bytes(), "application/json")]


def test_dataset_info_upload_warnings_are_one_summary(workspace):
    from pagetest import texts

    at = _data_page()
    at.file_uploader(key="data.upload").set_value(_info_upload(100))
    at.run()
    at.button(key="data.import").click().run()
    assert not at.exception, at.exception
    assert _heads() == {"qa": 1, "alpaca_mixed": 1}
    assert len(at.warning) == 1 and "100 dataset_info entries not imported" in at.warning[0].value
    assert len(at.success) == 1 and "Imported 2 dataset(s)" in at.success[0].value
    skipped = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert len(skipped) == 1 and len(skipped[0]) == 100 and skipped[0]["name"].iloc[0] == "gone_000"
    assert "gone_000.json was not uploaded together" in skipped[0]["reason"].iloc[0]
    assert "gone_001" not in texts(at)  # listed in the folded table only, not as boxes


def test_dataset_info_upload_asks_for_the_existing_entries_it_names(workspace):
    from pagetest import texts

    from tunelab.data.importer import import_path

    import_path(str(SAMPLES / "qa.csv"))
    other = workspace.parent / "other.jsonl"
    other.write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n", encoding="utf-8")
    import_path(str(other))  # not named by the upload: never touched
    at = _data_page()
    at.file_uploader(key="data.upload").set_value(_info_upload(0))
    at.run()
    at.button(key="data.import").click().run()
    assert not at.exception, at.exception
    assert _heads() == {"qa": 1, "other": 1}
    assert "A dataset named `qa` already exists" in texts(at)
    at.button(key="data.import_yes").click().run()
    assert not at.exception, at.exception
    assert _heads() == {"qa": 2, "alpaca_mixed": 1, "other": 1}
