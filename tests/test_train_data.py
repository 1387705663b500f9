"""Token ids and labels: loss only on the answer, the cutoff counted, packing without cross-talk."""

import pytest

from tiny_model import RECORDS, smollm_dir
from tunelab.train import data as tdata


@pytest.fixture(scope="module")
def tok():
    from tunelab.models.loading import load_tokenizer

    return load_tokenizer(str(smollm_dir()))


def test_labels_cover_only_the_response(tok):
    rec = {"instruction": "Name a fruit.", "input": "", "output": "An apple.", "system": "Be brief.",
           "history": [["Hi", "Hello there."]]}
    enc = tdata.encode(tok, [rec], cutoff=512)
    ids, labels = enc.examples[0]
    learned = tok.decode([t for t in labels if t != tdata.IGNORE])
    assert learned.startswith("An apple.")
    assert "Name a fruit" not in learned and "Hello there" not in learned and "Be brief" not in learned
    prompt = tok.decode([i for i, lab in zip(ids, labels) if lab == tdata.IGNORE])
    assert "Be brief." in prompt and "Hello there." in prompt and "Name a fruit." in prompt
    # the masked part is exactly a prefix: no loss token before the answer starts
    first = next(i for i, lab in enumerate(labels) if lab != tdata.IGNORE)
    assert all(lab != tdata.IGNORE for lab in labels[first:])


def test_cutoff_truncates_and_counts(tok):
    long = {"instruction": "Repeat.", "input": "", "output": "word " * 300}
    enc = tdata.encode(tok, RECORDS + [long], cutoff=64)
    assert enc.truncated == 1 and enc.dropped == 0
    assert max(len(ids) for ids, _ in enc.examples) == 64
    tiny = tdata.encode(tok, [long], cutoff=8)  # the answer starts after the cutoff: nothing to learn
    assert tiny.dropped == 1 and not tiny.examples


def test_packing_fills_rows_and_restarts_positions(tok):
    long = {"instruction": "Count.", "input": "", "output": "one two three four " * 20}
    enc = tdata.encode(tok, RECORDS * 3 + [long], cutoff=512)
    rows, per_batch = tdata.plan_rows(enc, 512, packing=True, batch_size=2)
    width = max(len(ids) for ids, _ in enc.examples)
    lengths = [sum(len(enc.examples[i][0]) for i in row) for row in rows]
    assert max(lengths) <= width < 512 and len(rows) < len(enc.examples) / 2
    assert per_batch == 2 * (512 // width)  # narrower rows, same token budget per batch
    assert sorted(i for row in rows for i in row) == list(range(len(enc.examples)))
    batch = tdata.collate(enc, rows[:2], tok.pad_token_id, packing=True)
    pos = batch["position_ids"][0].tolist()
    assert pos.count(0) >= len(rows[0])  # every packed example starts again at position 0
    assert "attention_mask" not in batch
    padded = tdata.collate(enc, [[0], [1]], tok.pad_token_id, packing=False)
    assert padded["attention_mask"].sum() == padded["n_tokens"]


def test_preview_marks_loss_and_cutoff():
    rec = {"instruction": "Say hi.", "input": "", "output": "Hi! " * 40}
    (item,) = tdata.preview(str(smollm_dir()), [rec], cutoff=40)
    assert item["truncated_at"] == 40 and item["length"] > 40
    flags = [t["loss"] for t in item["tokens"]]
    assert not flags[0] and flags[-1] and "".join(t["text"] for t in item["tokens"]).count("Say hi.") == 1


def test_preview_shows_whole_chinese_characters():
    rec = {"instruction": "“一寸光阴一寸金”这个成语是什么意思？", "input": "", "output": "时间非常宝贵，要珍惜。"}
    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer(str(smollm_dir()))
    (item,) = tdata.preview(str(smollm_dir()), [rec], cutoff=512)
    text = "".join(t["text"] for t in item["tokens"])
    assert "\ufffd" not in text and "一寸光阴一寸金" in text and "时间非常宝贵，要珍惜。" in text
    assert len(item["tokens"]) == item["length"]  # still one entry per token: the cutoff index holds
    assert text == tok.decode(sum(tdata.tokenize(tok, [rec])[0], []))
