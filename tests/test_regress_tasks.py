"""The shipped regression suite: fixed-seed files, and every check passes a good answer and fails a bad one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tunelab.evals.regress import SUITE_DIR, task_specs


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"regress_{name}", SUITE_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


utils = _module("utils")


def _items(task: str) -> list[dict]:
    return [json.loads(x) for x in (SUITE_DIR / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_generator_is_seeded_and_the_committed_files_are_its_output(tmp_path):
    _module("generate").main(tmp_path)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert len(made) == 10  # 5 tasks x (JSONL + YAML)
    for name in made:
        assert (tmp_path / name).read_bytes() == (SUITE_DIR / name).read_bytes(), name


def test_the_suite_loads_as_lm_eval_configs_with_absolute_data_files():
    specs, prov = task_specs(SUITE_DIR)
    assert sorted(s["task"] for s in specs) == sorted(prov) == [
        "regress_bullets", "regress_chinese", "regress_json", "regress_keyword", "regress_short"]
    for s in specs:
        assert Path(s["dataset_kwargs"]["data_files"]).is_absolute()
        assert callable(s["process_results"])  # the `!function utils.check_*` resolved
        assert s["generation_kwargs"]["max_gen_toks"] <= 64
        assert 20 <= len(_items(s["task"])) <= 40


BULLETS = [
    ("- fresh air\n- less stress\n- more sleep", 3, True),
    ("* one\n* two", 2, True),
    ("Here you go:\n• alpha\n• beta\n• gamma\n• delta", 4, True),
    ("- fresh air\n- less stress", 3, False),
    ("1. fresh air\n2. less stress\n3. more sleep", 3, False),  # numbered, not bullets
    ("- a\n- b\n- c\n- d", 3, False),
    ("", 2, False),
]


@pytest.mark.parametrize("text,n,ok", BULLETS)
def test_bullets(text, n, ok):
    assert utils.check_bullets({"n": n}, [text]) == {"pass": int(ok)}


@pytest.mark.parametrize("text,ok", [
    ("The river was calm.", True), ("RIVER crossings are fun", True), ("A river's bend.", True),
    ("The riverbank was calm.", False), ("No such word here.", False), ("", False)])
def test_keyword(text, ok):
    assert utils.check_keyword({"word": "river"}, [text]) == {"pass": int(ok)}


@pytest.mark.parametrize("text,ok", [
    ('{"city": "Paris"}', True), ('```json\n{"city": "Paris"}\n```', True), ('  {"city": 1, "x": 2}\n', True),
    ('{"town": "Paris"}', False), ('Sure! {"city": "Paris"}', False), ('["city"]', False),
    ("{'city': 'Paris'}", False), ('{"city": "Paris"', False), ("", False)])
def test_json(text, ok):
    assert utils.check_json({"key": "city"}, [text]) == {"pass": int(ok)}


@pytest.mark.parametrize("text,n,ok", [
    ("Water keeps you alive.", 10, True), ("one two three four five six seven eight nine", 10, True),
    ("one two three four five six seven eight nine ten", 10, False), ("", 10, False), ("   ", 15, False)])
def test_short(text, n, ok):
    assert utils.check_short({"n": n}, [text]) == {"pass": int(ok)}


@pytest.mark.parametrize("text,ok", [
    ("巴黎是法国的首都。", True), ("天空是蓝色的，因为瑞利散射 (Rayleigh)。", True),
    ("Paris is the capital of France.", False), ("Paris 是首都 of France and Europe", False), ("好", False),
    ("", False)])
def test_chinese(text, ok):
    assert utils.check_chinese({}, [text]) == {"pass": int(ok)}


def _good(task: str, item: dict) -> str:
    return {"regress_bullets": "\n".join(f"- point {i}" for i in range(item.get("n", 0))),
            "regress_keyword": f"A sentence with {item.get('word')} in it.",
            "regress_json": json.dumps({item.get("key"): "x"}),
            "regress_short": " ".join(["word"] * (item.get("n", 1) - 1)),
            "regress_chinese": "这是一个用中文写的回答。"}[task]


def _bad(task: str, item: dict) -> str:
    return {"regress_bullets": "\n".join(f"- point {i}" for i in range(item.get("n", 0) + 1)),
            "regress_keyword": "A sentence without the asked-for word.",
            "regress_json": "Here is the JSON: " + json.dumps({item.get("key"): "x"}),
            "regress_short": " ".join(["word"] * item.get("n", 1)),
            "regress_chinese": "This answer is written in English."}[task]


@pytest.mark.parametrize("task", ["regress_bullets", "regress_keyword", "regress_json", "regress_short",
                                  "regress_chinese"])
def test_every_shipped_item_can_pass_and_fail(task):
    check = {s["task"]: s["process_results"] for s in task_specs(SUITE_DIR)[0]}[task]
    for item in _items(task):
        assert check(item, [_good(task, item)]) == {"pass": 1}, item
        assert check(item, [_bad(task, item)]) == {"pass": 0}, item
