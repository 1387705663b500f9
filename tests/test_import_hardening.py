"""Issue 11 hardening of the importer: dataset_info.json reads stay inside its folder (and a browser
upload reads only the files uploaded with it), FIFOs and devices are refused at once, an import never
silently changes an existing dataset, and size limits hold for Parquet, CSV, hf: and URL imports."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab.data import importer, store, uploads
from tunelab.data.importer import import_path
from tunelab.errors import TuneLabError

ROOT = Path(__file__).resolve().parents[1]
GOOD = [{"instruction": "q1", "output": "a1"}, {"instruction": "q2", "output": "a2"}]


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def head(name: str) -> int:
    return store.manifest(name)["head"]


# ------------------------------------------------------------------ 1. dataset_info.json stays in its folder


@pytest.fixture
def info_folder(tmp_path):
    """A LLaMA-Factory data folder next to a secret file outside it."""
    secret = jsonl(tmp_path / "secret.json", [{"instruction": "password", "output": "hunter2"}])
    folder = tmp_path / "lf"
    folder.mkdir()
    jsonl(folder / "good.json", GOOD)
    (folder / "link.json").symlink_to(secret)
    (folder / "zero.jsonl").symlink_to("/dev/zero")
    (folder / "sub").mkdir()
    jsonl(folder / "sub" / "inner.json", GOOD)
    (folder / "inner_link.json").symlink_to(folder / "sub" / "inner.json")  # a link that stays inside
    return folder, secret


def test_dataset_info_file_names_must_resolve_inside_its_folder(workspace, info_folder):
    folder, secret = info_folder
    (folder / "dataset_info.json").write_text(json.dumps({
        "good": {"file_name": "good.json"},
        "inside": {"file_name": "sub/../inner_link.json"},
        "up": {"file_name": "../secret.json"},
        "absolute": {"file_name": str(secret)},
        "link": {"file_name": "link.json"},
        "zero": {"file_name": "zero.jsonl"},
    }))
    result = import_path(str(folder / "dataset_info.json"))
    assert sorted(d["name"] for d in result["datasets"]) == ["good", "inside"]
    reasons = {s["name"]: s["reason"] for s in result["skipped"]}
    assert reasons == {
        "up": "../secret.json is outside the folder of dataset_info.json",
        "absolute": f"{secret} is an absolute path; file_name must name a file next to dataset_info.json",
        "link": "link.json is a symlink pointing outside the folder of dataset_info.json",
        "zero": "zero.jsonl is a symlink pointing outside the folder of dataset_info.json",
    }
    assert {s["kind"] for s in result["skipped"]} == {"outside"}
    assert [d["name"] for d in store.list_datasets()] == ["good", "inside"]  # nothing of the secret


@pytest.mark.timeout(60)
def test_fifo_entry_is_skipped_without_waiting(workspace, tmp_path):
    folder = tmp_path / "lf"
    folder.mkdir()
    jsonl(folder / "good.json", GOOD)
    os.mkfifo(folder / "pipe.json")  # nobody ever writes: opening it for reading would block
    (folder / "dataset_info.json").write_text(json.dumps({
        "good": {"file_name": "good.json"}, "pipe": {"file_name": "pipe.json"}}))
    started = time.monotonic()
    result = import_path(str(folder / "dataset_info.json"))
    assert time.monotonic() - started < 10
    assert result["skipped"] == [{"name": "pipe", "kind": "not_regular",
                                  "reason": "pipe.json is not a regular file (it is a named pipe (FIFO))"}]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifo_or_device_as_import_path_is_one_line_not_a_folder(workspace, tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "pipe.jsonl"
        os.mkfifo(target)
    else:
        target = Path("/dev/zero")
    with pytest.raises(TuneLabError) as err:
        import_path(str(target))
    assert str(err.value).startswith(f"{target} is not a regular file")
    assert "folder" not in str(err.value)
    with pytest.raises(TuneLabError, match="is not a regular file"):  # a forced format too
        importer.import_file(target, "x", "csv")


# ------------------------------------------------------------------ 1+2. browser uploads


def test_uploaded_dataset_info_reads_only_files_uploaded_with_it(workspace, tmp_path):
    secret = jsonl(tmp_path / "secret.json", [{"instruction": "password", "output": "hunter2"}])
    raw = "".join(json.dumps(r) + "\n" for r in GOOD + [{"instruction": " q3 ", "output": "a3"}]).encode()
    assert uploads.import_upload("qa.json", raw)["version"] == 1
    store.edit("qa", lambda t: t.slice(0, 2), "clean")  # the user's cleaned v2
    info = json.dumps({"qa": {"file_name": "qa.json"},           # an earlier upload's name
                       "leak": {"file_name": str(secret)},        # any file on the server
                       "up": {"file_name": "../../../secret.json"}}).encode()

    with pytest.raises(TuneLabError, match="nothing imported from dataset_info.json: 3 entries skipped"):
        uploads.import_uploads([("dataset_info.json", info)])
    assert head("qa") == 2 and not store.exists("leak") and not store.exists("up")

    # Uploaded together, the entry's file is read, and the result says qa already existed.
    result = uploads.import_uploads([("dataset_info.json", info), ("qa.json", raw)])
    assert [(d["name"], d["version"], d.get("existing"), d.get("previous_version"))
            for d in result["datasets"]] == [("qa", 3, True, 2)]
    assert {s["name"]: s["kind"] for s in result["skipped"]} == {"leak": "not_uploaded", "up": "not_uploaded"}
    assert not any((workspace / "uploads").rglob("*.json"))  # staged copies are gone


def test_existing_targets_names_the_datasets_an_upload_would_change(workspace):
    uploads.import_upload("qa.csv", b"instruction,output\nq,a\n")
    assert uploads.existing_targets([("qa.csv", b"instruction,output\nq,b\n")]) == [
        {"name": "qa", "version": 1, "records": 1}]
    assert uploads.existing_targets([("qa.csv", b"x")], name="other") == []
    info = json.dumps({"qa": {"file_name": "x.json"}, "new": {"file_name": "y.json"}}).encode()
    assert [t["name"] for t in uploads.existing_targets([("dataset_info.json", info)])] == ["qa"]
    assert head("qa") == 1 and not store.exists("new")


def test_cli_import_into_existing_name_says_so(workspace, tmp_path):
    src = jsonl(tmp_path / "qa.jsonl", GOOD)
    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "tunelab", "data", "import", str(src), "--json"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "existed" not in first.stderr
    assert "existing" not in json.loads(first.stdout)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    out = json.loads(again.stdout)
    assert again.returncode == 0 and (out["version"], out["existing"], out["previous_version"]) == (2, True, 1)
    assert again.stderr.strip() == "note: qa already existed; added v2 over v1 (`tunelab data undo qa` goes back)"


def test_dataset_info_warnings_summarised(workspace, tmp_path):
    folder = tmp_path / "lf"
    folder.mkdir()
    jsonl(folder / "good.json", GOOD)
    entries = {"good": {"file_name": "good.json"}, "hub": {"hf_hub_url": "a/b"}}
    entries.update({f"missing{i}": {"file_name": f"m{i}.json"} for i in range(100)})
    (folder / "dataset_info.json").write_text(json.dumps(entries))
    import_path(str(folder / "dataset_info.json"))
    summary = importer.summarise(import_path(str(folder / "dataset_info.json")))
    assert summary["datasets"] == 1 and summary["imported"] == 2 and summary["skipped_entries"] == 101
    assert summary["new"] == [] and summary["updated"] == [{"name": "good", "version": 2, "previous_version": 1}]
    assert summary["reasons"]["hub"] == ["hub"] and len(summary["reasons"]["missing"]) == 100


# ------------------------------------------------------------------ 7. Parquet, CSV, hf:, URLs


def test_corrupt_parquet_row_group_keeps_the_readable_ones(workspace, tmp_path):
    table = pa.table({"instruction": [f"q{i}" * 50 for i in range(3000)],
                      "output": [f"a{i}" * 50 for i in range(3000)]})
    path = tmp_path / "broken.parquet"
    pq.write_table(table, path, row_group_size=1000)
    meta = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    middle = meta.dictionary_page_offset + meta.total_compressed_size // 2
    data[middle:middle + 200] = b"\xab" * 200  # garbage inside row group 1's compressed page
    path.write_bytes(bytes(data))
    result = import_path(str(path))
    assert (result["imported"], result["skipped"]) == (2000, 1000)
    assert result["errors"][0]["line"] == 1000
    assert result["errors"][0]["error"].startswith("rows 1000-1999 not read: row group 1 is corrupt")
    rows = store.read("broken").column("instruction").to_pylist()
    assert rows[0] == "q0" * 50 and rows[1000] == "q2000" * 50


def _run_measured(code: str, tmp_path: Path, workspace: Path) -> tuple[dict, int]:
    """Run code in a fresh interpreter; return its printed JSON and its peak memory in MB."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json, resource
        print(json.dumps({"out": OUT, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    """)
    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc["out"], doc["rss_mb"]


def _baseline_mb(tmp_path: Path, workspace: Path) -> int:
    return _run_measured("from tunelab.data import importer\nimport pyarrow.parquet\nOUT = None", tmp_path,
                         workspace)[1]


@pytest.mark.timeout(600)
def test_parquet_with_a_300_mb_cell_is_refused_in_bounded_memory(workspace, tmp_path):
    make = """
        import pyarrow as pa, pyarrow.parquet as pq
        rows = [("q", "a")] * 10 + [("big", "x" * (300 << 20))]
        t = pa.table({"instruction": [r[0] for r in rows], "output": [r[1] for r in rows]})
        pq.write_table(t, "bomb.parquet", compression="zstd", row_group_size=10, use_dictionary=False,
                       write_statistics=False)  # (both slow on a 300 MB string)
        pq.write_table(pa.table({"instruction": ["q", "big"], "output": ["a", "y" * (100 << 20)]}),
                       "big.parquet", compression="zstd")
        OUT = None
    """
    _run_measured(make, tmp_path, workspace)
    assert (tmp_path / "bomb.parquet").stat().st_size < 100_000
    baseline = _baseline_mb(tmp_path, workspace)
    out, rss = _run_measured("""
        from tunelab.data.importer import import_path
        r = import_path("bomb.parquet")
        OUT = [r["imported"], r["skipped"], r["errors"]]
    """, tmp_path, workspace)
    assert out[:2] == [10, 1]
    assert "over the 128 MB page limit (records are limited to 64 MB)" in out[2][0]["error"]
    assert rss - baseline < 200, (rss, baseline)
    # A 100 MB cell fits in a page but not in a record: that record is skipped, the other kept.
    out, _ = _run_measured("""
        from tunelab.data.importer import import_path
        r = import_path("big.parquet")
        OUT = [r["imported"], r["skipped"], r["errors"]]
    """, tmp_path, workspace)
    assert out == [1, 1, [{"line": 1, "error": "record is larger than 64 MB"}]]


def test_csv_record_over_the_limit_is_skipped(workspace, tmp_path):
    path = tmp_path / "wide.csv"
    with open(path, "w") as fh:
        fh.write("instruction,input,output\n")
        fh.write("q1,,a1\n")
        fh.write(",".join(["i" * (30 << 20)] * 3) + "\n")  # 90 MB in three fields under the field limit
        fh.write('q3,"two\nlines",a3\n')
    result = import_path(str(path))
    assert (result["imported"], result["skipped"]) == (2, 1)
    assert result["errors"] == [{"line": 3, "error": "record is larger than 64 MB"}]
    assert store.read("wide").column("input").to_pylist() == ["", "two\nlines"]


@pytest.mark.timeout(600)
def test_hf_folder_with_a_jsonl_gz_bomb_is_refused_in_bounded_memory(workspace, tmp_path):
    folder = tmp_path / "bombset"
    folder.mkdir()
    with gzip.open(folder / "train.jsonl.gz", "wb", compresslevel=9) as fh:
        fh.write(b'{"instruction": "q", "output": "a"}\n{"instruction": "big", "output": "')
        block = b"x" * (1 << 20)
        for _ in range(300):
            fh.write(block)
        fh.write(b'"}\n')
    assert (folder / "train.jsonl.gz").stat().st_size < 1_000_000
    baseline = _baseline_mb(tmp_path, workspace)
    out, rss = _run_measured(f"""
        from tunelab.data.importer import import_path
        from tunelab.errors import TuneLabError
        try:
            import_path("hf:{folder}")
            OUT = "imported"
        except TuneLabError as exc:
            OUT = str(exc)
    """, tmp_path, workspace)
    assert out == (f"nothing imported from hf:{folder}: train.jsonl.gz: a record is larger than 64 MB "
                   f"(the limit per record)")
    assert rss - baseline < 200, (rss, baseline)
    assert not store.exists("bombset")


@pytest.fixture
def drip_server(monkeypatch):
    """An HTTP server that sends a JSONL body one byte every 0.1 s for 8 s."""

    class Drip(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            ends = time.monotonic() + 8
            try:
                while time.monotonic() < ends:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
                self.wfile.write(b'{"instruction": "q", "output": "a"}\n')
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.timeout(60)
def test_url_import_has_an_overall_deadline(workspace, drip_server, monkeypatch):
    monkeypatch.setenv("TUNELAB_URL_DEADLINE", "1.5")
    started = time.monotonic()
    with pytest.raises(TuneLabError, match=r"took longer than 1.5 s"):
        import_path(f"{drip_server}/slow.jsonl")
    assert time.monotonic() - started < 5
    assert not store.exists("slow") and not list((workspace / "uploads").iterdir())


def test_nul_byte_in_url_is_one_line(workspace):
    with pytest.raises(TuneLabError, match="^the URL holds a NUL byte; refusing it$"):
        import_path("http://127.0.0.1:9/a\x00b.jsonl")
