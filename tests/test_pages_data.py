"""The Data page driven through AppTest by widget keys, against a real workspace and store."""

from __future__ import annotations

import json

import pytest
from pagetest import html, open_page, texts

from tunelab.data import highlight, store, uploads
from tunelab.data.importer import import_path


def _records(n: int = 45) -> list[dict]:
    recs = [{"instruction": f"Question number {i} about cooking", "input": "", "output": f"Answer {i}."}
            for i in range(n)]
    recs[3] = {"instruction": "Explain gradient descent", "input": "", "output": "Models learn by modeling errors.",
               "system": "You are a teacher.", "history": [["Hi", "Hello!"]]}
    recs[4] = {"instruction": "什么是机器学习？", "input": "", "output": "机器学习是人工智能的一个分支。"}
    recs[5] = dict(recs[0])  # an exact duplicate
    recs[6] = {"instruction": "No answer here", "input": "", "output": "   "}
    return recs


@pytest.fixture
def dataset(workspace):
    path = workspace.parent / "toy.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _records()) + "\n", encoding="utf-8")
    return import_path(str(path))["name"]


def _page():
    return open_page("pages/data.py")


def test_lists_the_imported_dataset_and_pages(dataset):
    at = _page()
    assert at.selectbox(key="data.dataset").value == "toy"
    assert "toy (45 records)" in at.selectbox(key="data.dataset").options
    table = at.dataframe[1].value  # [0] is the lineage
    assert len(table) == 20 and table["instruction"].iloc[0] == "Question number 0 about cooking"
    at.button(key="data.next").click().run()
    assert at.number_input(key="data.page").value == 2
    assert at.dataframe[1].value["instruction"].iloc[0] == "Question number 20 about cooking"
    at.selectbox(key="data.page_size").set_value(50).run()
    assert at.number_input(key="data.page").value == 1 and len(at.dataframe[1].value) == 45
    assert not at.exception


def test_record_viewer_renders_a_conversation(dataset):
    at = _page()
    at.selectbox(key="data.record").set_value(3).run()
    roles = [m.name for m in at.chat_message]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    shown = html(at)
    assert "You are a teacher." in shown and "Explain gradient descent" in shown


def test_search_marks_hits(dataset):
    at = _page()
    at.text_input(key="data.query").input("models").run()
    assert not at.exception
    table = at.dataframe[1].value
    assert list(table["instruction"]) == ["Explain gradient descent"]
    shown = html(at)
    assert "<mark>Models</mark>" in shown and "<mark>modeling</mark>" in shown
    at.text_input(key="data.query").input("机器学习").run()
    assert at.dataframe[1].value["instruction"].iloc[0] == "什么是机器学习？"
    at.selectbox(key="data.field").set_value("system").run()
    assert len(at.dataframe[1].value) == 0
    assert "No record matches" in texts(at)


def test_search_hits_are_paged(dataset):
    at = _page()
    at.selectbox(key="data.page_size").set_value(10)
    at.text_input(key="data.query").input("cooking").run()
    assert "42 match exactly, 0 more related" in texts(at)
    first = list(at.dataframe[1].value["id"])
    at.button(key="data.next").click().run()
    second = list(at.dataframe[1].value["id"])
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    at.number_input(key="data.page").set_value(5).run()
    assert len(at.dataframe[1].value) == 2


def test_clean_preview_apply_then_undo(dataset):
    at = _page()
    at.selectbox(key="data.clean_dedup").set_value("exact")
    at.checkbox(key="data.clean_drop_empty").check()
    at.button(key="data.clean_preview").click().run()
    assert not at.exception
    assert "45 → 43 records" in texts(at)
    reasons = at.dataframe[2].value.set_index("reason")["records"].to_dict()
    assert reasons == {"empty": 1, "exact duplicate": 1}
    assert store.manifest("toy")["head"] == 1  # a preview writes nothing
    at.button(key="data.clean_apply").click().run()
    assert store.manifest("toy")["head"] == 2 and store.list_datasets()[0]["records"] == 43
    assert at.selectbox(key="data.version").value == 2
    assert "Wrote toy v2: 45 → 43 records." in texts(at)
    at.button(key="data.undo").click().run()
    assert "Go back from v2 to v1?" in texts(at)
    assert store.manifest("toy")["head"] == 2  # nothing happens before the confirmation
    at.button(key="data.undo_yes").click().run()
    assert not at.exception
    assert store.manifest("toy")["head"] == 1 and at.selectbox(key="data.version").value == 1


def test_split_writes_train_and_test(dataset):
    at = _page()
    at.number_input(key="data.split_test").set_value(0.2)
    at.button(key="data.split").click().run()
    assert not at.exception
    sizes = {d["name"]: d["records"] for d in store.list_datasets()}
    assert sizes == {"toy": 45, "toy-train": 36, "toy-test": 9}
    assert "Wrote toy-train (36 records) and toy-test (9 records)." in texts(at)


