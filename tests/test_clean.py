"""Cleaning: each cleaner on English and Chinese records, previews and committed versions."""

from __future__ import annotations

import json

import random

import pytest

from tunelab.data import clean, stats, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError


def table(records):
    return to_table([dict(r, id=r.get("id") or str(i)) for i, r in enumerate(records)])


# ---------------------------------------------------------------- PII


@pytest.mark.parametrize("text,expected,kind", [
    ("mail me at john.doe+x@example.co.uk today", "mail me at [EMAIL] today", "email"),
    ("请联系张三，邮箱zhangsan@163.com。", "请联系张三，邮箱[EMAIL]。", "email"),
    ("我的手机号是13812345678，谢谢", "我的手机号是[PHONE]，谢谢", "phone"),
    ("电话：+86 139 1234 5678", "电话：[PHONE]", "phone"),
    ("call +1 (415) 555-0132 now", "call [PHONE] now", "phone"),
    ("call (415) 555-0132", "call [PHONE]", "phone"),
    ("办公室电话010-62345678", "办公室电话[PHONE]", "phone"),
    ("server at 192.168.1.20 is down", "server at [IP] is down", "ip"),
    ("服务器地址10.0.0.1已宕机", "服务器地址[IP]已宕机", "ip"),
    ("card 4111 1111 1111 1111 exp", "card [CARD] exp", "card"),
    ("卡号4111-1111-1111-1111", "卡号[CARD]", "card"),
    ("身份证号11010519491231002X，请核对", "身份证号[ID]，请核对", "id"),
    ("ID 110105199003071239 here", "ID [ID] here", "id"),
])
def test_pii_redaction(text, expected, kind):
    red, found = clean.redact_text(text)
    assert red == expected
    assert found == {kind: 1}


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn",
    "ID 110105194912310022 has a wrong check digit",
    "version 1.2.3.4.5 and 999.1.1.1 are not addresses",
    "the year 2024 and 12345 items",
    "订单号20240101，共3件",
])
def test_pii_leaves_lookalikes_alone(text):
    assert clean.redact_text(text) == (text, {})


def test_checksums():
    assert clean.luhn_ok("4111111111111111") and not clean.luhn_ok("4111111111111112")
    assert clean.cn_id_ok("11010519491231002X") and not clean.cn_id_ok("110105194912310020")


def test_redact_in_plan_counts_records_and_covers_history_and_raw_turns():
    t = table([
        {"instruction": "email a@b.com", "output": "ok", "history": [["my ip 8.8.8.8", "noted"]],
         "conversations": '[{"from": "human", "value": "email a@b.com"}]'},
        {"instruction": "手机13912345678", "output": "收到13912345678"},
        {"instruction": "clean", "output": "nothing"},
    ])
    new, removed, examples = clean.plan(t, redact_pii=True)
    rows = new.to_pylist()
    assert rows[0]["instruction"] == "email [EMAIL]" and rows[0]["history"] == [["my ip [IP]", "noted"]]
    assert "a@b.com" not in rows[0]["conversations"]
    assert rows[1]["output"] == "收到[PHONE]"
    assert removed == {"redacted_email": 1, "redacted_ip": 1, "redacted_phone": 1}
    assert examples["redacted_phone"] == ["1"]
    assert new.num_rows == 3


# ---------------------------------------------------------------- other cleaners


def test_strip_and_drop_empty():
    t = table([{"instruction": "  hi ", "output": "x\n"}, {"instruction": "q", "output": "   "},
               {"instruction": "", "input": "", "output": "orphan"}, {"instruction": "ok", "output": "ok"}])
    new, removed, examples = clean.plan(t, strip=True, drop_empty=True)
    assert [r["instruction"] for r in new.to_pylist()] == ["hi", "ok"]
    assert new.to_pylist()[0]["output"] == "x"
    assert removed == {"stripped": 2, "empty": 2}
    assert examples["empty"] == ["1", "2"]


def test_strip_trims_the_stored_sharegpt_turns_too():
    turns = [{"from": "human", "value": "  hi "}, {"from": "function_call", "value": " {\"name\": \"f\"} "},
             {"from": "observation", "value": "42\n"}, {"from": "gpt", "value": " done "}]
    t = table([{"instruction": "  hi ", "output": " done ", "conversations": json.dumps(turns)}])
    new, removed, _ = clean.plan(t, strip=True)
    stored = json.loads(new.to_pylist()[0]["conversations"])
    assert [x["value"] for x in stored] == ["hi", '{"name": "f"}', "42", "done"]
    assert [x["from"] for x in stored] == ["human", "function_call", "observation", "gpt"]
    assert removed == {"stripped": 1}


