"""Chinese UI: each translated page runs in Chinese, and every string passed to t() has a zh.json entry."""

from __future__ import annotations

import ast
import json
import string
from pathlib import Path

import pytest
from pagetest import APP, TIMEOUT, texts
from streamlit.testing.v1 import AppTest
from test_generate_page import seed_batch

from tunelab import i18n
from tunelab.data import importer, schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate
from tunelab.models import registry
from tunelab.synth import generate, prompts
from tunelab.train import runs

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "什么是机器学习？", "input": "", "output": "机器学习是人工智能的一个分支。"},
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},  # a duplicate for the Clean preview
    {"instruction": "Greet me.", "input": "", "output": "Hello!", "system": "Be brief.", "history": [["Hi", "Hi!"]]},
]
ZH = i18n.catalog("zh")


@pytest.fixture
def data(workspace):
    store.commit("toy", schema.to_table(RECORDS), "import")
    store.commit("toy-test", schema.to_table(RECORDS[:3]), "import")
    return "toy"


def _zh(page: str, **state) -> AppTest:
    """Run app.py in Chinese, switch to page and check it ran cleanly."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["lang"] = "zh"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def _untranslated_since(before: set[str]) -> list[str]:
    """Strings that went through t() after `before` was taken and have no Chinese entry."""
    return [s for s in i18n.missing("zh") if s not in before]


def test_data_page_in_chinese(data):
    before = set(i18n.missing("zh"))
    at = _zh("pages/data.py")
    assert at.title[0].value == "数据"
    assert [tab.label for tab in at.tabs] == ["浏览与搜索", "清洗", "划分", "导出", "撤销", "删除"]
    assert at.selectbox(key="data.dataset").value == "toy"  # values stay data, only labels translate
    assert at.selectbox(key="data.dataset").options == ["toy（5 条记录）", "toy-test（3 条记录）"]
    at.selectbox(key="data.clean_dedup").set_value("exact").run()  # a rerun in Chinese works too
    at.button(key="data.clean_preview").click().run()
    assert not at.exception, at.exception
    reasons = next(df.value for df in at.dataframe if "原因" in df.value.columns)
    assert reasons.set_index("原因")["记录数"].to_dict() == {"完全重复": 1}
    at.button(key="data.clean_apply").click().run()
    assert "已写入 toy v2：5 → 4 条记录。" in texts(at)
    assert _untranslated_since(before) == []


def test_sql_page_in_chinese(data):
    at = _zh("pages/sql.py")
    assert at.title[0].value == "SQL" and "**只读**" in texts(at)
    assert [b.label for b in at.button if b.key.startswith("sql.example_")][0] == "各数据集记录数"
    at.button(key="sql.example_count").click().run()
    at.button(key="sql.run").click().run()
    assert not at.exception, at.exception
    assert "2 行" in texts(at)


def test_stats_page_in_chinese(data):
    at = _zh("pages/stats.py")
    assert at.title[0].value == "统计"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["记录数"] == "5" and metrics["完全重复"] == "1"


def test_compare_page_in_chinese(data, tiny_model):
    for name in ("tiny-a", "tiny-b"):
        registry.add_model(name, tiny_model)
    rid = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="toy-test", limit=2,
                                                     max_new_tokens=2))
    evaluate.run_report(rid)
    before = set(i18n.missing("zh"))
    at = _zh("pages/compare.py")
    assert at.title[0].value == "对比"
    assert at.selectbox(key="compare.sort").value == "disagreement (ROUGE-L spread)"  # the option value is unchanged
    assert at.selectbox(key="compare.sort").options[0] == "分歧程度（ROUGE-L 差异）"
    at.selectbox(key="compare.sort").set_value("dataset order").run()
    assert not at.exception, at.exception
    table = next(df.value for df in at.dataframe if "ROUGE-L（%）" in df.value.columns)
    assert list(table["name"]) == ["tiny-a", "tiny-b"] and "精确匹配（%）" in table.columns
    # the same model twice: no significant winner, so the picker does not say "Winner"
    assert at.selectbox(key="compare.pick").label == "要微调的基础模型（无定论：没有显著胜出者）"
    assert _untranslated_since(before) == []


def test_train_page_in_chinese(data, tiny_model):
    before = set(i18n.missing("zh"))
    at = _zh("pages/train.py", **{"train.model": tiny_model})
    assert at.title[0].value == "训练"
    assert [tab.label for tab in at.tabs] == ["新建训练", "历史训练"]
    assert at.number_input(key="train.learning_rate").label == "学习率"
    assert at.selectbox(key="train.method").help.startswith("lora：训练小型附加矩阵")
    assert any(m.value.startswith("**记录 1**") for m in at.markdown)  # the token preview rendered
    assert _untranslated_since(before) == []


def test_generate_page_in_chinese(workspace):
    prompts.get("default-en")  # v1 exists, as after any generation
    batch = seed_batch(workspace)
    before = set(i18n.missing("zh"))
    at = _zh("pages/generate.py")
    assert at.title[0].value == "生成"
    assert at.selectbox(key="gen.batch").value == batch
    assert at.text_area(key="gen.item.instruction.1").label == "指令"
    status = at.radio(key="gen.item.status.1")
    assert status.options == ["已接受", "已拒绝", "待审阅"] and status.value == "pending"  # values unchanged
    status.set_value("rejected")
    at.text_input(key="gen.item.reason.1").set_value("Asks about a picture the model cannot see.")
    at.run()
    assert not at.exception, at.exception
    assert [it["status"] for it in generate.load_items(batch)][:2] == ["pending", "rejected"]
    assert [m.label for m in at.metric] == ["已生成", "已接受", "已拒绝", "待审阅"]
    assert any("原因" in df.value.columns for df in at.dataframe)
    at.button(key="gen.mistakes").click().run()
    assert not at.exception, at.exception
    assert "已保存 default-en v2，包含 1 条需要避免的错误。" in texts(at)
    assert _untranslated_since(before) == []


def test_playground_page_in_chinese(workspace, tiny_model):
    registry.add_model("tiny", tiny_model)  # a 2-layer model: the page loads it, nothing is generated
    before = set(i18n.missing("zh"))
    at = _zh("pages/playground.py", **{"play.model_a": "tiny"})
    assert at.title[0].value == "试用"
    assert at.selectbox(key="play.model_a").label == "模型" and at.selectbox(key="play.model_a").value == "tiny"
    compare = at.selectbox(key="play.model_b")
    assert compare.options[0] == "（无）" and compare.value == "(none)"  # the option value is unchanged
    assert at.slider(key="play.temperature").label == "温度"
    assert at.slider(key="play.temperature").help.startswith("随机程度")
    assert at.chat_input(key="play.prompt").placeholder == "输入消息"
    assert _untranslated_since(before) == []


def _t_literals(path: Path) -> list[str]:
    """First arguments of t("...") calls that are string literals."""
    return [node.args[0].value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "t"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)]


def test_every_literal_passed_to_t_has_a_chinese_entry():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "src/tunelab/ui").glob("*.py"))]
    literals = {s: p.relative_to(ROOT).as_posix() for p in files for s in _t_literals(p)}
    assert len(literals) > 280  # the scan found the pages' strings, not nothing
    assert {s: f for s, f in literals.items() if s not in ZH} == {}


def test_strings_translated_at_display_have_chinese_entries():
    """Strings t() receives from variables: config help texts, option labels, table headers."""
    from dataclasses import fields

    from tunelab import jobs
    from tunelab.models.generation import GenerationSettings
    from tunelab.train import sweep, sweep_stats
    from tunelab.train.config import all_fields
    from tunelab.ui import (chat, compare_widgets, data_actions, data_widgets, generate_widgets, runs_widgets,
                            sweep_widgets, train_widgets)

    dynamic = [f.metadata["help"] for _, f in all_fields()]
    dynamic += [f.name.replace("_", " ") for _, f in all_fields()]
    dynamic += [*data_actions.REASONS.values(), *compare_widgets.SORTS, *compare_widgets.LABELS.values()]
    dynamic += list(data_widgets.sql_examples(["toy"]))
    dynamic += [jobs.KIND_LABELS[k] for k in jobs.KINDS]
    dynamic += [f.metadata["help"] for f in fields(GenerationSettings)]
    dynamic += [generate_widgets.ENDPOINT, chat.NO_MODEL, chat.ENGINE_HELP, *train_widgets.EXPORT_LABELS.values(),
                *train_widgets.LABELS.values(), *train_widgets.METHOD_LABELS.values()]
    dynamic += [*runs_widgets.FILTER_LABELS.values(), *runs_widgets.METRIC_LABELS.values(),
                *runs_widgets.LINEAGE_LABELS.values(), *jobs.FINAL]
    dynamic += [*sweep_widgets.PRUNER_LABELS.values(), *sweep_widgets.COLUMNS.values(), *sweep_stats.TEMPLATES,
                *sweep.STATE_NAMES.values()]
    assert [s for s in dynamic if s not in ZH and s not in ("data", "resume from")] == []


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_translations_keep_their_placeholders():
    keys = [k for k in ZH if "{" in k and "%{" not in k]
    assert len(keys) > 50 and [k for k in keys if _fields(ZH[k]) != _fields(k)] == []


# --- user errors -----------------------------------------------------------------------------------

def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _template(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The message template of a raise site's argument: a literal, an f-string or a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _escape(node.value)
    if isinstance(node, ast.Name) and node.id in constants:
        return _escape(constants[node.id])
    if not isinstance(node, ast.JoinedStr):
        return None
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(_escape(part.value))
            continue
        conversion = "" if part.conversion == -1 else "!" + chr(part.conversion)
        spec = ":" + _template(part.format_spec, constants) if part.format_spec else ""
        out.append("{" + ast.unparse(part.value) + conversion + spec + "}")
    return "".join(out)


def _error_sites() -> tuple[dict[str, str], list[str]]:
    """Every user-error message template in src/tunelab -> its first site, and the sites that cannot be matched.

    A message is a TuneLabError's argument or a literal `error=` recorded in a job's status (shown on the pages).
    """
    templates, opaque = {}, []
    for path in sorted((ROOT / "src/tunelab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                     for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
            # _Skip: why an entry of a dataset_info.json was skipped, quoted in the TuneLabError that follows.
            if isinstance(node.func, ast.Name) and node.func.id in ("TuneLabError", "_Skip") and node.args:
                template = _template(node.args[0], constants)
                if template is None:
                    opaque.append(where)
                else:
                    templates.setdefault(template, where)
            for kw in node.keywords:  # error=str(exc) passes a message on: only literals are new messages
                template = _template(kw.value, constants) if kw.arg == "error" else None
                if template:
                    templates.setdefault(template, where)
    return templates, opaque


def _placeholders(template: str) -> list[str]:
    return sorted(ph for _, ph in i18n.template_parts(template) if ph)


ZH_ERRORS = json.loads((ROOT / "src/tunelab/locales/zh_errors.json").read_text(encoding="utf-8"))


def test_every_user_error_has_a_chinese_entry():
    templates, opaque = _error_sites()
    assert len(templates) > 100  # the scan found the raise sites, not nothing
    # Messages built elsewhere cannot be matched: only DuckDB's own text (the SQL sandbox) is allowed.
    assert {site.split(":")[0] for site in opaque} <= {"src/tunelab/data/sql.py"}, opaque
    missing = {t: site for t, site in templates.items() if t not in ZH_ERRORS["templates"]}
    assert missing == {}, "add these to locales/zh_errors.json:\n" + json.dumps(missing, ensure_ascii=False, indent=1)


def test_chinese_error_entries_keep_their_placeholders_and_are_still_used():
    templates, _ = _error_sites()
    literals = {node.value for path in (ROOT / "src/tunelab").rglob("*.py")
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    entries = ZH_ERRORS["templates"]
    assert [en for en, zh in entries.items() if _placeholders(en) != _placeholders(zh)] == []
    assert [en for en in entries if en not in templates and en not in literals] == []  # stale entries
    # A placeholder's parse is the one the collector wrote: the matcher splits every template as written.
    assert [t for t in templates if "".join(text.replace("{", "{{").replace("}", "}}") + (ph or "")
                                           for text, ph in i18n.template_parts(t)) != t] == []
    assert all(ph in " ".join(templates) for ph in ZH_ERRORS["values"])


def _raised(fn) -> str:
    with pytest.raises(TuneLabError) as err:
        fn()
    return str(err.value)


def test_real_user_errors_read_in_chinese_with_their_values(workspace, tmp_path):
    bad_name = _raised(lambda: store.read("../x"))
    assert bad_name.startswith("invalid dataset name '../x'")  # the CLI keeps English
    assert i18n.translate_error(bad_name, "zh") == "数据集名称 '../x' 无效：请使用 1-64 个字母、数字、'_'、'.' 或 '-'（不能含斜杠）"
    assert i18n.translate_error(bad_name, "en") == bad_name
    assert i18n.translate_error(_raised(lambda: store.read("nope")), "zh") == "未知数据集 'nope'（见 `tunelab data list`）"
    assert i18n.translate_error(_raised(lambda: runs.status("r-404")), "zh") == "未知训练 'r-404'（见 `tunelab runs list`）"
    # A quoted reason is translated too: the skipped entry's message inside the import error.
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"toy": {"file_name": "gone.json"}}), encoding="utf-8")
    assert i18n.translate_error(_raised(lambda: importer.import_dataset_info(info)), "zh") == (
        f"未从 dataset_info.json 导入任何内容：跳过了 1 项（toy：缺少文件：gone.json（在 {tmp_path} 中查找））")
    assert i18n.translate_error("a message no template knows", "zh") == "a message no template knows"


def test_data_page_shows_an_import_error_in_chinese(workspace):
    at = _zh("pages/data.py")
    at.file_uploader(key="data.upload").upload("toy.jsonl", b'{"instruction": "a", "output": "b"}\n')
    at.run()
    at.text_input(key="data.upload_name").set_value("../x")
    at.button(key="data.import").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["数据集名称 '../x' 无效：请使用 1-64 个字母、数字、'_'、'.' 或 '-'（不能含斜杠）"]


def test_sql_page_shows_a_refused_query_in_chinese(data):
    at = _zh("pages/sql.py")
    at.text_area(key="sql.query").set_value("SELECT 1; SELECT 2")
    at.button(key="sql.run").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["只允许一条查询，收到 2 条语句"]  # through layout.show_error