def test_split_error_is_one_line(dataset):
    at = _page()
    at.number_input(key="data.split_test").set_value(0.0)
    at.button(key="data.split").click().run()
    assert not at.exception and at.error and "test-size" in at.error[0].value


def test_export_offers_a_download(dataset, workspace):
    at = _page()
    at.selectbox(key="data.export_format").set_value("alpaca")
    at.button(key="data.export").click().run()
    assert not at.exception
    exported = workspace / "exports" / "toy-v1-alpaca.json"
    assert len(json.loads(exported.read_text(encoding="utf-8"))) == 45
    assert at.get("download_button")


def test_upload_imports_and_reports_bad_lines(workspace):
    at = _page()
    assert at.button(key="data.samples")  # an empty workspace offers the samples
    good = json.dumps({"instruction": "a", "input": "", "output": "b"})
    at.file_uploader(key="data.upload").upload("../../my data.jsonl", f"{good}\nnot json\n{good}\n".encode())
    at.run()
    at.button(key="data.import").click().run()
    assert not at.exception
    assert not any((workspace / "uploads").rglob("*.jsonl"))  # staged in a folder of its own, then deleted
    assert store.list_datasets() == [{"name": "my_data", "version": 1, "records": 2}]
    assert "imported 2 record(s), skipped 1" in texts(at)
    assert at.selectbox(key="data.dataset").value == "my_data"


def test_import_samples_button(workspace):
    at = _page()
    at.button(key="data.samples").click().run()
    assert not at.exception
    names = [d["name"] for d in store.list_datasets()]
    assert names == ["alpaca_mixed"] and at.selectbox(key="data.dataset").value == "alpaca_mixed"


def test_safe_filename_keeps_uploads_inside_the_workspace(workspace):
    assert uploads.safe_filename("../../etc/passwd") == "passwd"
    assert uploads.safe_filename("C:\\x\\..\\évil name.csv") == "_vil_name.csv"
    assert uploads.safe_filename("...") == "upload"
    assert uploads.save_upload("../x.jsonl", b"{}").parent.parent == workspace / "uploads"


def test_highlight_marks_word_forms_and_cjk_bigrams():
    assert highlight.to_html("Modeling a model, not a modem <b>", "models") == \
        "<mark>Modeling</mark> a <mark>model</mark>, not a modem &lt;b&gt;"
    assert highlight.spans("我们学习机器学习", "机器学习") == [(2, 8)]
    assert highlight.spans("category", "cat") == []
    assert highlight.to_html("a < b", "") == "a &lt; b"


def test_highlight_marks_whole_words_not_stopwords_nor_bigrams_inside_other_words():
    from tunelab.data import highlight

    assert highlight.to_html("地心说和日心说", "日心说") == "地心说和<mark>日心说</mark>"
    # stopwords alone are not marked; the whole phrase is, as written
    assert highlight.to_html("What is the capital? The capital of Peru.", "the capital of") == \
        "What is the <mark>capital</mark>? <mark>The capital of</mark> Peru."
    assert highlight.to_html("光合作用和合作的作用", "光合作用") == "<mark>光合作用</mark>和合作的作用"
    assert highlight.to_html("deep and learning; deep learning", '"deep learning"') == \
        "deep and learning; <mark>deep learning</mark>"


def test_search_says_how_many_match_exactly(dataset):
    at = _page()
    at.text_input(key="data.query").input("question about").run()
    assert not at.exception
    # "Question number 0 about cooking" holds both words but not the phrase: all related
    assert "0 match exactly, 42 more related" in texts(at)
    at.text_input(key="data.query").input("about cooking").run()
    assert "42 match exactly, 0 more related" in texts(at)


@pytest.fixture
def tool_calls(workspace):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "data/samples/sharegpt_tools.json"
    return import_path(str(sample), fmt="sharegpt")["name"]


def test_tool_call_records_show_the_question_tool_turns_and_schema(tool_calls):
    at = _page()
    assert not at.exception
    table = at.dataframe[1].value
    first = table.iloc[0]
    # the instruction column holds what the user asked, not the tool's result
    assert first["instruction"] == "What's the weather like in Berlin right now?"
    assert not any(str(i).startswith("{") for i in table["instruction"])
    assert first["tools"] == "get_weather"
    assert at.selectbox(key="data.record").options[0].startswith("1. What's the weather")
    roles = [m.name for m in at.chat_message]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    labels = [m.markdown[0].value if m.markdown else "" for m in at.chat_message]
    assert "tool call" in labels[2] and "tool result" in labels[3]  # badges, not a user bubble
    assert "&quot;temperature&quot;: 14" in html(at)
    assert any("Tools the model may call: get_weather" in e.label for e in at.expander)


@pytest.fixture
def pii(workspace):
    recs = [
        {"instruction": "Generate a hypothetical phone number", "input": "", "output": "(415) 555-0132"},
        {"instruction": "Who do I write to?", "input": "", "output": "Write to jane.roe@example.com"},
        {"instruction": "我的手机号是多少？", "input": "", "output": "13812345678"},
        {"instruction": "Say hi", "input": "", "output": "hi"},
    ]
    path = workspace.parent / "pii.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n", encoding="utf-8")
    return import_path(str(path))["name"]


