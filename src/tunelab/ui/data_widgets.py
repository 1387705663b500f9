"""Cached reads and renderers for the Data, SQL and Stats pages.

Every cached function takes the dataset version explicitly: versions are immutable files, so a
(name, version) pair never goes stale, and a new version (clean, import, undo) is a new cache key.
Cached values are returned to pages read-only; pages never mutate them.
"""

from __future__ import annotations

import difflib
import html
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from tunelab.data import browse, clean, highlight, stats, store
from tunelab.data import search as fulltext
from tunelab.data import sql as sandbox
from tunelab.data.schema import PAIR_FIELDS, PREFERENCE_FIELDS, PUBLIC_FIELDS, TEXT_FIELDS
from tunelab.ui.i18n import t

PAGE_SIZES = (10, 20, 50, 100)
SEARCH_MAX = 1000  # hits that can be paged through; BM25 ranks the rest lower anyway
ROLE_AVATARS = {"system": ":material/settings:", "user": "user", "assistant": "assistant",
                "tool call": ":material/build:", "tool result": ":material/output:"}
# A stored turn's role (canonical ShareGPT, formats.py) -> (chat bubble name, label shown in it).
TURN_ROLES = {"human": ("user", None), "gpt": ("assistant", None), "system": ("system", None),
              "function_call": ("assistant", "tool call"), "observation": ("tool", "tool result")}


@st.cache_data(max_entries=64, show_spinner=False)
def page(name: str, version: int, offset: int, limit: int) -> dict:
    """One page of records (browse.show)."""
    return browse.show(name, offset=offset, limit=limit, version=version)


def search_pool() -> int:
    """How many of the best hits a search checks for the whole phrase."""
    return fulltext.POOL


@st.cache_data(max_entries=64, show_spinner=False)
def search(name: str, version: int, text: str, field: str, limit: int) -> dict:
    """Ranked search hits (search.search)."""
    return fulltext.search(name, text, field=field, limit=limit, version=version)


def dataset_stats(name: str, version: int, model: str | None) -> dict:
    """Statistics of one version with one model's tokenizer (stats.stats)."""
    # The spinner is shown here, not by cache_data, so its text follows the session's language.
    with st.spinner(t("Counting tokens…")):
        return _dataset_stats(name, version, model)


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset_stats(name: str, version: int, model: str | None) -> dict:
    from tunelab.models.tokens import token_counter

    return stats.stats(name, version=version, tokenizer=token_counter(model))


@st.cache_data(max_entries=16, show_spinner=False)
def field_lengths(name: str, version: int) -> pd.DataFrame:
    """Character-length quantiles of each text field (min, p25, p50, p75, p95, max, empty)."""
    table = store.read(name, version).select(list(TEXT_FIELDS))
    rows = []
    # chosen/rejected only for a set that holds pairs: on a plain one they would read as all empty
    for f in (f for f in TEXT_FIELDS if f not in PAIR_FIELDS or table[f].null_count < table.num_rows):
        chars = pc.utf8_length(pc.fill_null(table[f], "")).to_numpy()
        q = np.quantile(chars, [0, 0.25, 0.5, 0.75, 0.95, 1]) if len(chars) else [0] * 6
        rows.append({"field": f, **dict(zip(("min", "p25", "p50", "p75", "p95", "max"), map(int, q))),
                     "empty": int((chars == 0).sum())})
    return pd.DataFrame(rows)


def clean_preview(name: str, version: int, dedup: str | None, strip: bool, drop_empty: bool,
                  redact_pii: bool, max_tokens: int | None, redact_exclude: tuple = (), redact_skip: tuple = (),
                  keep_near: tuple = ()) -> dict:
    """What clean() would do to a version: counts per reason, example records per reason and,
    for redactions, each example's text before and after."""
    with st.spinner(t("Working out what would change…")):
        return _clean_preview(name, version, dedup, strip, drop_empty, redact_pii, max_tokens,
                              tuple(redact_exclude), tuple(redact_skip), tuple(keep_near))


