"""Prompt templates: immutable numbered versions, rendering, mistakes fed into the next version."""

import json

import pytest

from tunelab.errors import TuneLabError
from tunelab.synth import prompts

SEEDS = [{"instruction": "Give three tips for staying healthy.", "input": ""},
         {"instruction": "我最近运气怎么样？", "input": "x"}]


def test_defaults_are_materialised_as_v1(workspace):
    assert prompts.templates()[:2] == ["default-en", "default-zh"]
    v = prompts.get("default-zh")
    assert v["version"] == 1 and v["parent"] is None
    saved = json.loads((workspace / "prompts" / "default-zh" / "v1.json").read_text("utf-8"))
    assert saved["text"] == prompts.DEFAULT_ZH and "created" in saved


def test_version_round_trip_is_immutable(workspace):
    v1 = prompts.save("mine", "Examples:\n{seed_examples}\nWrite {n}.", "task", note="first")
    v2 = prompts.save("mine", "Examples:\n{seed_examples}\nWrite {n} more.", "task", parent=1, note="second")
    assert (v1["version"], v2["version"], v2["parent"]) == (1, 2, 1)
    assert prompts.get("mine", 1)["text"] == "Examples:\n{seed_examples}\nWrite {n}."
    assert prompts.get("mine")["note"] == "second"
    assert [v["version"] for v in prompts.versions("mine")] == [1, 2]
    assert "mine" in prompts.templates()
    with pytest.raises(TuneLabError):
        prompts.get("mine", 9)
    with pytest.raises(TuneLabError):
        prompts.get("../etc")


def test_render_replaces_variables_and_leaves_other_braces(workspace):
    v = prompts.save("json", '{task_description}\n{seed_examples}\n{mistakes}Give {n} as {"instruction": ...}', "T")
    text = prompts.render(v, SEEDS, 5)
    assert text.startswith("T\n1. Give three tips for staying healthy.\n2. 我最近运气怎么样？")
    assert 'Give 5 as {"instruction": ...}' in text
    assert "{mistakes}" not in text and "Avoid" not in text


def test_mistakes_fed_into_next_version(workspace):
    v1 = prompts.get("default-en")
    v2 = prompts.new_version_with_mistakes(v1, ["Do not ask about pictures.", "Answers must be in English."])
    assert (v2["version"], v2["parent"]) == (2, 1)
    assert v2["mistakes"] == ["Do not ask about pictures.", "Answers must be in English."]
    assert v2["text"] == v1["text"] and "Do not ask about pictures." in v2["note"]
    rendered = prompts.render(v2, SEEDS, 8)
    assert "Avoid these mistakes:\n- Do not ask about pictures.\n- Answers must be in English." in rendered
    v3 = prompts.new_version_with_mistakes(v2, ["Answers must be in English.", "No numbering inside items."])
    assert v3["mistakes"] == ["Do not ask about pictures.", "Answers must be in English.", "No numbering inside items."]
    assert prompts.get("default-en", 2)["mistakes"] == v2["mistakes"]  # v2 untouched
    with pytest.raises(TuneLabError):
        prompts.new_version_with_mistakes(v3, ["No numbering inside items."])


def test_chinese_template_gets_chinese_mistakes_heading_even_without_variable(workspace):
    v = prompts.save("zh", "例子：\n{seed_examples}\n\n请生成{n}个问题。", mistakes=["不要重复例子。"])
    text = prompts.render(v, SEEDS, 20)
    assert text.endswith("避免这些错误：\n- 不要重复例子。\n\n请生成20个问题。")


def test_prompt_file_becomes_a_version_once(workspace, tmp_path):
    f = tmp_path / "my prompt.txt"
    f.write_text("Seeds:\n{seed_examples}\nMake {n}.", encoding="utf-8")
    a = prompts.from_file(str(f))
    b = prompts.from_file(str(f))
    assert a["name"] == "my-prompt" and a["version"] == b["version"] == 1
    f.write_text("Seeds:\n{seed_examples}\nMake {n} new ones.", encoding="utf-8")
    assert prompts.from_file(str(f))["version"] == 2
