"""What a file's records are — plain, preference pairs or KTO records — decided from all of them.

A KTO file marks each answer good or bad with `kto_tag` or TRL's `label` (true/false), in any record
layout (`messages`, Alpaca fields, prompt/completion). Left to the first record, a file whose first
record lacks the mark imported every "bad" answer as a plain SFT target. `decide` reads every record
once (formats.normaliser's "probe" mode hands back the parsed objects) and sets `Columns.expect`, so
the import that follows holds every record to the same kind and names each that does not fit — a
label that is not true/false, or a missing one — with its line or index.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tunelab.data import formats
from tunelab.data.formats import Columns
from tunelab.errors import TuneLabError

LABEL = "label"  # TRL's unpaired-preference column
_WORDS = {"true", "false", "1", "0", "yes", "no"}


def _boolean(v: Any, typed: bool) -> bool:
    """A true/false mark: a JSON boolean, or in a table's text column a word such as `true` or `0`."""
    if v.__class__ is bool:
        return True
    return typed and (isinstance(v, int) and v in (0, 1) or isinstance(v, str) and v.strip().lower() in _WORDS)


def decide(path: Path, fmt: str, cols: Columns) -> Columns:
    """cols with `expect` (and the label column) set from every record of the file at path.

    Pairs (`chosen`/`rejected`) and labelled records (`kto_tag`, or a true/false `label`) are counted;
    the larger group decides. A file with neither is left as it is (each record by its keys), and
    so is one whose `label` column never holds a true/false value (a class label, not a KTO mark).
    """
    if cols.expect:
        return cols
    try:
        container, items = formats.read_file(path, fmt, replace(cols, expect="probe"))
        typed = container in ("csv", "tsv", "parquet")
        pairs = tagged = labelled = 0
        for _, obj in items:
            if obj.__class__ is not dict:
                continue  # a bad record or a non-object: the import names it
            if obj.get(cols.chosen) is not None or obj.get(cols.rejected) is not None:
                pairs += 1
            elif obj.get(cols.kto_tag) is not None:
                tagged += 1
            elif _boolean(obj.get(LABEL), typed):
                labelled += 1
    except TuneLabError:
        return cols  # the import itself reports what is wrong with the file
    if not pairs and not (tagged or labelled):
        return cols
    if pairs > tagged + labelled:
        return replace(cols, expect="pair")
    return replace(cols, expect="kto", kto_tag=cols.kto_tag if tagged >= labelled else LABEL)