@st.cache_data(max_entries=16, show_spinner=False)
def _clean_preview(name: str, version: int, dedup: str | None, strip: bool, drop_empty: bool,
                   redact_pii: bool, max_tokens: int | None, redact_exclude: tuple, redact_skip: tuple,
                   keep_near: tuple = ()) -> dict:
    from tunelab.models.tokens import token_counter

    table = store.read(name, version)
    new, counts, examples = clean.plan(table, dedup=dedup, strip=strip, drop_empty=drop_empty,
                                       redact_pii=redact_pii, max_tokens=max_tokens,
                                       tokenizer=token_counter() if max_tokens else None,
                                       redact_exclude=redact_exclude, redact_skip=redact_skip,
                                       keep_near=keep_near, near_pairs=(near_pairs := []))
    redaction = {r for r in examples if r.startswith("redacted_") or r == "redaction_excluded"}
    wanted = {i for r, ids in examples.items() for i in ids[:20 if r in redaction else 5]}
    ids = table["id"].to_pylist()
    rows = {i: n for n, i in enumerate(ids) if i in wanted}
    shown = table.filter(pc.is_in(table["id"], value_set=pa.array(sorted(wanted), pa.string())))
    by_id = {r["id"]: r for r in shown.to_pylist()}
    plain = ("id", "instruction", "input", "output")
    return {
        "near_pairs": near_pairs,  # each near duplicate with the kept twin it repeats
        "before": table.num_rows,
        "after": new.num_rows,
        "counts": counts,
        "examples": {reason: [{k: by_id[i][k] for k in plain} for i in ids_[:5] if i in by_id]
                     for reason, ids_ in examples.items() if reason not in redaction},
        # per redacted (or excluded) record: its position and each text that redaction changes
        "changes": {reason: [{"id": i, "row": rows[i] + 1, "texts": redaction_diffs(by_id[i])}
                             for i in ids_[:20] if i in by_id]
                    for reason, ids_ in examples.items() if reason in redaction},
    }


def redaction_diffs(rec: dict) -> list[tuple[str, str, str]]:
    """(field, before, after) for each text of a record that PII redaction changes."""
    texts = [(f, rec.get(f) or "") for f in TEXT_FIELDS]
    texts += [("history", turn or "") for pair in rec.get("history") or [] for turn in pair]
    out = []
    for field, text in texts:
        after, found = clean.redact_text(text)
        if found:
            out.append((field, text, after))
    return out


def diff_html(before: str, after: str) -> str:
    """before -> after as one text: removed parts struck through in red, added ones in green."""
    out = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            out.append(html.escape(before[a0:a1]))
            continue
        if a1 > a0:
            out.append(f'<del style="background:#ffd7d5;color:#82071e">{html.escape(before[a0:a1])}</del>')
        if b1 > b0:
            out.append(f'<ins style="background:#ccffd8;color:#055d20;text-decoration:none">'
                       f'{html.escape(after[b0:b1])}</ins>')
    return f'<div style="white-space: pre-wrap">{"".join(out)}</div>'


SQL_PAGE_ROWS = 10_000  # rows of a result the SQL page sends to the browser


@st.cache_data(max_entries=32, show_spinner=False)
def run_sql(text: str, heads: tuple) -> dict:
    """A read-only query's first SQL_PAGE_ROWS rows, "more": whether it had others.

    `heads` ((name, version), ...) keys the cache on the data. The time limit is the CLI's
    (TUNELAB_SQL_TIMEOUT, default 30 s); a stopped query raises and so is not cached.
    """
    result = sandbox.sql(text, limit=SQL_PAGE_ROWS + 1)
    return {"columns": result["columns"], "rows": result["rows"][:SQL_PAGE_ROWS],
            "more": len(result["rows"]) > SQL_PAGE_ROWS}


def quote_ident(name: str) -> str:
    """A dataset name as a SQL identifier (names may hold '-' and '.')."""
    return '"' + name.replace('"', '""') + '"'


def sql_examples(names: list[str]) -> dict[str, str]:
    """Example queries for the SQL page, over the first dataset (and every one for counts)."""
    t = quote_ident(names[0])
    counts = "\nUNION ALL\n".join(
        f"SELECT '{n}' AS dataset, count(*) AS records FROM {quote_ident(n)}" for n in names[:50])
    return {
        "Count per dataset": counts,
        "Longest outputs": f"SELECT id, instruction, length(output) AS output_chars\nFROM {t}\n"
                           "ORDER BY output_chars DESC\nLIMIT 20",
        "Records with history": f"SELECT id, instruction, len(history) AS earlier_turns\nFROM {t}\n"
                                "WHERE len(history) > 0",
        "Duplicates by instruction": f"SELECT lower(trim(instruction)) AS instruction, count(*) AS copies\n"
                                     f"FROM {t}\nGROUP BY 1\nHAVING count(*) > 1\nORDER BY copies DESC",
    }


