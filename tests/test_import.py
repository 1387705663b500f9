"""Import: every reader, dataset_info.json, hf:/URL sources and the bad inputs a beginner brings."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab.data import formats, store
from tunelab.data.importer import import_path
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
REPO = SAMPLES.parents[1]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def rows(name: str) -> list[dict]:
    return store.read(name).to_pylist()


# --------------------------------------------------------------------------- each reader

def test_alpaca_jsonl_with_system_and_history(workspace, tmp_path):
    src = write_jsonl(tmp_path / "chat.jsonl", [
        {"instruction": "Hi", "input": "", "output": "Hello!", "system": "Be brief.",
         "history": [["What is 2+2?", "4"], ["And 3+3?", "6"]]},
        {"instruction": "你好", "output": "你好！"},
    ])
    result = import_path(str(src))
    assert result == {"name": "chat", "version": 1, "imported": 2, "skipped": 0, "errors": []}
    first, second = rows("chat")
    assert first["system"] == "Be brief." and first["history"] == [["What is 2+2?", "4"], ["And 3+3?", "6"]]
    assert second["instruction"] == "你好" and second["input"] == "" and second["history"] == []
    assert first["id"] and first["id"] != second["id"]


def test_alpaca_json_array_reports_indexes(workspace, tmp_path):
    src = tmp_path / "arr.json"
    src.write_text('[{"instruction": "a", "output": "b"}, {"instruction": "c"},\n'
                   ' {"instruction": "d" "output": "e"}, {"instruction": "f", "output": "g"}]')
    result = import_path(str(src), name="arr")
    assert result["imported"] == 2 and result["skipped"] == 2
    assert result["errors"] == [{"line": 1, "error": "missing `output`"},
                                {"line": 2, "error": "malformed JSON: Expecting ',' delimiter"}]
    assert [r["instruction"] for r in rows("arr")] == ["a", "f"]


def test_json_array_across_tiny_chunks(workspace, tmp_path, monkeypatch):
    """Elements split at every possible chunk boundary still decode (the streaming path)."""
    monkeypatch.setattr(formats.limits, "CHUNK", 7)
    recs = [{"instruction": f"q{i} \u00e9\u4e2d", "output": str(12345 * i)} for i in range(30)]
    src = tmp_path / "chunks.json"
    src.write_text(json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    assert import_path(str(src))["imported"] == 30
    assert [r["output"] for r in rows("chunks")] == [r["output"] for r in recs]


def test_sharegpt_with_tool_roles(workspace):
    result = import_path(str(SAMPLES / "sharegpt_tools.json"))
    assert result["imported"] == 10 and result["skipped"] == 0
    recs = rows("sharegpt_tools")
    weather = recs[0]
    assert weather["system"] == "You are a helpful assistant that can call tools."
    assert json.loads(weather["tools"])[0]["name"] == "get_weather"
    turns = json.loads(weather["conversations"])
    assert [t["from"] for t in turns] == ["human", "function_call", "observation", "gpt"]
    # the last user-side/assistant pair becomes instruction/output, earlier pairs the history
    assert weather["instruction"] == turns[2]["value"] and weather["output"] == turns[3]["value"]
    assert weather["history"] == [[turns[0]["value"], turns[1]["value"]]]
    tutor = recs[7]  # a leading system turn moves into `system`
    assert tutor["system"] == "You are a maths tutor. Show your working."
    assert json.loads(tutor["conversations"])[0]["from"] == "human"


def test_openai_messages_with_tool_calls(workspace):
    result = import_path(str(SAMPLES / "openai_messages.jsonl"), fmt="messages")
    assert result["imported"] == 11 and result["errors"] == []
    tip = next(r for r in rows("openai_messages") if r["history"] and "tip" in r["history"][0][0])
    turns = json.loads(tip["conversations"])
    assert [t["from"] for t in turns] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(turns[1]["value"]) == {"name": "calculator", "arguments": {"expression": "64 * 0.15"}}
    assert json.loads(tip["tools"])[0]["name"] == "calculator"  # the OpenAI {"type","function"} wrapper is removed


def test_csv_auto_mapping_and_explicit_mapping(workspace, tmp_path):
    assert import_path(str(SAMPLES / "qa.csv"))["imported"] == 21
    assert rows("qa")[0]["instruction"] == "What is the tallest animal?"
    src = tmp_path / "custom.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["q", "a", "note"])
        w.writerow(["multi\nline question", "answer, with comma", "x"])
        w.writerow(["only two", "cells"])
        w.writerow(["too", "many", "cells", "here"])
    result = import_path(str(src), mapping={"instruction": "q", "output": "a", "input": "note"})
    assert result["imported"] == 1  # lines counted in the file: the quoted newline spans 2-3
    assert result["errors"] == [{"line": 4, "error": "row has 2 values but the header has 3 columns"},
                                {"line": 5, "error": "row has 4 values but the header has 3 columns"}]
    assert rows("custom")[0] == {**rows("custom")[0], "instruction": "multi\nline question",
                                 "output": "answer, with comma", "input": "x"}


def test_csv_without_an_output_column_is_one_clear_error(workspace, tmp_path):
    src = tmp_path / "nope.csv"
    src.write_text("title,body\nx,y\n")
    with pytest.raises(TuneLabError, match=r"no column for `instruction`.*columns are title, body"):
        import_path(str(src))
    with pytest.raises(TuneLabError, match=r"no column for `output` \(looked for `answer_text`"):
        import_path(str(src), mapping={"instruction": "title", "output": "answer_text"})


def test_parquet_with_mapping_and_typed_columns(workspace, tmp_path):
    src = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"prompt": ["2+2?", "3*3?", None], "completion": [4, 9, 1]}), src)
    result = import_path(str(src))
    assert result["imported"] == 2 and result["errors"] == [{"line": 2, "error": "missing `prompt`"}]
    assert [r["output"] for r in rows("typed")] == ["4", "9"]  # numbers in a table are text
    mapped = tmp_path / "mapped.parquet"
    pq.write_table(pa.table({"q": ["a"], "a": ["b"], "sys": ["s"]}), mapped)
    import_path(str(mapped), mapping={"instruction": "q", "output": "a", "system": "sys"})
    assert rows("mapped")[0]["system"] == "s"


def test_dataset_info_resolves_files_next_to_it_not_the_cwd(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # file_name must not be looked up here
    result = import_path(str(SAMPLES / "dataset_info.json"))
    names = {d["name"]: d for d in result["datasets"]}
    assert set(names) == {"alpaca_mixed", "sharegpt_tools", "openai_messages", "qa", "dpo_pairs", "kto_feedback"}
    assert names["alpaca_mixed"]["skipped"] == 6 and names["alpaca_mixed"]["imported"] > 250
    reasons = {s["name"]: s["reason"] for s in result["skipped"]}
    assert reasons["alpaca_en_hub"].startswith("hub-only dataset, needs network")
    assert reasons["glaive_toolcall_missing"].startswith("missing file: glaive_toolcall_en_demo.json")
    # tags honoured: role/content/user/assistant/tool names of the OpenAI file
    assert any(r["history"] for r in rows("openai_messages"))


def test_dataset_info_honours_columns_tags_and_names_broken_entries(workspace, tmp_path):
    d = tmp_path / "lf"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"q": "Q1", "ctx": "C", "a": "A1", "sys": "S", "hist": [["u", "v"]],
                                 "system": "ignored: not mapped"}])
    (d / "chat.json").write_text(json.dumps([{"msgs": [
        {"speaker": "me", "text": "hi"}, {"speaker": "bot", "text": "yo"},
        {"speaker": "me", "text": "weather?"}, {"speaker": "fn", "text": "{\"name\": \"w\"}"},
        {"speaker": "obs", "text": "{\"t\": 3}"}, {"speaker": "bot", "text": "3 degrees"}]}]))
    info = {
        "a": {"file_name": "a.jsonl", "columns": {"prompt": "q", "query": "ctx", "response": "a",
                                                  "system": "sys", "history": "hist"}},
        "chat": {"file_name": "chat.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},
                 "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me",
                          "assistant_tag": "bot", "function_tag": "fn", "observation_tag": "obs"}},
        "weird": ["not", "an", "object"],
        "badformat": {"file_name": "a.jsonl", "formatting": "kto"},
        "../evil": {"file_name": "a.jsonl"},
        "ranked": {"file_name": "a.jsonl", "ranking": True},
        "nofile": {"columns": {}},
    }
    (d / "dataset_info.json").write_text(json.dumps(info))
    result = import_path(str(d / "dataset_info.json"))
    assert [x["name"] for x in result["datasets"]] == ["a", "chat"]
    assert rows("a")[0] | {"id": ""} == {"id": "", "instruction": "Q1", "input": "C", "output": "A1",
                                         "system": "S", "history": [["u", "v"]],
                                         "conversations": None, "tools": None,
                                         "chosen": None, "rejected": None, "kto_tag": None}
    chat = rows("chat")[0]
    assert chat["output"] == "3 degrees" and chat["history"] == [["hi", "yo"], ["weather?", '{"name": "w"}']]
    assert [t["from"] for t in json.loads(chat["conversations"])] == [
        "human", "gpt", "human", "function_call", "observation", "gpt"]
    reasons = {s["name"]: s["reason"] for s in result["skipped"]}
    assert set(reasons) == {"weird", "badformat", "../evil", "ranked", "nofile"}
    assert reasons["weird"].startswith("malformed entry")
    assert "unknown formatting 'kto'" in reasons["badformat"]
    assert "invalid dataset name" in reasons["../evil"]
    assert reasons["nofile"] == "malformed entry: no `file_name` (nor a hub url)"


def test_hf_local_dataset_folder(workspace, tmp_path):
    folder = tmp_path / "my_hf_dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)])
    result = import_path(f"hf:{folder}")
    assert result["name"] == "my_hf_dataset" and result["imported"] == 5
    assert rows("my_hf_dataset")[4]["output"] == "a4"
    with pytest.raises(TuneLabError, match="cannot load hf:"):
        import_path(f"hf:{folder}:nosuchsplit", name="x")
    assert not any(Path.home().joinpath(".cache", "huggingface", "datasets").glob("my_hf_dataset*"))


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1; yields (root, base_url)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_import_from_local_http_server(workspace, http_root):
    root, base = http_root
    shutil.copy(SAMPLES / "alpaca_mixed.jsonl", root / "remote data.jsonl")
    result = import_path(f"{base}/remote%20data.jsonl")
    assert result["name"] == "remote_data" and result["imported"] == 293 and result["skipped"] == 6
    assert not list((workspace / "uploads").iterdir())  # the download is deleted afterwards
    with pytest.raises(TuneLabError, match="download failed: HTTP 404"):
        import_path(f"{base}/missing.jsonl")


# --------------------------------------------------------------------------- bad inputs

def test_bom_is_handled_silently(workspace, tmp_path):
    for suffix, body in ((".jsonl", '{"instruction": "a", "output": "b"}\n'),
                         (".json", '[{"instruction": "a", "output": "b"}]'),
                         (".csv", "instruction,output\na,b\n")):
        src = tmp_path / f"bom{suffix.replace('.', '_')}{suffix}"
        src.write_bytes(b"\xef\xbb\xbf" + body.encode())
        result = import_path(str(src))
        assert (result["imported"], result["errors"]) == (1, []), suffix
        assert rows(result["name"])[0]["instruction"] == "a"


def test_invalid_utf8_reported_per_record(workspace, tmp_path):
    src = tmp_path / "bytes.jsonl"
    src.write_bytes(b'{"instruction": "ok", "output": "fine"}\n'
                    b'{"instruction": "caf\xe9", "output": "latin-1 byte"}\n'
                    b'{"instruction": "\\ud800", "output": "lone surrogate escape"}\n')
    result = import_path(str(src))
    assert result["imported"] == 1
    assert result["errors"] == [
        {"line": 2, "error": "invalid UTF-8 in `instruction` (byte 0xe9)"},
        {"line": 3, "error": "`instruction` holds an unpaired surrogate escape (\\ud800)"}]
    csv_src = tmp_path / "bytes.csv"
    csv_src.write_bytes(b"question,answer\ngood,row\nbad \xff,row\n")
    result = import_path(str(csv_src))
    assert result["imported"] == 1 and result["errors"][0]["line"] == 3
    assert result["errors"][0]["error"].startswith("invalid UTF-8")


def test_wrong_types_and_missing_fields(workspace, tmp_path):
    src = write_jsonl(tmp_path / "types.jsonl", [
        {"instruction": "good", "output": "kept"},
        {"instruction": ["a"], "output": "x"},
        {"instruction": "x", "output": {"a": 1}},
        {"instruction": "x", "output": "y", "history": [["only one"]]},
        {"instruction": "x", "output": "y", "history": {"a": "b"}},
        {"instruction": "x", "output": "y", "system": 3},
        {"output": "no instruction"},
        {"conversations": [{"from": "gpt", "value": "starts with the assistant"}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "alien", "value": "?"}]},
        {"messages": []},
        "42",
        "",
        "{not json",
    ])
    result = import_path(str(src))
    assert result["imported"] == 1
    assert [e["error"] for e in result["errors"]] == [
        "`instruction` must be text, not a list",
        "`output` must be text, not an object",
        "`history` is not a list of [user, assistant] pairs (item 1 is not a pair)",
        "`history` is not a list of [user, assistant] pairs (got an object)",
        "`system` must be text, not a number",
        "missing `instruction` (or `conversations`/`messages`)",
        "turns must alternate user and assistant: turn 1 should be user (human/observation), not `gpt`",
        "turn 2 has an unknown role 'alien'",
        "`messages` must be a non-empty list of turns, not a list",
        "expected a JSON object, got a number",
        "malformed JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
    assert [e["line"] for e in result["errors"]] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_ten_megabyte_field_is_kept(workspace, tmp_path, suffix):
    big = "长" * 3_500_000 + "x" * 100  # about 10.5 MB of UTF-8
    recs = [{"instruction": "small", "output": "a"}, {"instruction": "huge", "output": big},
            {"instruction": "after", "output": "b"}]
    src = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        write_jsonl(src, recs)
    elif suffix == ".json":
        src.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    else:
        with open(src, "w", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, ["instruction", "output"]).writeheader()
            csv.DictWriter(fh, ["instruction", "output"]).writerows(recs)
    assert import_path(str(src))["imported"] == 3
    assert rows("big")[1]["output"] == big


def test_oversized_line_is_reported_not_loaded(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(formats.limits, "MAX_RECORD", 1000)
    src = write_jsonl(tmp_path / "over.jsonl", [{"instruction": "a", "output": "b" * 5000},
                                                {"instruction": "c", "output": "d"}])
    result = import_path(str(src))
    assert result["imported"] == 1
    assert result["errors"][0]["line"] == 1
    assert result["errors"][0]["error"].startswith("record is larger than")


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/b", "..", "", "x" * 65, "spaces here"])
def test_path_traversal_names_refused_before_reading(workspace, bad):
    with pytest.raises(TuneLabError, match="invalid dataset name"):
        import_path("/definitely/not/here.jsonl", name=bad)  # the name is checked first
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())


def test_default_name_is_sanitised(workspace, tmp_path):
    src = write_jsonl(tmp_path / "my data (v2).jsonl", [{"instruction": "a", "output": "b"}])
    assert import_path(str(src))["name"] == "my_data_v2"


def test_nothing_importable_is_an_error_and_writes_no_version(workspace, tmp_path):
    src = write_jsonl(tmp_path / "allbad.jsonl", [{"instruction": "x"}, "{oops", {"output": "y"}])
    with pytest.raises(TuneLabError) as exc:
        import_path(str(src))
    assert str(exc.value) == ("nothing imported from allbad.jsonl: 3 records, all invalid "
                              "(line 1: missing `output`)")
    assert not store.exists("allbad")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(TuneLabError, match="empty.jsonl: it holds no records"):
        import_path(str(tmp_path / "empty.jsonl"))


def test_unknown_file_and_format_errors(workspace, tmp_path):
    with pytest.raises(TuneLabError, match="no such file"):
        import_path(str(tmp_path / "missing.jsonl"))
    with pytest.raises(TuneLabError, match="unknown format 'xml'"):
        import_path(str(SAMPLES / "qa.csv"), fmt="xml")
    with pytest.raises(TuneLabError, match="unknown field `answer` in the column mapping"):
        import_path(str(SAMPLES / "qa.csv"), mapping={"answer": "output"})
    (tmp_path / "notes.txt").write_text("just some prose\n")
    with pytest.raises(TuneLabError, match="cannot tell the format of notes.txt"):
        import_path(str(tmp_path / "notes.txt"))
    (tmp_path / "u16.json").write_bytes('[{"instruction": "a"}]'.encode("utf-16"))
    with pytest.raises(TuneLabError, match="UTF-16"):
        import_path(str(tmp_path / "u16.json"))


def test_reimport_makes_a_new_version_with_lineage(workspace, tmp_path):
    src = write_jsonl(tmp_path / "ds.jsonl", [{"instruction": "a", "output": "1"}])
    import_path(str(src))
    write_jsonl(src, [{"instruction": "b", "output": "2"}, {"instruction": "c", "output": "3"}])
    result = import_path(str(src))
    assert result["version"] == 2
    m = store.manifest("ds")
    assert m["versions"][1]["parent"] == 1 and m["versions"][1]["params"]["imported"] == 2
    assert [r["instruction"] for r in rows("ds")] == ["b", "c"]  # the new version replaces
    store.undo("ds")
    assert [r["instruction"] for r in rows("ds")] == ["a"]


def test_errors_list_is_capped_but_all_counted(workspace, tmp_path):
    src = write_jsonl(tmp_path / "many.jsonl", [{"instruction": "x"}] * 1500 + [{"instruction": "a", "output": "b"}])
    result = import_path(str(src))
    assert result["skipped"] == 1500 and len(result["errors"]) == 1000 and result["imported"] == 1


@pytest.mark.skipif(not (REPO / "src" / "tunelab" / "data" / "cli.py").exists(), reason="data CLI not written yet")
def test_cli_import_end_to_end(workspace, tmp_path):
    env = {**os.environ, "TUNELAB_HOME": str(workspace)}
    cmd = [sys.executable, "-m", "tunelab", "data", "import"]
    out = subprocess.run(cmd + [str(SAMPLES / "alpaca_mixed.jsonl"), "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["imported"] == 293
    bad = subprocess.run(cmd + [str(SAMPLES / "qa.csv"), "--name", "../x", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid dataset name")
    assert "Traceback" not in bad.stderr
