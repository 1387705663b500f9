"""Prompt templates for generation, kept as numbered immutable versions in the workspace.

Layout: prompts/<template>/v<N>.json = {name, version, text, task_description, mistakes,
created, parent, note}. A version is never rewritten: editing saves v<N+1> with parent N, so
every generated record can name the exact prompt that produced it (its lineage holds
template + prompt_version).

Variables in the text: {seed_examples}, {n}, {task_description}, {mistakes}. They are replaced
literally (not with str.format), so braces elsewhere in a template (a JSON example) are safe.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.evals.metrics import has_cjk
from tunelab.jsonio import locked, read_json, write_json

VARIABLES = ("seed_examples", "n", "task_description", "mistakes")

# Tuned on SmolLM2-135M-Instruct: the tiny model follows "numbered list, nothing else" best when
# the examples themselves are a numbered list and the request comes last.
DEFAULT_EN = """{task_description}

Here are some examples:
{seed_examples}

{mistakes}Write {n} new questions or tasks like these, each one different from the examples. Write them as a numbered list, one per line, and nothing else."""

DEFAULT_ZH = """{task_description}

例子：
{seed_examples}

{mistakes}请仿照上面的例子，生成{n}个类似的日常问题。要求：用简单、口语化的语言；每个问题一行，用编号列出（1. 2. 3.）；不要解释，不要多余的话。"""

DEFAULTS = {
    "default-en": {
        "text": DEFAULT_EN,
        "task_description": "You write instructions that people give to an AI assistant.",
    },
    "default-zh": {
        "text": DEFAULT_ZH,
        "task_description": "我想收集人们日常会问的问题，比如“我最近运气怎么样？”这一类。",
    },
}
DEFAULT_TEMPLATE = "default-en"
MAX_MISTAKES = 8


def _dir(name: str) -> Path:
    return workspace.subdir("prompts") / workspace.validate_name(name, "template name")


def _numbers(name: str) -> list[int]:
    d = _dir(name)
    found = (re.fullmatch(r"v(\d+)\.json", p.name) for p in d.glob("v*.json")) if d.exists() else ()
    return sorted(int(m.group(1)) for m in found if m)


def templates() -> list[str]:
    """Every template name: the two defaults plus those saved in the workspace."""
    saved = {d.name for d in workspace.subdir("prompts").iterdir() if d.is_dir() and _numbers(d.name)}
    return list(DEFAULTS) + sorted(saved - set(DEFAULTS))


def save(
    name: str,
    text: str,
    task_description: str = "",
    mistakes: list[str] | None = None,
    parent: int | None = None,
    note: str = "",
) -> dict:
    """Save text as the next version of template name and return that version.

    Args:
        name: template name (a NAME).
        text: template text with {variables}.
        task_description: what {task_description} becomes.
        mistakes: what {mistakes} lists ("mistakes to avoid").
        parent: the version this one was edited from.
        note: why this version exists.

    Returns:
        The saved version: {name, version, text, task_description, mistakes, created, parent, note}.
    """
    if not text.strip():
        raise TuneLabError("a prompt template cannot be empty")
    d = _dir(name)
    d.mkdir(parents=True, exist_ok=True)
    with locked(d / ".lock"):
        version = max(_numbers(name), default=0) + 1
        entry = {
            "name": name,
            "version": version,
            "text": text,
            "task_description": task_description,
            "mistakes": list(mistakes or []),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parent": parent,
            "note": note,
        }
        write_json(d / f"v{version}.json", entry)
    return entry


def _materialise_default(name: str) -> None:
    """A default template becomes v1 in the workspace on first use, so lineage can point at it."""
    if name in DEFAULTS and not _numbers(name):
        with locked(workspace.subdir("prompts") / f".{name}.lock"):
            if not _numbers(name):
                save(name, note="default template", **DEFAULTS[name])


def versions(name: str) -> list[dict]:
    """Every version of a template, oldest first."""
    _materialise_default(name)
    found = [read_json(_dir(name) / f"v{n}.json") for n in _numbers(name)]
    if not found:
        raise TuneLabError(f"unknown prompt template {name!r} (known: {', '.join(templates())})")
    return found


def get(name: str, version: int | None = None) -> dict:
    """One version of a template (default: the latest)."""
    all_versions = versions(name)
    if version is None:
        return all_versions[-1]
    for v in all_versions:
        if v["version"] == int(version):
            return v
    raise TuneLabError(f"prompt template {name!r} has no version {version}")


def seed_block(seeds: list[dict]) -> str:
    """Seed instructions as a numbered list, one line each.

    Inputs are left out: the model is asked for instructions, and multi-line inputs made small
    models copy the layout instead of writing new items.
    """
    return "\n".join(f"{i}. {' '.join(s.get('instruction', '').split())}" for i, s in enumerate(seeds, 1))


def mistakes_block(mistakes: list[str], chinese: bool) -> str:
    """The "mistakes to avoid" section, or "" when there are none."""
    if not mistakes:
        return ""
    head = "避免这些错误：" if chinese else "Avoid these mistakes:"
    return head + "\n" + "\n".join(f"- {m}" for m in mistakes) + "\n\n"


def render(version: dict, seeds: list[dict], n: int) -> str:
    """The prompt text of a template version for these seeds and n.

    A template without a {mistakes} variable still gets the section, before its last paragraph.
    """
    text = version["text"]
    mistakes = mistakes_block(version.get("mistakes") or [], has_cjk(text))
    if "{mistakes}" not in text and mistakes:
        head, sep, last = text.rpartition("\n\n")
        text = f"{head}{sep}{{mistakes}}{last}" if sep else f"{{mistakes}}{text}"
    values = {
        "seed_examples": seed_block(seeds),
        "n": str(n),
        "task_description": version.get("task_description", ""),
        "mistakes": mistakes,
    }
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text.strip()


def new_version_with_mistakes(prev: dict, reasons: list[str], note: str = "") -> dict:
    """Save the next version of prev with reasons added to its "mistakes to avoid".

    Args:
        prev: the version the rejected batch was generated with.
        reasons: rejection reasons, most common first (see filters.reason_counts).
        note: why; defaults to a summary of what was added.

    Returns:
        The new version.
    """
    merged: list[str] = []
    for m in [*(prev.get("mistakes") or []), *reasons]:
        m = m.strip()
        if m and m not in merged:
            merged.append(m)
    added = [m for m in merged if m not in (prev.get("mistakes") or [])]
    if not added:
        raise TuneLabError("no new mistakes to add: reject items with a reason first")
    return save(
        prev["name"],
        prev["text"],
        prev.get("task_description", ""),
        merged[-MAX_MISTAKES:],
        parent=prev["version"],
        note=note or f"added {len(added)} mistake(s) to avoid: " + "; ".join(added),
    )


def from_file(path: str) -> dict:
    """The template in a text (or v<N>.json) file, saved as a version of a template named after it.

    The same text as that template's latest version reuses it instead of adding a copy.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise TuneLabError(f"prompt file {path} not found")
    text = p.read_text(encoding="utf-8")
    fields = {"text": text}
    if p.suffix == ".json":
        obj = read_json(p) or {}
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise TuneLabError(f"{p.name} is not a prompt version (a JSON object with a `text`)")
        fields = {k: obj[k] for k in ("text", "task_description", "mistakes") if k in obj}
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", p.stem)[:64].strip(".") or "prompt"
    if p.suffix == ".json" and re.fullmatch(r"v\d+", p.stem):
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", p.parent.name)[:64] or "prompt"
    if _numbers(name):
        latest = get(name)
        if all(latest.get(k) == v for k, v in fields.items()):
            return latest
    return save(name, note=f"from {p.name}", **fields)