def test_clean_preview_titles_diffs_and_exclusions(pii):
    at = _page()
    at.checkbox(key="data.clean_redact").check().run()
    at.button(key="data.clean_preview").click().run()
    assert not at.exception
    titles = [e.label for e in at.expander]
    assert "Phone numbers redacted (2)" in titles and "Email addresses redacted (1)" in titles
    assert not [x for x in titles if "redacted_" in x or x.startswith("Examples:")]
    shown = html(at)
    assert ">(415) 555-0132</del>" in shown and ">[PHONE]</ins>" in shown  # before/after of each record
    # a keyword keeps the legitimate record as written
    at.text_area(key="data.clean_redact_exclude").input("hypothetical").run()
    at.button(key="data.clean_preview").click().run()
    titles = [e.label for e in at.expander]
    assert "Phone numbers redacted (1)" in titles and "Left as written on request (1)" in titles
    # a record left as written by its box: the preview follows at once
    box = next(c for c in at.checkbox if c.key and c.key.startswith("data.clean_keep.") and "#2" in c.label)
    box.check().run()
    titles = [e.label for e in at.expander]
    assert "Left as written on request (2)" in titles and not any(x.startswith("Email") for x in titles)
    at.button(key="data.clean_apply").click().run()
    assert not at.exception
    outputs = [r["output"] for r in store.read(pii).to_pylist()]
    assert outputs == ["(415) 555-0132", "Write to jane.roe@example.com", "[PHONE]", "hi"]


def test_delete_a_dataset_with_a_typed_confirmation(dataset, workspace):
    other = workspace.parent / "other.jsonl"
    other.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    import_path(str(other))
    at = _page()
    at.selectbox(key="data.dataset").set_value("toy").run()
    at.button(key="data.delete").click().run()
    assert at.button(key="data.delete_yes").disabled  # nothing typed yet
    at.text_input(key="data.delete_typed").input("toy").run()
    at.button(key="data.delete_yes").click().run()
    assert not at.exception
    assert [d["name"] for d in store.list_datasets()] == ["other"]
    assert not (workspace / "datasets" / "toy").exists()
    assert "Deleted toy." in texts(at) and at.selectbox(key="data.dataset").value == "other"


def test_delete_is_refused_while_a_job_uses_the_dataset(dataset):
    import os

    from tunelab import jobs
    from tunelab.errors import TuneLabError

    jobs.write_status(jobs.job_dir("runs", "run-busy"), status="running", created=1.0, pid=os.getpid(), data="toy")
    at = _page()
    assert at.button(key="data.delete").disabled
    assert any("run run-busy" in w.value for w in at.warning)
    with pytest.raises(TuneLabError, match="in use by run run-busy"):
        store.delete("toy")
    jobs.write_status(jobs.job_dir("runs", "run-busy"), status="completed")
    store.delete("toy")
    assert not store.list_datasets()


def test_dataset_and_version_come_from_the_url(dataset, workspace):
    from pagetest import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    other = workspace.parent / "other.jsonl"
    other.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    import_path(str(other))
    store.commit("toy", store.read("toy").slice(0, 10), "edit")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "toy", "v": "1"})
    at.run()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="data.dataset").value == "toy" and at.selectbox(key="data.version").value == 1


def test_clean_near_duplicates_show_their_twin_and_can_be_kept(workspace):
    """Issue 22: near dedup names each removed record's kept twin and lets the user keep it;
    dates that differ are not duplicates."""
    from tunelab.data.schema import to_table

    recs = [{"id": "a", "instruction": "Write the date 1995-12-19 in words.", "output": "19 December 1995"},
            {"id": "b", "instruction": "Write the date 1995-12-05 in words.", "output": "5 December 1995"},
            {"id": "c", "instruction": "Give three tips for staying healthy.", "output": "Eat well and sleep."},
            {"id": "d", "instruction": "Give three good tips for staying healthy.", "output": "Eat well and sleep."}]
    store.commit("toy", to_table(recs), "import")
    at = _page()
    at.selectbox(key="data.clean_dedup").set_value("near")
    at.button(key="data.clean_preview").click().run()
    assert not at.exception, at.exception
    assert "4 → 3 records" in texts(at)
    box = at.checkbox(key="data.clean_keep_near.toy.d")
    assert "Keep `d`: it is not a copy of `c`" in box.label and box.value is False
    assert any("removed: Give three good tips" in c.value for c in at.caption)
    assert any("kept: Give three tips" in c.value for c in at.caption)
    box.check().run()  # keep it: the preview is worked out again
    assert not at.exception, at.exception
    assert at.session_state["data.clean_keep_near"] == ["d"]
    assert "Nothing to change with these options." in texts(at)
    assert at.checkbox(key="data.clean_keep_near.toy.d").value is True  # still listed, to drop again
