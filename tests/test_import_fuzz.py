"""Property tests: thousands of malformed records per importer; no crash, every bad one reported
with its line/index, every good one kept unchanged and in order."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.data import formats, store
from tunelab.data.importer import import_path
from tunelab.errors import TuneLabError

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(max_size=30)
pair = st.tuples(text, text).map(list)
good_record = st.fixed_dictionaries(
    {"instruction": text, "output": text},
    optional={"input": text, "system": text, "history": st.lists(pair, max_size=3)})
wrong_type = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                       st.dictionaries(text, st.integers(), max_size=2))
bad_history = st.one_of(st.integers(), text, st.lists(st.tuples(text), min_size=1, max_size=2),
                        st.lists(st.tuples(text, st.integers()), min_size=1, max_size=2))


@st.composite
def bad_record(draw):
    """A record that is valid JSON but cannot be imported (one field wrong or missing)."""
    rec = draw(good_record)
    how = draw(st.sampled_from(["drop", "type", "history", "not-object"]))
    if how == "drop":
        rec.pop(draw(st.sampled_from(["instruction", "output"])))
    elif how == "type":
        rec[draw(st.sampled_from(["instruction", "output", "input", "system"]))] = draw(wrong_type)
    elif how == "history":
        rec["history"] = draw(bad_history)
    else:
        return draw(st.one_of(wrong_type, st.lists(good_record, min_size=1, max_size=2)))
    return rec


def expected(rec: dict) -> dict:
    return {"instruction": rec["instruction"], "input": rec.get("input", ""), "output": rec["output"],
            "system": rec.get("system", ""), "history": [list(p) for p in rec.get("history", [])]}


def stored(name: str) -> list[dict]:
    keys = ("instruction", "input", "output", "system", "history")
    return [{k: r[k] for k in keys} for r in store.read(name).to_pylist()]


def check(path: Path, goods: list[dict], bads: list[int]) -> None:
    """Import path: goods kept in order, exactly the bads reported (or nothing imported at all)."""
    try:
        result = import_path(str(path), name="fz")
    except TuneLabError as exc:
        assert not goods, exc
        assert "nothing imported" in str(exc)
        return
    assert [e["line"] for e in result["errors"]] == bads
    assert all(e["error"] for e in result["errors"])
    assert (result["imported"], result["skipped"]) == (len(goods), len(bads))
    assert stored("fz") == [expected(g) for g in goods]


# --------------------------------------------------------------------------- JSONL

bad_line = st.one_of(
    bad_record().map(lambda r: json.dumps(r, ensure_ascii=False).encode()),
    text.filter(lambda s: "\n" not in s and s.strip()).map(str.encode),  # never a valid record
    good_record.map(lambda r: json.dumps(r).encode()[:-1]),  # truncated JSON
    good_record.map(lambda r: json.dumps({**r, "instruction": r["instruction"] + "\udc80"},
                                         ensure_ascii=True).encode()),  # \udc80 escape: lone surrogate
    good_record.map(lambda r: json.dumps(r, ensure_ascii=False).encode()
                    .replace(b'"instruction": "', b'"instruction": "\xff', 1)),  # invalid UTF-8 byte
)


@SETTINGS
@given(lines=st.lists(st.one_of(good_record.map(lambda r: ("good", r)), bad_line.map(lambda b: ("bad", b))),
                      min_size=1, max_size=30), bom=st.booleans())
def test_jsonl_fuzz(workspace, tmp_path, lines, bom):
    path = tmp_path / "fz.jsonl"
    body = b"\n".join(json.dumps(x, ensure_ascii=False).encode() if kind == "good" else x for kind, x in lines)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body + b"\n")
    check(path, [x for kind, x in lines if kind == "good"],
          [i for i, (kind, _) in enumerate(lines, 1) if kind == "bad"])


# --------------------------------------------------------------------------- JSON array

broken_element = st.sampled_from(['{"instruction" "x", "output": "y"}', '{,}', '[1 2]', 'tru', 'nul', '{"a": }',
                                  '{"instruction": "x", "output": "y",}', "'single'", '{"x": [1, {"y": 2]}'])


@SETTINGS
@given(items=st.lists(st.one_of(good_record.map(lambda r: ("good", r)), bad_record().map(lambda r: ("bad", r)),
                                broken_element.map(lambda s: ("broken", s))), min_size=1, max_size=25),
       chunk=st.integers(min_value=3, max_value=200), indent=st.sampled_from([None, 1]))
def test_json_array_fuzz(workspace, tmp_path, items, chunk, indent):
    """Small chunks put element and token boundaries everywhere; malformed elements are skipped."""
    parts = [json.dumps(x, ensure_ascii=False, indent=indent) if kind != "broken" else x for kind, x in items]
    path = tmp_path / "fz.json"
    path.write_text("[\n" + ",\n".join(parts) + "\n]", encoding="utf-8")
    old, formats.limits.CHUNK = formats.limits.CHUNK, chunk
    try:
        check(path, [x for kind, x in items if kind == "good"],
              [i for i, (kind, _) in enumerate(items) if kind != "good"])
    finally:
        formats.limits.CHUNK = old


# --------------------------------------------------------------------------- CSV

MARK = "\ue000"  # replaced by an invalid UTF-8 byte in the file
cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + MARK),
               max_size=20)


@SETTINGS
@given(rows=st.lists(st.one_of(st.tuples(cell, cell).map(lambda r: ("good", list(r))),
                               st.lists(cell, min_size=3, max_size=4).map(lambda r: ("bad", r)),
                               st.tuples(cell, cell).map(lambda r: ("bad", [MARK + r[0], r[1]]))),
                     min_size=1, max_size=30))
def test_csv_fuzz(workspace, tmp_path, rows):
    buf = io.StringIO()
    writer = csv.writer(buf)  # "\r\n" line ends: cells holding \r or \n get quoted
    writer.writerow(["question", "answer"])
    goods, bads = [], []
    for kind, row in rows:
        line = 1 + len(re.findall(r"\r\n|\r|\n", buf.getvalue()))
        writer.writerow(row)
        if kind == "good":
            goods.append({"instruction": row[0], "output": row[1]})
        else:
            bads.append(line)
    path = tmp_path / "fz.csv"
    path.write_bytes(buf.getvalue().encode().replace(MARK.encode(), b"\xff"))
    check(path, goods, bads)


# --------------------------------------------------------------------------- ShareGPT turns

ROLES = ["human", "gpt", "function_call", "observation", "system", "user", "assistant", "tool", "wizard"]
turn = st.fixed_dictionaries({"from": st.sampled_from(ROLES), "value": st.one_of(text, text, text, st.integers())})


def valid_turns(turns: list[dict]) -> bool:
    """An independent statement of the rule: optional leading system, then user/assistant pairs."""
    canon = {"user": "human", "assistant": "gpt", "tool": "observation"}
    roles = [canon.get(t["from"], t["from"]) for t in turns]
    if any(not isinstance(t["value"], str) for t in turns) or "wizard" in roles:
        return False
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles or len(roles) % 2:
        return False
    return all(r in ("human", "observation") for r in roles[0::2]) and \
        all(r in ("gpt", "function_call") for r in roles[1::2])


@SETTINGS
@given(convs=st.lists(st.lists(turn, min_size=0, max_size=6), min_size=1, max_size=20))
def test_sharegpt_fuzz(workspace, tmp_path, convs):
    path = tmp_path / "fz.json"
    path.write_text(json.dumps([{"conversations": c} for c in convs], ensure_ascii=False), encoding="utf-8")
    oks = [c for c in convs if valid_turns(c)]
    try:
        result = import_path(str(path), name="fz")
    except TuneLabError:
        assert not oks
        return
    assert [e["line"] for e in result["errors"]] == [i for i, c in enumerate(convs) if not valid_turns(c)]
    got = store.read("fz").to_pylist()
    assert len(got) == len(oks)
    for rec, conv in zip(got, oks):
        body = conv[1:] if conv[0]["from"] == "system" else conv
        assert rec["output"] == body[-1]["value"] and rec["instruction"] == body[-2]["value"]
        assert len(rec["history"]) == len(body) // 2 - 1
        assert [t["value"] for t in json.loads(rec["conversations"])] == [t["value"] for t in body]


# --------------------------------------------------------------------------- arbitrary bytes

@SETTINGS
@given(data=st.one_of(st.binary(max_size=300),
                      st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"\n", b":", b"\xff",
                                                b'"instruction"', b'"output"', b'"x"', b"1", b" ", b"\xef\xbb\xbf"]),
                               max_size=60).map(b"".join)),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ".txt"]))
def test_arbitrary_bytes_never_crash(workspace, tmp_path, data, suffix):
    path = tmp_path / f"fz{suffix}"
    path.write_bytes(data)
    try:
        result = import_path(str(path), name="fz")
    except TuneLabError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert result["imported"] >= 1 and result["skipped"] == len(result["errors"])


@pytest.mark.parametrize("depth", [50_000])
def test_deep_nesting_is_reported(workspace, tmp_path, depth):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"instruction": "ok", "output": "fine"}\n' + "[" * depth + "]" * depth + "\n")
    result = import_path(str(path))
    assert result["imported"] == 1 and result["errors"][0]["line"] == 2


# --------------------------------------------------------------------------- OpenAI messages, Parquet, dataset_info.json

role = st.sampled_from(["system", "user", "assistant", "tool", "wizard", "", None])
message = st.one_of(
    st.fixed_dictionaries({"role": role, "content": st.one_of(text, st.none(), st.integers())}),
    wrong_type,
)


@SETTINGS
@given(convs=st.lists(st.one_of(st.lists(message, max_size=5), wrong_type), min_size=1, max_size=20))
def test_openai_messages_fuzz(workspace, tmp_path, convs):
    """Arbitrary message lists: never a crash; every line is imported or reported, never both or neither."""
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({"messages": c}) for c in convs) + "\n", encoding="utf-8")
    try:
        result = import_path(str(path), name="fz", fmt="messages")
    except TuneLabError as exc:
        assert "nothing imported" in str(exc) or "\n" not in str(exc)
        return
    assert result["imported"] + result["skipped"] == len(convs)
    assert len({e["line"] for e in result["errors"]}) == result["skipped"]
    assert store.read("fz").num_rows == result["imported"]


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({"instruction": st.one_of(text, st.none()),
                                            "output": st.one_of(text, st.none())}), min_size=1, max_size=20))
def test_parquet_fuzz(workspace, tmp_path, rows):
    """Parquet with nulls in either column: rows with both texts are kept, the others reported by index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"instruction": [r["instruction"] for r in rows],
                             "output": [r["output"] for r in rows]}), path)
    try:
        result = import_path(str(path), name="fz")
    except TuneLabError as exc:
        assert "\n" not in str(exc)
        return
    assert result["imported"] + result["skipped"] == len(rows)
    assert store.read("fz").num_rows == result["imported"]


entry = st.one_of(
    wrong_type,
    st.fixed_dictionaries({}, optional={
        "file_name": st.one_of(st.sampled_from(["a.jsonl", "missing.json", "../a.jsonl", ""]), st.integers()),
        "hf_hub_url": text, "formatting": st.one_of(st.sampled_from(["alpaca", "sharegpt", "bogus"]), st.integers()),
        "columns": st.one_of(st.dictionaries(st.sampled_from(["prompt", "response", "query", "messages"]), text),
                             wrong_type)}),
)


@SETTINGS
@given(entries=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), entry, min_size=1, max_size=6))
def test_dataset_info_fuzz(workspace, tmp_path, entries):
    """Malformed LLaMA-Factory entries: never a crash; each entry is imported or named as skipped."""
    folder = tmp_path / "lf"
    folder.mkdir(exist_ok=True)
    (folder / "a.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n", encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")
    try:
        result = import_path(str(folder / "dataset_info.json"))
    except TuneLabError as exc:
        assert "\n" not in str(exc)
        return
    named = {d["name"] for d in result["datasets"]} | {s["name"] for s in result["skipped"]}
    assert named == set(entries)
    assert all(s["reason"] for s in result["skipped"])