def test_exact_dedup_normalises_whitespace_and_case():
    t = table([{"instruction": "Hello  World", "output": "A"}, {"instruction": "hello world ", "output": "a"},
               {"instruction": "hello world", "output": "a", "system": "different"},
               {"instruction": "你好", "output": "世界"}, {"instruction": "你好", "output": "世界"}])
    new, removed, examples = clean.plan(t, dedup="exact")
    assert removed == {"duplicate_exact": 2} and examples["duplicate_exact"] == ["1", "4"]
    assert new.num_rows == 3


NEAR = [
    ("Give three tips for staying healthy.", "Eat well, exercise and sleep enough."),
    ("Give three tips for staying healthy!", "Eat well, exercise, and sleep enough."),  # punctuation
    ("Give three good tips for staying healthy.", "Eat well, exercise and sleep enough."),  # a word added
    ("Translate the sentence into French.", "Je suis content."),
    ("请解释什么是机器学习以及它的主要应用领域。", "机器学习是人工智能的一个分支，主要应用于图像识别和自然语言处理。"),
    ("请解释什么是机器学习以及它的主要应用场景。", "机器学习是人工智能的一个分支，主要应用于图像识别和自然语言处理。"),
    ("写一首关于春天的诗。", "春风拂面，花开满园。"),
]


def test_near_dedup_english_and_chinese():
    new, removed, examples = clean.plan(table([{"instruction": i, "output": o} for i, o in NEAR]), dedup="near")
    assert examples["duplicate_near"] == ["1", "2", "5"]
    assert removed == {"duplicate_near": 3}
    assert [r["id"] for r in new.to_pylist()] == ["0", "3", "4", "6"]


def test_near_dedup_keeps_distinct_records():
    rng = random.Random(0)
    words = [f"word{i}" for i in range(2000)]
    texts = [" ".join(rng.sample(words, 12)) for _ in range(300)]
    assert clean.near_duplicate_rows(texts) == []


def test_near_agrees_with_rouge_l_on_planted_pairs():
    """The MinHash choice against self-instruct's ROUGE-L >= 0.7 on the same records."""
    from rouge_score import rouge_scorer

    rng = random.Random(1)
    words = [f"w{i}" for i in range(500)]
    base = [" ".join(rng.sample(words, 14)) for _ in range(60)]
    planted = [b.replace(b.split()[rng.randrange(14)], "changed", 1) for b in base[:20]]
    texts = base + planted
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    by_rouge = {j for j in range(len(texts)) for i in range(j)
                if scorer.score(texts[i], texts[j])["rougeL"].fmeasure >= 0.7}
    assert set(clean.near_duplicate_rows(texts)) == by_rouge == set(range(60, 80))


def test_max_tokens_drops_long_records():
    t = table([{"instruction": "short", "output": "a b"}, {"instruction": "long", "output": "w " * 300}])
    new, removed, _ = clean.plan(t, max_tokens=100, tokenizer=stats.rough_counter())
    assert removed == {"too_long": 1} and new.to_pylist()[0]["instruction"] == "short"


def test_plan_is_pure_and_clean_commits_a_version(workspace):
    store.commit("c", table([{"instruction": "a", "output": "b"}, {"instruction": "A ", "output": "b"},
                             {"instruction": "x", "output": ""}]), "import")
    before = store.read("c")
    clean.plan(before, dedup="exact", drop_empty=True)
    assert store.manifest("c")["head"] == 1
    res = clean.clean("c", dedup="exact", drop_empty=True)
    assert res["version"] == 2 and res["before"] == 3 and res["after"] == 1
    assert res["removed"] == {"empty": 1, "duplicate_exact": 1}
    entry = store.manifest("c")["versions"][-1]
    assert entry["op"] == "clean" and entry["params"] == {"dedup": "exact", "drop_empty": True}
    assert store.read("c", 1).num_rows == 3  # the old version is kept for undo


# ---------------------------------------------------------------- redaction exclusions (issue #15)

PII_RECORDS = [
    {"id": "hypo", "instruction": "Generate a hypothetical phone number", "output": "(415) 555-0132"},
    {"id": "mail", "instruction": "Who do I write to?", "output": "Write to jane.roe@example.com"},
    {"id": "call", "instruction": "我的手机号是多少？", "output": "13812345678"},
    {"id": "none", "instruction": "Say hi", "output": "hi"},
]


