"""Automatic filters for generated items, each rejection carrying a reason a person can read.

Follows self-instruct: drop items that are too short or too long, near-duplicates of the seed
pool or of items already kept (ROUGE-L >= 0.7), items mentioning things a text model cannot
handle (images, graphs...), and items whose output is empty or not in the required format.
Token counts and ROUGE-L come from tunelab.evals.metrics, whose tokenizer splits CJK text into
single characters, so the length and duplicate checks work for Chinese as well as English.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from tunelab.evals.metrics import rouge_l, tokenize

DEFAULT_BLOCKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "photo", "video", "diagram",
    "flowchart", "draw", "in the competition", "图片", "图像", "照片", "视频", "画图",
    # chatter small models write instead of items
    "here's a list", "here is a list", "additional examples", "the first example",
)
# An instruction that carries its own answer ("...? Answer: ...") is two fields run together.
ANSWER_INSIDE = re.compile(r"(?:(?:^|\s)(?:answer|solution|output|response)|答案|回答|解答)\s*[:：]", re.IGNORECASE)
OUTPUT_FORMATS = ("any", "json", "single-line", "number")

# What each automatic rule means as advice for the next prompt version.
ADVICE = {
    "too_short": "Do not write fragments: every item is a complete sentence.",
    "too_long": "Keep every item short: one or two sentences.",
    "duplicate_seed": "Do not copy or lightly reword the examples; every item must be new.",
    "duplicate": "Do not repeat yourself; every item must differ from the others.",
    "blocklist": "Do not ask about images, graphs, pictures or anything a text model cannot see.",
    "format": "Give the answer in the required format.",
    "empty_output": "Every item needs an answer.",
    "answer_inside": "Write only the question or task, not its answer.",
    "parse": "Write one item per line as a numbered list (1. 2. 3.), with no other commentary.",
}


@dataclass
class FilterConfig:
    """Thresholds of the automatic filters."""

    min_tokens: int = field(default=3, metadata={"help": "Fewer tokens (words; one per Chinese character) is too short."})
    max_tokens: int = field(default=150, metadata={"help": "More tokens in the instruction is too long."})
    max_similarity: float = field(default=0.7, metadata={"help": "ROUGE-L at or above this against the seeds or a kept item is a duplicate (self-instruct uses 0.7)."})
    blocklist: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKLIST), metadata={"help": "Items containing any of these words are rejected."})
    require_output: bool = field(default=False, metadata={"help": "Reject items whose output is empty."})
    max_paraphrase_similarity: float = field(default=0.9, metadata={"help": "A paraphrase at or above this ROUGE-L against its original changed too little."})
    output_format: str = field(default="any", metadata={"help": "any, json (output parses as JSON), single-line or number."})


def _keyword_re(word: str) -> re.Pattern:
    """Whole-word match for Latin words ("image" must not hit "imagine"); substring for CJK."""
    escaped = re.escape(word.lower())
    return re.compile(rf"\b{escaped}\b" if word.isascii() else escaped)


def blocked_word(text: str, blocklist: list[str]) -> str | None:
    low = text.lower()
    return next((w for w in blocklist if w.strip() and _keyword_re(w.strip()).search(low)), None)


def format_problem(output: str, fmt: str) -> str | None:
    """Why output does not match the required format, or None."""
    if fmt == "json":
        try:
            json.loads(output)
        except json.JSONDecodeError:
            return "output is not valid JSON"
    elif fmt == "single-line" and "\n" in output.strip():
        return "output spans several lines (one line required)"
    elif fmt == "number" and not re.fullmatch(r"\s*-?[0-9][0-9,]*(\.[0-9]+)?\s*", output):
        return "output is not a number"
    return None


def most_similar(text: str, pool: list[str]) -> tuple[float, str]:
    """The highest ROUGE-L of text against the pool, and that pool entry."""
    best, match = 0.0, ""
    for other in pool:
        score = rouge_l(text, other)
        if score > best:
            best, match = score, other
    return best, match


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def check(item: dict, seeds: list[str], kept: list[str], cfg: FilterConfig) -> tuple[str, str] | None:
    """The first instruction rule an item breaks as (rule, reason), or None when it passes.

    Args:
        item: {instruction, input, output}.
        seeds: instruction texts of the seed pool.
        kept: instruction texts already accepted (earlier in this batch or before).
        cfg: thresholds.

    Returns:
        (rule, reason) or None; rule is a key of ADVICE, reason one readable sentence.
    """
    text = item.get("instruction", "")
    n = len(tokenize(text))
    if n < cfg.min_tokens:
        return "too_short", f"too short ({n} tokens, minimum {cfg.min_tokens})"
    if n > cfg.max_tokens:
        return "too_long", f"too long ({n} tokens, maximum {cfg.max_tokens})"
    if ANSWER_INSIDE.search(text):
        return "answer_inside", "the instruction contains an answer (Answer:/Solution:)"
    word = blocked_word(" ".join([text, item.get("input", "")]), cfg.blocklist)
    if word:
        return "blocklist", f"contains the blocked keyword {word!r}"
    for rule, pool, what in (("duplicate_seed", seeds, "a seed"), ("duplicate", kept, "an earlier item")):
        score, match = most_similar(text, pool)
        if score >= cfg.max_similarity:
            return rule, f"near-duplicate of {what} (ROUGE-L {score:.2f}): {_short(match)}"
    return None


def check_output(item: dict, cfg: FilterConfig) -> tuple[str, str] | None:
    """The output rule an item breaks (empty output, wrong format) as (rule, reason), or None."""
    output = item.get("output", "")
    if not output.strip():
        return ("empty_output", "empty output") if cfg.require_output else None
    problem = format_problem(output, cfg.output_format)
    return ("format", problem) if problem else None


def _mark(item: dict, hit: tuple[str, str] | None) -> bool:
    if hit:
        item.update(status="rejected", rule=hit[0], reason=hit[1])
    else:
        item.update(status="accepted", rule="", reason="")
    return not hit


def apply(
    items: list[dict], seeds: list[str], cfg: FilterConfig, kept: list[str] | None = None, outputs: bool = True
) -> list[dict]:
    """Set status (accepted | rejected), rule and reason on each item, in order.

    An accepted item joins the pool, so a later near-copy of it in the same batch is rejected.
    Items already rejected (parse failures) are left as they are.

    Args:
        items: candidate items; changed in place.
        seeds: instruction texts of the seed pool.
        cfg: thresholds.
        kept: instructions accepted before this batch.
        outputs: also check outputs (off when outputs are written later, by a second call).

    Returns:
        items.
    """
    pool = list(kept or [])
    for item in items:
        if item.get("status") == "rejected":
            continue
        hit = check(item, seeds, pool, cfg) or (check_output(item, cfg) if outputs else None)
        if _mark(item, hit):
            pool.append(item["instruction"])
    return items


def apply_outputs(items: list[dict], cfg: FilterConfig) -> list[dict]:
    """Check the outputs of accepted items (after a second call wrote them)."""
    for item in items:
        if item.get("status") == "accepted":
            _mark(item, check_output(item, cfg))
    return items


def reason_counts(items: list[dict]) -> list[tuple[str, int]]:
    """Rejection reasons grouped (by rule for automatic ones, by text for a reviewer's), most common first."""
    counts = Counter(
        ADVICE.get(it.get("rule") or "", "") or (it.get("reason") or "").strip()
        for it in items
        if it.get("status") == "rejected"
    )
    counts.pop("", None)
    return counts.most_common()
