"""`tunelab data ...`: import, browse, search, SQL, stats, clean, split, export, undo.

Heavy modules (DuckDB, pyarrow, tokenizers) are imported inside the commands so that every other
`tunelab` command starts fast.
"""

from __future__ import annotations

import sys
import unicodedata

from tunelab.cli import add_json, emit

IMPORT_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "csv", "parquet")
EXPORT_FORMATS = ("alpaca", "jsonl", "sharegpt", "parquet", "llamafactory")
CELL = 48


def register(sub) -> None:
    from tunelab.data.schema import SEARCH_FIELDS

    data = sub.add_parser("data", help="import, browse, search, clean, split and export datasets")
    cmds = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))

    p = cmds.add_parser("import", help="import a file (or a LLaMA-Factory dataset_info.json)")
    p.add_argument("path")
    p.add_argument("--name", help="dataset name (default: the file's stem)")
    p.add_argument("--format", default="auto", choices=IMPORT_FORMATS)
    p.add_argument("--map", default=None, metavar="FIELD=COLUMN,...",
                   help="CSV/Parquet column mapping, e.g. instruction=question,output=answer")
    _done(p, cmd_import)

    _done(cmds.add_parser("list", help="datasets with their head version"), cmd_list)

    p = cmds.add_parser("show", help="one page of records")
    p.add_argument("name")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--version", type=int)
    _done(p, cmd_show)

    p = cmds.add_parser("search", help="ranked full-text search (Chinese included)")
    p.add_argument("name")
    p.add_argument("query")
    p.add_argument("--field", default="any", choices=SEARCH_FIELDS)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--version", type=int)
    _done(p, cmd_search)

    p = cmds.add_parser("sql", help="one read-only SELECT; each dataset is a table of its name")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=10000, help="most rows returned (1 to 1,000,000)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop the query after S seconds (default: $TUNELAB_SQL_TIMEOUT or 30)")
    _done(p, cmd_sql)

    p = cmds.add_parser("stats", help="counts, duplicates, empty outputs, token lengths")
    p.add_argument("name")
    p.add_argument("--model", help="whose tokenizer counts tokens (default: smollm2-135m-instruct)")
    p.add_argument("--version", type=int)
    _done(p, cmd_stats)

    p = cmds.add_parser("clean", help="write a cleaned new version")
    p.add_argument("name")
    p.add_argument("--dedup", choices=("exact", "near"))
    p.add_argument("--strip", action="store_true", help="trim whitespace around every field")
    p.add_argument("--drop-empty", action="store_true", help="drop records without output or prompt")
    p.add_argument("--redact-pii", action="store_true", help="mask emails, phones, IPs, cards, IDs")
    p.add_argument("--redact-exclude", action="append", metavar="KEYWORD_OR_REGEX",
                   help="with --redact-pii: leave records holding this keyword or regex (case-insensitive) "
                        "as written (repeatable)")
    p.add_argument("--redact-skip", action="append", metavar="ID_OR_POSITION",
                   help="with --redact-pii: never redact these records, by id or 1-based position "
                        "(repeatable or comma-separated)")
    p.add_argument("--keep-near", action="append", metavar="ID",
                   help="with --dedup near: keep these records although they nearly repeat another "
                        "(repeatable or comma-separated; the JSON's near_duplicates names each removed twin)")
    p.add_argument("--max-tokens", type=int, help="drop records longer than N tokens")
    p.add_argument("--model", help="tokenizer for --max-tokens (default: smollm2-135m-instruct)")
    _done(p, cmd_clean)

    p = cmds.add_parser("split", help="seeded split into NAME-train and NAME-test")
    p.add_argument("name")
    p.add_argument("--test-size", type=float, required=True, help="fraction (0-1) or a count")
    p.add_argument("--seed", type=int, default=42)
    _done(p, cmd_split)

    p = cmds.add_parser("export", help="write a dataset version to a file or folder")
    p.add_argument("name")
    p.add_argument("out")
    p.add_argument("--format", choices=EXPORT_FORMATS, help="default: from OUT's suffix, else alpaca")
    p.add_argument("--version", type=int)
    p.add_argument("--force", action="store_true", help="replace an existing file or folder at OUT (refused otherwise)")
    _done(p, cmd_export)

    p = cmds.add_parser("undo", help="back to the previous version")
    p.add_argument("name")
    _done(p, cmd_undo)

    p = cmds.add_parser("versions", help="every version with its operation (lineage)")
    p.add_argument("name")
    _done(p, cmd_versions)

    p = cmds.add_parser("delete", help="remove a dataset and all its versions")
    p.add_argument("name")
    _done(p, cmd_delete)