def test_redact_exclude_keeps_matching_records_as_written():
    new, counts, examples = clean.plan(table(PII_RECORDS), redact_pii=True, redact_exclude=["HYPOTHETICAL"])
    out = {r["id"]: r["output"] for r in new.to_pylist()}
    assert out == {"hypo": "(415) 555-0132", "mail": "Write to [EMAIL]", "call": "[PHONE]", "none": "hi"}
    assert counts == {"redacted_email": 1, "redacted_phone": 1, "redaction_excluded": 1}
    assert examples["redaction_excluded"] == ["hypo"]
    # a regex; an invalid one is taken as a plain keyword
    new, counts, _ = clean.plan(table(PII_RECORDS), redact_pii=True, redact_exclude=[r"555-01\d\d", "(("])
    assert {r["id"]: r["output"] for r in new.to_pylist()}["hypo"] == "(415) 555-0132"


def test_redact_skip_by_id_or_position():
    new, counts, _ = clean.plan(table(PII_RECORDS), redact_pii=True, redact_skip=["mail", "#3"])
    out = {r["id"]: r["output"] for r in new.to_pylist()}
    assert out["mail"] == "Write to jane.roe@example.com" and out["call"] == "13812345678"
    assert out["hypo"] == "[PHONE]" and counts["redaction_excluded"] == 2
    with pytest.raises(TuneLabError, match="--redact-skip nope"):
        clean.plan(table(PII_RECORDS), redact_pii=True, redact_skip=["nope"])


def test_cli_clean_with_redaction_exclusions(workspace):
    from cli_run import tunelab

    store.commit("pii", table(PII_RECORDS), "import")
    out = tunelab(workspace, "data", "clean", "pii", "--redact-pii", "--redact-exclude", "hypothetical",
                  "--redact-skip", "mail,4", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["removed"] == {"redacted_phone": 1, "redaction_excluded": 2}
    rows = {r["id"]: r["output"] for r in store.read("pii").to_pylist()}
    assert rows == {"hypo": "(415) 555-0132", "mail": "Write to jane.roe@example.com", "call": "[PHONE]", "none": "hi"}
    params = store.manifest("pii")["versions"][-1]["params"]
    assert params["redact_exclude"] == ["hypothetical"] and params["redact_skip"] == ["mail", "4"]


def test_near_dedup_keeps_records_whose_numbers_differ_and_names_each_kept_twin():
    """Issue 22: "5 December 1995" was removed as a copy of "19 December 1995"; the twin was never shown."""
    recs = [{"instruction": "Write the date 1995-12-19 in words.", "output": "19 December 1995"},
            {"instruction": "Write the date 1995-12-05 in words.", "output": "5 December 1995"},
            {"instruction": "Give three tips for staying healthy.", "output": "Eat well, exercise and sleep enough."},
            {"instruction": "Give three tips for staying healthy!", "output": "Eat well, exercise, and sleep enough."}]
    pairs: list[dict] = []
    new, removed, _ = clean.plan(table(recs), dedup="near", near_pairs=pairs)
    assert [r["id"] for r in new.to_pylist()] == ["0", "1", "2"] and removed == {"duplicate_near": 1}
    (pair,) = pairs
    assert (pair["removed"], pair["kept"], pair["keep"]) == ("3", "2", False) and 0.7 <= pair["similarity"] <= 1
    assert "healthy!" in pair["removed_text"] and "healthy." in pair["kept_text"]
    # The user keeps it: nothing removed, the pair still listed.
    pairs = []
    new, removed, _ = clean.plan(table(recs), dedup="near", keep_near=["3"], near_pairs=pairs)
    assert new.num_rows == 4 and removed == {} and pairs[0]["keep"] is True


def test_cli_clean_near_reports_twins_and_keeps_on_request(workspace, capsys):
    from tunelab.cli import main as cli

    store.commit("n", table([{"instruction": i, "output": o} for i, o in NEAR]), "import")
    capsys.readouterr()
    assert cli(["data", "clean", "n", "--dedup", "near", "--keep-near", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == {"duplicate_near": 2} and out["after"] == 5
    twins = {p["removed"]: (p["kept"], p["keep"]) for p in out["near_duplicates"]}
    assert twins == {"1": ("0", False), "2": ("0", True), "5": ("4", False)}