def fill_sql(text: str) -> None:
    """Button callback: put a query into the editor."""
    st.session_state["sql.query"] = text


def heads() -> tuple:
    """(name, head version) of every dataset: the cache key of anything that reads all heads."""
    return tuple((d["name"], d["version"]) for d in store.list_datasets())


def lineage_headers() -> dict[str, str]:
    """lineage()'s column headers in the session's language (st.dataframe column_config)."""
    return {"version": t("Version"), "head": t("Head"), "op": t("Operation"), "params": t("Parameters"),
            "parent": t("Parent"), "records": t("Records"), "time": t("Time"), "from": t("From")}


def lineage(name: str) -> pd.DataFrame:
    """The dataset's versions, newest first, as a table (version, op, params, parent, ...)."""
    m = store.manifest(name)
    rows = [
        {
            "version": v["version"],
            "head": "●" if v["version"] == m["head"] else "",
            "op": v.get("op", ""),
            "params": json.dumps(v.get("params") or {}, ensure_ascii=False),
            "parent": v.get("parent"),
            "records": v.get("records"),
            "time": v.get("created", ""),
            "from": _source(v.get("lineage")),
        }
        for v in reversed(m["versions"])
    ]
    return pd.DataFrame(rows)


def _source(lineage: dict | None) -> str:
    return f"{lineage.get('source')} v{lineage.get('version')}" if lineage else ""


def version_label(entry: dict, head: int) -> str:
    """How a version reads in the picker: v3 · clean · 280 records (head)."""
    mark = t(" (head)") if entry["version"] == head else ""
    return t("v{version} · {op} · {records} records", version=entry["version"], op=entry.get("op", ""),
             records=entry.get("records")) + mark


