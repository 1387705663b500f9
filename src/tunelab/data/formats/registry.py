"""The format registry: each container format is one module that calls `register(Format(...))`.

`sniff` (in `__init__`) first lets a format claim a file by its suffix (`suffixes`), then asks each
format's `sniff(probe)` in `order`; `read_file` calls the chosen format's `read(path, kind, cols)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tunelab.data.formats.base import Columns, Item


@dataclass(frozen=True)
class Probe:
    """What sniffing looks at: the path, its lower-case suffix, its first 4 bytes and first non-space byte."""

    path: Path
    suffix: str
    head: bytes
    first: bytes


@dataclass(frozen=True)
class Format:
    """One container format.

    name: the container name (`sniff`'s answer); suffixes: file suffixes that decide it without
    opening the file; sniff: True when the opened file's probe is this format (None: by suffix only);
    read(path, kind, cols): the records, as `(line, record or reason)` items; typed: a table whose
    columns hold typed values (numbers are coerced to text); forced: `--format <name>` picks it;
    write(records, path): writes records in this format (None: import only; `data/export.py` owns
    the export layouts); order: the rank of `sniff` among the formats.
    """

    name: str
    read: Callable[[Path, str, Columns], Iterator[Item]]
    suffixes: tuple[str, ...] = ()
    sniff: Callable[[Probe], bool] | None = None
    typed: bool = False
    forced: bool = False
    write: Callable | None = None
    order: int = 100


REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    if fmt.name in REGISTRY:
        raise ValueError(f"format {fmt.name!r} is registered twice")
    REGISTRY[fmt.name] = fmt
    return fmt


def by_suffix(suffix: str) -> Format | None:
    return next((f for f in REGISTRY.values() if suffix in f.suffixes), None)


def by_content(probe: Probe) -> Format | None:
    return next((f for f in sorted(REGISTRY.values(), key=lambda f: f.order)
                 if f.sniff is not None and f.sniff(probe)), None)
