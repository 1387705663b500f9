"""Export: every format, import(export(x)) == x where the format can hold x, LLaMA-Factory folders."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tunelab.data import store
from tunelab.data.export import export
from tunelab.data.importer import import_path
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
FIELDS = ("instruction", "input", "output", "system", "history")


def content(name: str, keys=FIELDS) -> list[tuple]:
    return [tuple(json.dumps(r[k], ensure_ascii=False) for k in keys) for r in store.read(name).to_pylist()]


@pytest.fixture
def samples(workspace):
    """The shipped samples imported: alpaca_mixed, sharegpt_tools, openai_messages, qa, dpo_pairs, kto_feedback."""
    import_path(str(SAMPLES / "dataset_info.json"))
    return workspace


@pytest.mark.parametrize("name", ["alpaca_mixed", "sharegpt_tools", "openai_messages", "qa"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_lossless_formats_round_trip_exactly(samples, name, fmt):
    out = export(name, f"{name}.{fmt}", fmt)
    assert out["records"] == store.read(name).num_rows and out["path"].startswith(str(samples))
    import_path(out["path"], name="back")
    assert store.read("back").to_pylist() == store.read(name).to_pylist()  # ids, turns, tools too


@pytest.mark.parametrize("name", ["alpaca_mixed", "qa"])
def test_alpaca_round_trip(samples, name):
    out = export(name, "a.json", "alpaca")
    data = json.loads(Path(out["path"]).read_text(encoding="utf-8"))
    assert all(set(r) <= {"instruction", "input", "output", "system", "history"} for r in data)
    assert any("history" in r for r in data) if name == "alpaca_mixed" else True
    import_path(out["path"], name="back")
    assert content("back") == content(name)


@pytest.mark.parametrize("name", ["sharegpt_tools", "openai_messages"])
def test_sharegpt_round_trip_keeps_every_turn(samples, name):
    out = export(name, "s.json", "sharegpt")
    data = json.loads(Path(out["path"]).read_text(encoding="utf-8"))
    assert all(set(r) == {"conversations", "system", "tools"} for r in data)
    roles = {t["from"] for r in data for t in r["conversations"]}
    assert {"function_call", "observation"} <= roles
    import_path(out["path"], name="back")
    keys = FIELDS + ("conversations", "tools")
    assert content("back", keys) == content(name, keys)


def test_sharegpt_export_of_alpaca_records(samples):
    """Alpaca records become human/gpt turns with history first; input joins the instruction."""
    store.commit("plain", store.read("alpaca_mixed").filter(
        pa.compute.equal(store.read("alpaca_mixed")["input"], "")), op="test")
    out = export("plain", "plain.json", "sharegpt")
    import_path(out["path"], name="back")
    assert content("back") == content("plain")  # no input field: ShareGPT holds it all
    data = json.loads(Path(out["path"]).read_text(encoding="utf-8"))
    with_history = next(r for r in data if len(r["conversations"]) > 2)
    assert [t["from"] for t in with_history["conversations"]][:2] == ["human", "gpt"]
    with_input = next(r for r in store.read("alpaca_mixed").to_pylist() if r["input"])
    store.commit("inp", pa.Table.from_pylist([with_input], schema=store.SCHEMA), op="test")
    turns = json.loads(Path(export("inp", "i.json", "sharegpt")["path"]).read_text())[0]["conversations"]
    assert turns[-2]["value"] == f"{with_input['instruction']}\n{with_input['input']}"


def test_sharegpt_export_follows_edits_of_the_fields(samples):
    """After an edit (e.g. PII redaction) the stored turns are stale: export must use the fields."""
    table = store.read("sharegpt_tools")
    recs = table.to_pylist()
    recs[0]["output"] = "[REDACTED]"
    store.commit("sharegpt_tools", pa.Table.from_pylist(recs, schema=store.SCHEMA), op="clean")
    data = json.loads(Path(export("sharegpt_tools", "e.json", "sharegpt")["path"]).read_text())
    assert data[0]["conversations"][-1] == {"from": "gpt", "value": "[REDACTED]"}
    assert data[1]["conversations"][1]["from"] == "function_call"  # untouched records keep their turns


@pytest.mark.parametrize("name,formatting", [("alpaca_mixed", "alpaca"), ("sharegpt_tools", "sharegpt")])
def test_llamafactory_folder(samples, name, formatting, tmp_path):
    out = export(name, "lf", "llamafactory")
    folder = Path(out["path"])
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info[name]["file_name"] == f"{name}.json" and info[name]["formatting"] == formatting
    # LLaMA-Factory loads the file with `datasets`' JSON builder: it must give consistent columns
    import datasets

    ds = datasets.load_dataset("json", data_files=str(folder / f"{name}.json"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == out["records"]
    column = info[name]["columns"]["messages" if formatting == "sharegpt" else "prompt"]
    assert column in ds.column_names
    result = import_path(str(folder / "dataset_info.json"))
    assert result["skipped"] == [] and result["datasets"][0]["version"] == 2
    keys = FIELDS + (("conversations", "tools") if formatting == "sharegpt" else ())
    v1, v2 = ([tuple(json.dumps(r[k], ensure_ascii=False) for k in keys)
               for r in store.read(name, v).to_pylist()] for v in (1, 2))
    assert v2 == v1


def test_llamafactory_export_keeps_other_entries(samples):
    export("qa", "lf", "llamafactory")
    export("sharegpt_tools", "lf", "llamafactory")
    info = json.loads((samples / "exports" / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"qa", "sharegpt_tools"}


def test_export_version_and_paths(samples, tmp_path):
    import_path(str(SAMPLES / "qa.csv"), name="qa")  # v2 replaces v1 with the same rows
    assert export("qa", "v1.jsonl", "jsonl", version=1)["version"] == 1
    inside = samples / "elsewhere" / "x.json"
    assert export("qa", str(inside))["path"] == str(inside)
    for bad in ("/etc/x.json", str(tmp_path / "x.json"), "../../x.json"):
        with pytest.raises(TuneLabError, match="outside the workspace"):
            export("qa", bad)
    with pytest.raises(TuneLabError, match="unknown export format 'xml'"):
        export("qa", "x.xml", "xml")
    with pytest.raises(TuneLabError, match="unknown dataset"):
        export("nope", "x.json")
    with pytest.raises(TuneLabError, match="no version 9"):
        export("qa", "x.json", version=9)
    with pytest.raises(TuneLabError, match="invalid dataset name"):
        export("../qa", "x.json")