@st.cache_data(max_entries=64, show_spinner=False)
def originals(name: str, version: int, ids: tuple[str, ...]) -> dict[str, dict]:
    """The original turns and tools schema of the given records (those that carry them).

    Returns:
        {id: {"turns": [{"from", "value"}] or None, "tools": parsed JSON or None}}.
    """
    import pyarrow.parquet as pq

    if not ids:
        return {}
    path = store.version_path(name, version)
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.names
    if not {"conversations", "tools"} <= set(names):  # a version written before the fields existed
        return {}
    cols = [names.index("conversations"), names.index("tools")]
    stats = [meta.row_group(g).column(c).statistics for g in range(meta.num_row_groups) for c in cols]
    if all(s is not None and s.null_count == meta.row_group(g // 2).num_rows for g, s in enumerate(stats)):
        return {}  # no record carries turns or tools (Alpaca-like data): no need to read a 1M-row file
    # Three columns and the page's ids only: a page of a 1M-record set must not read every text.
    table = pq.read_table(path, columns=["id", "conversations", "tools"], filters=[("id", "in", list(ids))])
    out = {}
    for r in table.select(["id", "conversations", "tools"]).to_pylist():
        turns, tools = _loads(r["conversations"]), _loads(r["tools"])
        if turns or tools:
            out[r["id"]] = {"turns": turns if isinstance(turns, list) else None, "tools": tools}
    return out


def _loads(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text  # shown as written


def user_text(record: dict, original: dict | None) -> str:
    """What the user asked: the last human turn of a tool-call conversation (whose instruction
    field holds the tool's result), else instruction (and input)."""
    turns = (original or {}).get("turns") or []
    asked = [t.get("value") or "" for t in turns if isinstance(t, dict) and t.get("from") == "human"]
    if asked and any(t.get("from") in ("function_call", "observation") for t in turns if isinstance(t, dict)):
        return asked[-1]
    return record.get("instruction") or record.get("input") or ""


def records_frame(records: list[dict], extras: dict[str, dict] | None = None) -> pd.DataFrame:
    """Records as a table; history shown as its number of earlier turns; chosen, rejected and
    kto_tag columns when the page holds preference or KTO records. A tool-call conversation
    shows the user's question as its instruction, and the tools it may call."""
    extras = extras or {}
    extra = [f for f in PREFERENCE_FIELDS if any(f in r for r in records)]
    rows = [{**{k: r.get(k) for k in ("id", *TEXT_FIELDS, *extra)}, "history": len(r.get("history") or [])}
            for r in records]
    columns = [*PUBLIC_FIELDS, *extra]
    for row, r in zip(rows, records):
        if r["id"] in extras:
            row["instruction"] = user_text(r, extras[r["id"]])
    if any((extras.get(r["id"]) or {}).get("tools") for r in records):
        columns.append("tools")
        for row, r in zip(rows, records):
            row["tools"] = ", ".join(tool_names((extras.get(r["id"]) or {}).get("tools")))
    return pd.DataFrame(rows, columns=columns)


def tool_names(tools) -> list[str]:
    """The names of the tools in a tools schema (a list of {"name", ...} or OpenAI {"function": ...})."""
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        return []
    return [str((t.get("function") or t).get("name", "?")) for t in tools if isinstance(t, dict)]


def text_block(text: str, query_text: str = "", mono: bool = False) -> None:
    """Record text as written (no Markdown), with the search terms marked."""
    font = "; font-family: monospace; font-size: 0.9em" if mono else ""
    st.html(f'<div style="white-space: pre-wrap{font}">{highlight.to_html(text, query_text)}</div>')


def conversation(record: dict, query_text: str = "", original: dict | None = None) -> None:
    """A record as the chat the model will be trained on: system, history, prompt, answer.

    A record imported with its original turns (tool calls, tool results) is shown turn by turn as
    written, with the tools schema it carries.
    """
    if original and original.get("tools"):
        names = tool_names(original["tools"])
        with st.expander(t("Tools the model may call: {names} (JSON schema)", names=", ".join(names) or "?"),
                         icon=":material/build:"):
            st.json(original["tools"], expanded=3)
    turns = (original or {}).get("turns") or []
    if any(isinstance(x, dict) and TURN_ROLES.get(x.get("from"), (None, None))[1] for x in turns):
        # Only a conversation with tool turns is shown as stored: a preference pair's or a KTO record's
        # stored turns carry one answer, and the record's own fields say more (both answers, the label).
        _original_turns(record, turns, query_text)
        return
    turns = [("system", record.get("system") or "")]
    for pair in record.get("history") or []:
        user, assistant = (list(pair) + ["", ""])[:2]
        turns += [("user", user or ""), ("assistant", assistant or "")]
    prompt = "\n\n".join(p for p in (record.get("instruction") or "", record.get("input") or "") if p)
    pair = record.get("chosen") is not None and record.get("rejected") is not None
    turns += [("user", prompt)] + ([] if pair else [("assistant", record.get("output") or "")])
    for role, text in turns:
        if role == "system" and not text:
            continue
        with st.chat_message(role, avatar=ROLE_AVATARS[role]):
            if text:
                text_block(text, query_text)
            else:
                st.caption(t("(empty)"))
    if pair:
        answers(record, query_text)
    elif record.get("kto_tag") is not None:
        st.badge(t("desirable answer (KTO)") if record["kto_tag"] else t("undesirable answer (KTO)"),
                 icon=":material/thumb_up:" if record["kto_tag"] else ":material/thumb_down:",
                 color="green" if record["kto_tag"] else "red")


def _original_turns(record: dict, turns: list, query_text: str) -> None:
    """Stored turns as chat bubbles: a tool call and a tool result each labelled as such."""
    if record.get("system") and not any(isinstance(x, dict) and x.get("from") == "system" for x in turns):
        turns = [{"from": "system", "value": record["system"]}, *turns]
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role, label = TURN_ROLES.get(turn.get("from"), (str(turn.get("from") or "?"), None))
        with st.chat_message(role, avatar=ROLE_AVATARS.get(label or role, ":material/chat:")):
            if label:
                st.badge(t(label), icon=ROLE_AVATARS[label], color="violet" if label == "tool call" else "orange")
            text = turn.get("value") or ""
            if text and label:
                text_block(_pretty(text), query_text, mono=True)
            elif text:
                text_block(text, query_text)
            else:
                st.caption(t("(empty)"))


def _pretty(text: str) -> str:
    """A JSON turn indented for reading; anything else as written."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        return text


def answers(record: dict, query_text: str = "") -> None:
    """A preference pair's two answers side by side: the chosen one and the rejected one."""
    chosen, rejected = st.columns(2)
    with chosen:
        st.badge(t("Chosen answer"), icon=":material/thumb_up:", color="green")
        with st.chat_message("assistant", avatar=ROLE_AVATARS["assistant"]):
            text_block(record["chosen"], query_text)
    with rejected:
        st.badge(t("Rejected answer"), icon=":material/thumb_down:", color="red")
        with st.chat_message("assistant", avatar=ROLE_AVATARS["assistant"]):
            text_block(record["rejected"], query_text)