def _done(p, func) -> None:
    add_json(p)
    p.set_defaults(func=func)


# ---------------------------------------------------------------- human output


def _width(text: str) -> int:
    """Terminal columns: CJK and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(value) -> str:
    text = " ".join(str("" if value is None else value).split())
    if _width(text) <= CELL:
        return text
    while _width(text) > CELL - 1:
        text = text[:-1]
    return text + "…"


def table(rows: list[list], columns: list[str]) -> str:
    """A plain-text table with truncated cells, aligned for CJK text too."""
    cells = [[_cell(c) for c in columns]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _records_text(result: dict, what: str = "records") -> str:
    cols = ["id", "instruction", "input", "output"]
    rows = [[r[c] for c in cols] for r in result["records"]]
    if "scores" in result:
        cols, rows = ["score"] + cols, [[s] + r for s, r in zip(result["scores"], rows)]
    return f"{table(rows, cols)}\n{len(rows)} of {result['total']} {what}"


def _kv(obj: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in obj.items())


# ---------------------------------------------------------------- commands


def cmd_import(args) -> int:
    from tunelab.data.importer import import_path, parse_map

    result = import_path(args.path, args.name, args.format, parse_map(args.map))
    imported = (sum(d["imported"] for d in result["datasets"]) if "datasets" in result
                else result["imported"])
    emit(result, args.json, _import_text)
    for d in result["datasets"] if "datasets" in result else [result]:
        if d.get("existing"):  # documented, but never silent: the old head is one undo away
            sys.stderr.write(f"note: {d['name']} already existed; added v{d['version']} over "
                             f"v{d['previous_version']} (`tunelab data undo {d['name']}` goes back)\n")
    if not imported:
        sys.stderr.write(f"error: nothing could be imported from {args.path}\n")
        return 1
    return 0


def _import_text(result: dict) -> str:
    parts = result["datasets"] if "datasets" in result else [result]
    lines = [f"{d['name']} v{d['version']}: {d['imported']} imported, {d['skipped']} skipped"
             for d in parts]
    for d in parts:
        lines += [f"  {d['name']} line {e['line']}: {e['error']}" for e in d.get("errors", [])[:20]]
    if "datasets" in result:
        lines += [f"skipped {s['name']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines)


def cmd_list(args) -> int:
    from tunelab.data import store

    result = {"datasets": store.list_datasets()}
    broken = store.unreadable()
    if broken:  # listed apart: every other dataset stays usable
        result["unreadable"] = broken
        for b in broken:
            sys.stderr.write(f"warning: {b['error']}\n")
    rows = [[d["name"], d["version"], d["records"]] for d in result["datasets"]]
    emit(result, args.json, lambda r: table(rows, ["name", "version", "records"]) if rows else "no datasets yet")
    return 0


def cmd_show(args) -> int:
    from tunelab.data import browse

    emit(browse.show(args.name, args.offset, args.limit, args.version), args.json, _records_text)
    return 0


def cmd_search(args) -> int:
    from tunelab.data import search

    result = search.search(args.name, args.query, args.field, args.limit, args.version)
    emit(result, args.json, lambda r: _records_text(r, "matches") + f" ({r['exact']} match exactly, first)")
    return 0


def cmd_sql(args) -> int:
    from tunelab.data import sql

    emit(sql.sql(args.query, args.limit, args.timeout), args.json, lambda r: table(r["rows"], r["columns"]))
    return 0


def cmd_stats(args) -> int:
    from tunelab.data import stats, store

    store.resolve_version(args.name, args.version)  # a bad name or version fails before a tokenizer loads
    result = stats.stats(args.name, args.version, args.token_counter(args.model))  # set by models/cli.py
    emit(result, args.json, _stats_text)
    return 0


def _stats_text(s: dict) -> str:
    t = s["tokens"]
    trunc = ", ".join(f">{k}: {v:.1%}" for k, v in s["truncated"].items())
    return "\n".join([
        f"{s['name']} v{s['version']}: {s['records']} records",
        f"duplicates: {s['duplicates']}   empty outputs: {s['empty_output']}",
        f"tokens ({s['tokenizer']}): p50 {t['p50']}  p95 {t['p95']}  max {t['max']}",
        f"truncated at {trunc}",
    ])


def cmd_clean(args) -> int:
    from tunelab.data import clean

    tokenizer = None
    if args.max_tokens:
        from tunelab.data import store

        store.resolve_version(args.name)  # a bad name fails before a tokenizer loads
        tokenizer = args.token_counter(args.model)  # the models layer's counter, set by models/cli.py
    skip = [s for arg in args.redact_skip or [] for s in arg.split(",") if s.strip()]
    keep = [s.strip() for arg in args.keep_near or [] for s in arg.split(",") if s.strip()]
    result = clean.clean(args.name, args.dedup, args.strip, args.drop_empty, args.redact_pii,
                         args.max_tokens, tokenizer, args.redact_exclude, skip, keep)
    out = {k: result[k] for k in ("version", "before", "after", "removed", "near_duplicates")}
    emit(out, args.json,
         lambda r: f"v{r['version']}: {r['before']} -> {r['after']} records\n" + _kv(r["removed"]))
    return 0


def cmd_split(args) -> int:
    from tunelab.data import split

    result = split.split(args.name, args.test_size, args.seed)
    emit(result, args.json,
         lambda r: "\n".join(f"{k}: {v['name']} ({v['records']} records)" for k, v in r.items()))
    return 0


def _export_format(out: str) -> str:
    suffix = out.lower().rsplit(".", 1)[-1] if "." in out else ""
    return {"parquet": "parquet", "jsonl": "jsonl"}.get(suffix, "alpaca")


def cmd_export(args) -> int:
    from tunelab.data.export import export

    result = export(args.name, args.out, args.format or _export_format(args.out), args.version, force=args.force)
    emit(result, args.json, lambda r: _kv(r) if isinstance(r, dict) else str(r))
    return 0


def cmd_undo(args) -> int:
    from tunelab.data import store

    entry = store.undo(args.name)
    result = {"name": args.name, "version": entry["version"], "records": entry["records"]}
    emit(result, args.json, lambda r: f"{r['name']} is back at v{r['version']} ({r['records']} records)")
    return 0


def cmd_versions(args) -> int:
    from tunelab.data import store

    m = store.manifest(args.name)
    result = {"name": args.name, "head": m["head"], "versions": m["versions"]}
    rows = [[("* " if v["version"] == m["head"] else "  ") + str(v["version"]), v.get("parent") or "",
             v["op"], v["records"], v["created"], v.get("params") or ""] for v in m["versions"]]
    emit(result, args.json, lambda r: table(rows, ["version", "parent", "op", "records", "created", "params"]))
    return 0


def cmd_delete(args) -> int:
    from tunelab.data import store

    store.delete(args.name)
    emit({"name": args.name, "deleted": True}, args.json, lambda r: f"deleted {r['name']}")
    return 0
