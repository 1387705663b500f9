"""Model output in a Markdown-rendering table cell (Compare's side by side, st.table) shows every character as
written (issue 22, item 7). The oracle is a CommonMark renderer (markdown-it-py): the escaped text renders to
exactly the original characters, with no emphasis, heading, link, code, list or HTML."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from tunelab.ui import verbatim

OUTPUTS = [
    "**bold** and _italic_ and `code`",
    "# not a heading",
    "[click](http://example.com) ![img](x.png)",
    "<script>alert(1)</script> <b>hi</b> &amp;",
    "1. not a list",
    "- nor this + or this",
    "> not a quote",
    "~~struck~~ | a | table |",
    "$x^2$ and :red[alarm] and :material/home: and \\backslash",
    "plain words, digits 3.14 and 中文",
]


def _rendered_text(md: str) -> str:
    out = MarkdownIt("commonmark").enable("strikethrough").enable("table").render(md).strip()
    assert out.startswith("<p>") and out.endswith("</p>"), out  # one paragraph: no heading, list, quote, table
    inner = out[3:-4]
    assert not re.search(r"<(?!br)[a-z]", inner), inner  # no element made from the text
    return html.unescape(inner)


@pytest.mark.parametrize("text", OUTPUTS)
def test_escaped_output_renders_as_its_own_characters(text):
    assert _rendered_text(verbatim.md(text)) == text


def test_unescaped_output_would_have_been_formatted():  # the oracle sees the problem the escape fixes
    assert "<strong>" in MarkdownIt("commonmark").render(OUTPUTS[0])
    assert "<h1>" in MarkdownIt("commonmark").render(OUTPUTS[1])


def test_side_by_side_rows_hold_the_escaped_answer():
    from tunelab.ui.compare_widgets import side_by_side

    ex = {"reference": "**4**", "outputs": {"m": {"output": "# 5", "rouge_l": 0.0, "exact_match": False}}}
    rows = side_by_side(ex, ["m"])
    answers = [list(r.values())[1] for r in rows]
    assert [_rendered_text(a) for a in answers] == ["**4**", "# 5"]
