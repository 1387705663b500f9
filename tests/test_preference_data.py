"""Preference data (issue 13, item 1): pairs and KTO records imported from LLaMA-Factory's ranking
and KTO layouts and the common Hugging Face ones, with exact counts and bad records named; then
browse, search, SQL, stats, clean, split and export over them, and back to LLaMA-Factory losslessly."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pagetest import html, open_page, texts

from tunelab.data import browse, clean, export, search, split, sql, stats, store
from tunelab.data.importer import import_path
from tunelab.data.schema import FIELDS, to_table
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
CONTENT = tuple(f for f in FIELDS if f != "id")  # what a round trip must keep (ids are regenerated)


def rows(name: str, version: int | None = None) -> list[dict]:
    return store.read(name, version).to_pylist()


def content(name: str, version: int | None = None) -> list[tuple]:
    return [tuple(json.dumps(r[k], ensure_ascii=False) for k in CONTENT) for r in rows(name, version)]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def errors(result: dict) -> list[tuple[int, str]]:
    return [(e["line"], e["error"]) for e in result["errors"]]


@pytest.fixture
def samples(workspace):
    """The shipped data/samples/dataset_info.json imported, by dataset name."""
    result = import_path(str(SAMPLES / "dataset_info.json"))
    return {d["name"]: d for d in result["datasets"]}


# --------------------------------------------------------------------------- import: LLaMA-Factory

def test_llamafactory_ranking_and_kto_samples_import_exactly(samples):
    pairs, kto = samples["dpo_pairs"], samples["kto_feedback"]
    assert (pairs["imported"], pairs["skipped"]) == (20, 2)
    assert errors(pairs) == [(20, "`chosen` and `rejected` are the same answer"),
                             (21, "missing `rejected` (a preference pair needs both `chosen` and `rejected`)")]
    recs = rows("dpo_pairs")
    assert all(r["chosen"] and r["rejected"] and r["output"] == r["chosen"] and r["kto_tag"] is None
               for r in recs)
    first = recs[0]
    assert (first["instruction"], first["chosen"], first["rejected"]) == (
        "What is the capital of Australia?", "The capital of Australia is Canberra.",
        "The capital of Australia is Sydney.")
    zh = next(r for r in recs if r["instruction"] == "中国的首都是哪里？")
    assert (zh["chosen"], zh["rejected"]) == ("中国的首都是北京。", "中国的首都是上海。")
    follow_up = next(r for r in recs if r["instruction"] == "那它在标准大气压下的沸点呢？")
    assert follow_up["history"] == [["水的化学式是什么？", "水的化学式是 H₂O。"]]
    assert next(r for r in recs if r["system"] == "你是一位耐心的老师。")["chosen"].startswith("每天固定")
    assert sum(1 for r in recs if any("\u4e00" <= c <= "\u9fff" for c in r["instruction"])) == 8

    assert (kto["imported"], kto["skipped"]) == (10, 1)
    assert errors(kto) == [(10, "`label` must be true or false, not text")]
    tags = [r["kto_tag"] for r in rows("kto_feedback")]
    assert tags == [True, False] * 5
    assert all(r["chosen"] is None and r["rejected"] is None for r in rows("kto_feedback"))
    # the SFT samples are untouched by the new fields
    assert all(r["chosen"] is None and r["kto_tag"] is None for r in rows("alpaca_mixed"))


def test_llamafactory_alpaca_ranking_and_kto_entries(workspace, tmp_path):
    d = tmp_path / "lf"
    d.mkdir()
    write_jsonl(d / "pairs.jsonl", [
        {"q": "Capital of Italy?", "ctx": "", "good": "Rome.", "bad": "Milan.", "sys": "Be brief."},
        {"q": "plain record", "output": "no pair here"},                      # bad: a ranking entry
        {"q": "types", "good": ["Rome"], "bad": "Milan."},                     # bad: a list, not text
        {"q": "empty", "good": "   ", "bad": "Milan."},                        # bad: empty answer
        {"q": "2+2?", "good": "4", "bad": "5", "kto_tag": True},               # bad: both kinds
    ])
    write_jsonl(d / "kto.jsonl", [
        {"instruction": "Say hi", "output": "Hello!", "label": True},
        {"instruction": "Say hi", "output": "Go away.", "label": False},
        {"instruction": "Say hi", "output": "Hi."},                            # bad: no label
        {"instruction": "Say hi", "output": "Hey.", "label": "maybe"},         # bad: not true/false
    ])
    (d / "dataset_info.json").write_text(json.dumps({
        "pairs": {"file_name": "pairs.jsonl", "ranking": True,
                  "columns": {"prompt": "q", "query": "ctx", "chosen": "good", "rejected": "bad",
                              "system": "sys"}},
        "kto": {"file_name": "kto.jsonl", "columns": {"kto_tag": "label"}},
    }))
    result = {d["name"]: d for d in import_path(str(d / "dataset_info.json"))["datasets"]}
    assert (result["pairs"]["imported"], result["pairs"]["skipped"]) == (1, 4)
    assert errors(result["pairs"]) == [
        (2, "missing `good` (a preference pair needs both `good` and `bad`)"),
        (3, "turn 1 of `good` is text, expected an object"),
        (4, "`good` is empty"),
        (5, "a record is a pair or a KTO record, not both (it has `kto_tag`)")]
    assert rows("pairs")[0] | {"id": ""} == {
        "id": "", "instruction": "Capital of Italy?", "input": "", "output": "Rome.", "system": "Be brief.",
        "history": [], "conversations": None, "tools": None, "chosen": "Rome.", "rejected": "Milan.",
        "kto_tag": None}
    assert (result["kto"]["imported"], result["kto"]["skipped"]) == (2, 2)
    assert errors(result["kto"]) == [(3, "missing `label`"), (4, "`label` must be true or false, not text")]
    assert [(r["output"], r["kto_tag"]) for r in rows("kto")] == [("Hello!", True), ("Go away.", False)]


# --------------------------------------------------------------------------- import: Hugging Face layouts

def test_prompt_chosen_rejected_strings_jsonl_csv_and_parquet(workspace, tmp_path):
    recs = [{"prompt": "Capital of Japan?", "chosen": "Tokyo.", "rejected": "Kyoto."},
            {"prompt": "机器学习是什么？", "chosen": "让计算机从数据中学习的方法。", "rejected": "一种洗衣机。"},
            {"prompt": "same", "chosen": "x", "rejected": "x"},
            {"prompt": "no rejected", "chosen": "x"},
            {"chosen": "a", "rejected": "b"}]
    result = import_path(str(write_jsonl(tmp_path / "pairs.jsonl", recs)))
    assert (result["imported"], result["skipped"]) == (2, 3)
    assert errors(result) == [(3, "`chosen` and `rejected` are the same answer"),
                              (4, "missing `rejected` (a preference pair needs both `chosen` and `rejected`)"),
                              (5, "missing the prompt: `instruction`, `prompt` or `conversations`")]
    assert [(r["instruction"], r["chosen"], r["rejected"]) for r in rows("pairs")] == [
        ("Capital of Japan?", "Tokyo.", "Kyoto."), ("机器学习是什么？", "让计算机从数据中学习的方法。", "一种洗衣机。")]

    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\nCapital of Japan?,Tokyo.,Kyoto.\nq,a,\n",
                                        encoding="utf-8")
    result = import_path(str(tmp_path / "pairs.csv"), name="pairs_csv")
    assert (result["imported"], errors(result)) == (1, [(3, "`rejected` is empty")])

    pq.write_table(pa.table({"question": ["Capital of Japan?", "q"], "chosen": ["Tokyo.", "same"],
                             "rejected": ["Kyoto.", "same"]}), tmp_path / "pairs.parquet")
    result = import_path(str(tmp_path / "pairs.parquet"), name="pairs_pq")
    assert (result["imported"], errors(result)) == (1, [(1, "`chosen` and `rejected` are the same answer")])
    assert rows("pairs_pq")[0]["chosen"] == "Tokyo."


def test_ultrafeedback_message_lists_and_trl_conversational(workspace, tmp_path):
    def msgs(*turns):
        return [{"role": r, "content": c} for r, c in turns]

    recs = [
        {"prompt": "Name a prime.", "prompt_id": "p1",
         "chosen": msgs(("user", "Name a prime."), ("assistant", "7 is prime.")),
         "rejected": msgs(("user", "Name a prime."), ("assistant", "9 is prime.")),
         "messages": msgs(("user", "Name a prime."), ("assistant", "7 is prime.")),
         "score_chosen": 9.0, "score_rejected": 2.0},
        {"prompt": "Go on",  # multi-turn with a system prompt: the earlier turns are the prompt
         "chosen": msgs(("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Go on"),
                        ("assistant", "Sure, happy to help.")),
         "rejected": msgs(("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Go on"),
                          ("assistant", "No."))},
        {"prompt": msgs(("user", "Sky colour?")),  # TRL's conversational layout
         "chosen": msgs(("assistant", "Blue.")), "rejected": msgs(("assistant", "Green."))},
        {"prompt": "x", "chosen": msgs(("user", "x"), ("assistant", "a")),
         "rejected": msgs(("user", "y"), ("assistant", "b"))},
        {"prompt": "x", "chosen": msgs(("user", "x"), ("user", "a")), "rejected": msgs(("user", "x"), ("assistant", "b"))},
    ]
    result = import_path(str(write_jsonl(tmp_path / "uf.jsonl", recs)))
    assert (result["imported"], result["skipped"]) == (3, 2)
    assert errors(result) == [
        (4, "`chosen` and `rejected` continue different conversations (their turns before the answer differ)"),
        (5, "the answer in `chosen` must be an assistant turn, not `human`")]
    got = rows("uf")
    assert [(r["instruction"], r["chosen"], r["rejected"]) for r in got] == [
        ("Name a prime.", "7 is prime.", "9 is prime."), ("Go on", "Sure, happy to help.", "No."),
        ("Sky colour?", "Blue.", "Green.")]
    assert got[1]["system"] == "Be kind." and got[1]["history"] == [["Hi", "Hello!"]]


def test_hh_rlhf_transcripts_share_the_prompt(workspace, tmp_path):
    recs = [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\n"
                   "Assistant: Why did the scarecrow win an award? He was outstanding in his field.",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\n"
                     "Assistant: No."},
        {"chosen": "\n\nHuman: 你好\n\nAssistant: 你好！", "rejected": "\n\nHuman: 你好\n\nAssistant: 走开。"},
        {"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: C\n\nAssistant: D"},
        {"chosen": "\n\nHuman: A\n\nHuman: again\n\nAssistant: B", "rejected": "\n\nHuman: A\n\nHuman: again\n\nAssistant: C"},
        {"chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C", "rejected": "\n\nHuman: A\n\nAssistant: D"},
    ]
    result = import_path(str(write_jsonl(tmp_path / "hh.jsonl", recs)))
    assert (result["imported"], result["skipped"]) == (2, 3)
    assert errors(result) == [
        (3, "`chosen` and `rejected` continue different conversations (their turns before the answer differ)"),
        (4, "turns must alternate user and assistant: turn 2 should be assistant (gpt/function_call), not `human`"),
        (5, "the transcript in `chosen` must end with an Assistant turn")]
    first, second = rows("hh")
    assert first["history"] == [["Hi", "Hello! How can I help?"]] and first["instruction"] == "Tell me a joke"
    assert first["chosen"].endswith("outstanding in his field.") and first["rejected"] == "No."
    assert (second["instruction"], second["chosen"], second["rejected"]) == ("你好", "你好！", "走开。")


def test_trl_unpaired_kto_and_kto_tag_field(workspace, tmp_path):
    recs = [{"prompt": "2+2?", "completion": "4", "label": True},
            {"prompt": "2+2?", "completion": "5", "label": False},
            {"prompt": [{"role": "user", "content": "3+3?"}],
             "completion": [{"role": "assistant", "content": "6"}], "label": True},
            {"prompt": "2+2?", "completion": "22", "label": "no"},
            {"prompt": "2+2?", "completion": "four"}]
    result = import_path(str(write_jsonl(tmp_path / "unpaired.jsonl", recs)))
    assert (result["imported"], result["skipped"]) == (3, 2)
    assert errors(result) == [(4, "`label` must be true or false, not text"), (5, "missing `label`")]
    assert [(r["instruction"], r["output"], r["kto_tag"]) for r in rows("unpaired")] == [
        ("2+2?", "4", True), ("2+2?", "5", False), ("3+3?", "6", True)]
    # a `kto_tag` field in any layout (here ShareGPT turns)
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    result = import_path(str(write_jsonl(tmp_path / "tagged.jsonl", [
        {"conversations": turns, "kto_tag": True}, {"conversations": turns, "kto_tag": 1},
        {"conversations": turns}])))
    assert (result["imported"], errors(result)) == (1, [(2, "`kto_tag` must be true or false, not a number"),
                                                        (3, "missing `kto_tag`")])


# --------------------------------------------------------------------------- the store's other verbs on pairs

def test_browse_search_sql_and_stats_see_both_answers(samples):
    page = browse.show("dpo_pairs", limit=2)["records"]
    assert page[0]["chosen"] == "The capital of Australia is Canberra."
    assert page[0]["rejected"] == "The capital of Australia is Sydney."
    assert "chosen" not in browse.show("alpaca_mixed", limit=1)["records"][0]  # plain records print as before
    kto = browse.show("kto_feedback", limit=2)["records"]
    assert [r["kto_tag"] for r in kto] == [True, False]

    for method in ("fts", "scan"):
        hits = search.search("dpo_pairs", "Sydney", field="rejected", method=method)
        assert hits["total"] == 1 and hits["records"][0]["chosen"] == "The capital of Australia is Canberra."
        assert search.search("dpo_pairs", "Sydney", field="chosen", method=method)["total"] == 0
        assert search.search("dpo_pairs", "上海", method=method)["records"][0]["rejected"] == "中国的首都是上海。"

    out = sql.sql("SELECT count(*) FILTER (WHERE chosen IS NOT NULL), count(*) FILTER (WHERE kto_tag) "
                  "FROM dpo_pairs, (SELECT 1) UNION ALL SELECT count(*) FILTER (WHERE chosen IS NOT NULL), "
                  "count(*) FILTER (WHERE kto_tag) FROM kto_feedback")
    assert out["rows"] == [[20, 0], [0, 5]]

    s = stats.stats("dpo_pairs", tokenizer=stats.rough_counter())
    pref = s["preference"]
    assert pref["pairs"] == 20 and (pref["kto_desirable"], pref["kto_undesirable"]) == (0, 0)
    assert pref["chosen_tokens"]["max"] >= pref["chosen_tokens"]["p50"] > pref["rejected_tokens"]["p50"] > 0
    assert 0.5 < pref["chosen_longer"] <= 1.0 and s["records"] == 20
    k = stats.stats("kto_feedback", tokenizer=stats.rough_counter())["preference"]
    assert (k["pairs"], k["kto_desirable"], k["kto_undesirable"]) == (0, 5, 5)
    assert stats.stats("qa", tokenizer=stats.rough_counter())["preference"]["pairs"] == 0


def test_clean_and_split_keep_pairs(workspace, tmp_path):
    recs = [{"prompt": " Capital of Japan? ", "chosen": " Tokyo. ", "rejected": "Kyoto."},
            {"prompt": "Capital of Japan?", "chosen": "Tokyo.", "rejected": "Osaka."},  # another pair
            {"prompt": "Capital of Japan?", "chosen": "Tokyo.", "rejected": "Osaka."},  # its duplicate
            {"prompt": "Mail me", "chosen": "at a@b.com", "rejected": "no"}]
    recs += [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    import_path(str(write_jsonl(tmp_path / "p.jsonl", recs)))
    result = clean.clean("p", dedup="exact", strip=True, redact_pii=True)
    assert result["removed"] == {"stripped": 1, "redacted_email": 1, "duplicate_exact": 1}
    got = rows("p")
    assert len(got) == 9 and (got[0]["chosen"], got[0]["output"]) == ("Tokyo.", "Tokyo.")
    assert [r["rejected"] for r in got[:2]] == ["Kyoto.", "Osaka."]
    assert got[2]["chosen"] == got[2]["output"] == "at [EMAIL]"

    out = split.split("p", test_size=3, seed=1)
    assert (out["train"]["records"], out["test"]["records"]) == (6, 3)
    both = rows("p-train") + rows("p-test")
    assert sorted((r["chosen"], r["rejected"]) for r in both) == sorted((r["chosen"], r["rejected"]) for r in got)


def test_versions_written_before_the_preference_fields_still_read(workspace):
    """A v1.parquet without chosen/rejected/kto_tag (as written before them) works everywhere."""
    store.commit("old", to_table([{"instruction": "Hi", "output": "Greetings, traveller"}]), "import")
    path = store.version_path("old")
    old = pq.read_table(path).select(list(FIELDS[:8]))  # drop the new columns, as an old file has none
    pq.write_table(old, path)
    assert pq.read_schema(path).names == list(FIELDS[:8])
    assert store.read("old").column_names == list(FIELDS) and rows("old")[0]["chosen"] is None
    assert browse.show("old")["records"][0]["output"] == "Greetings, traveller"
    assert search.search("old", "traveller", method="fts")["total"] == 1
    assert search.search("old", "traveller", field="chosen", method="scan")["total"] == 0
    assert sql.sql("SELECT instruction, chosen, rejected, kto_tag FROM old")["rows"] == [["Hi", None, None, None]]
    assert stats.stats("old", tokenizer=stats.rough_counter())["preference"]["pairs"] == 0
    exported = export.export("old", "old.parquet", "parquet")
    assert pq.read_schema(exported["path"]).names == list(FIELDS)
    assert export.export("old", "lf-old", "llamafactory")["records"] == 1


# --------------------------------------------------------------------------- export and round trips

@pytest.mark.parametrize("name", ["dpo_pairs", "kto_feedback"])
def test_llamafactory_export_round_trips_exactly(samples, name, tmp_path):
    out = export.export(name, "lf", "llamafactory")
    folder = Path(out["path"])
    info = json.loads((folder / "dataset_info.json").read_text())[name]
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    assert len(data) == out["records"] == 20 if name == "dpo_pairs" else 10
    if name == "dpo_pairs":
        assert info["ranking"] is True and info["formatting"] == "sharegpt"
        assert info["columns"]["chosen"] == "chosen" and info["columns"]["rejected"] == "rejected"
        assert data[0]["conversations"] == [{"from": "human", "value": "What is the capital of Australia?"}]
        assert data[0]["chosen"] == {"from": "gpt", "value": "The capital of Australia is Canberra."}
        assert data[0]["rejected"] == {"from": "gpt", "value": "The capital of Australia is Sydney."}
    else:
        assert info["columns"]["kto_tag"] == "kto_tag" and [r["kto_tag"] for r in data] == [True, False] * 5
    # LLaMA-Factory loads the file with `datasets`' JSON builder: consistent columns
    import datasets

    ds = datasets.load_dataset("json", data_files=str(folder / f"{name}.json"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == out["records"]
    result = import_path(str(folder / "dataset_info.json"))
    assert result["skipped"] == [] and result["datasets"][0]["skipped"] == 0
    assert content(name, 2) == content(name, 1)


def test_alpaca_ranking_export_and_every_format_round_trip(workspace, tmp_path):
    recs = [{"instruction": "Capital of Japan?", "input": "one word", "chosen": "Tokyo.", "rejected": "Kyoto.",
             "system": "Be brief.", "history": [["Hi", "Hello"]]},
            {"instruction": "中国的首都？", "chosen": "北京。", "rejected": "上海。"}]
    import_path(str(write_jsonl(tmp_path / "ap.jsonl", recs)))
    out = export.export("ap", "lf", "llamafactory")
    info = json.loads((Path(out["path"]) / "dataset_info.json").read_text())["ap"]
    assert info["ranking"] is True and info["formatting"] == "alpaca"
    assert info["columns"]["chosen"] == "chosen" and info["columns"]["prompt"] == "instruction"
    import_path(str(Path(out["path"]) / "dataset_info.json"))
    assert content("ap", 2) == content("ap", 1)
    for fmt in ("jsonl", "alpaca", "sharegpt", "parquet"):
        path = export.export("ap", f"ap.{fmt}", fmt, version=1)["path"]
        result = import_path(path, name=f"ap_{fmt}", fmt="auto")
        assert result["imported"] == 2 and result["skipped"] == 0
        keep = CONTENT if fmt in ("jsonl", "parquet", "alpaca") else \
            tuple(f for f in CONTENT if f not in ("input", "instruction", "conversations"))
        assert [tuple(r[k] for k in keep) for r in rows(f"ap_{fmt}")] == \
            [tuple(r[k] for k in keep) for r in rows("ap", 1)], fmt


def test_llamafactory_export_refuses_a_mix_of_kinds(workspace):
    store.append_records("mixed", [
        {"instruction": "q", "output": "a", "chosen": "a", "rejected": "b"},
        {"instruction": "q", "output": "a", "kto_tag": True},
        {"instruction": "q", "output": "a"}], op="import")
    with pytest.raises(TuneLabError, match=r"mixes record kinds \(1 sft, 1 pair, 1 kto\)"):
        export.export("mixed", "lf", "llamafactory")
    assert export.export("mixed", "mixed.jsonl", "jsonl")["records"] == 3


# --------------------------------------------------------------------------- the Data page

def test_data_page_shows_the_two_answers_side_by_side(samples):
    at = open_page("pages/data.py")
    at.selectbox(key="data.dataset").set_value("dpo_pairs").run()
    assert not at.exception
    table = at.dataframe[1].value
    assert list(table.columns)[-2:] == ["chosen", "rejected"]
    assert table["rejected"].iloc[0] == "The capital of Australia is Sydney."
    shown = html(at)
    assert "The capital of Australia is Canberra." in shown and "The capital of Australia is Sydney." in shown
    assert "Chosen answer" in texts(at) and "Rejected answer" in texts(at)
    assert [m.name for m in at.chat_message] == ["user", "assistant", "assistant"]
    at.selectbox(key="data.dataset").set_value("kto_feedback").run()
    at.selectbox(key="data.record").set_value(1).run()
    assert not at.exception and "undesirable answer (KTO)" in texts(at)
