"""Cleaning: strip, PII redaction, drop empty, exact and near dedup, drop over a token limit.

`plan` is pure (the UI previews what would go); `clean` commits the result as a new version.

Near duplicates use MinHash + LSH (datasketch) over word unigrams+bigrams and CJK character
bigrams, exact Jaccard >= 0.7 on the LSH candidates. Measured on data/samples/alpaca_mixed.jsonl
(290 records, English and Chinese, plus 29 planted copies with one word or character edited;
2 shared cores): MinHash/LSH took 0.46 s and flagged 31 records: 26 of the 29 planted copies and
5 sample records ROUGE-L flags too, no others. Self-instruct's ROUGE-L >= 0.7 over all pairs took 43 s (quadratic: a 1M-record
dataset is out of reach) and flagged 106: 28 planted copies, but also templated records that
differ in the one word that matters ("What is the capital of Poland?" vs "... of France?"), which
are not duplicates. rouge_score's default tokenizer also drops non-ASCII text, so Chinese pairs
need a custom tokenizer. The three planted copies MinHash missed are very short records where
one edited word already moves Jaccard below 0.7. Unigrams are in the shingles because Alpaca
records are short: with word 3-grams alone one edit in a 10-word sentence falls below 0.5.
"""

from __future__ import annotations

import json
import re
from typing import Callable

import pyarrow as pa

from tunelab.data import store
from tunelab.data.schema import PAIR_FIELDS, TEXT_FIELDS
from tunelab.data.stats import duplicate_rows, token_counter, token_lengths
from tunelab.errors import TuneLabError
from tunelab.text import CJK_RUN

NEAR_THRESHOLD = 0.7
NUM_PERM = 64
LSH_MARGIN = 0.2

# ---------------------------------------------------------------- PII

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Digit lookarounds, not \b: in Chinese text "电话13812345678" has no word boundary before the 1.
CN_ID = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])")
PHONE = re.compile(
    r"(?<![\d+])(?:"
    r"(?:\+?86[ -]?)?1[3-9]\d{9}"  # Chinese mobile
    r"|\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"  # North American
    r"|0\d{2,3}-\d{7,8}"  # Chinese landline with area code
    r")(?!\d)"
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def cn_id_ok(number: str) -> bool:
    """A valid Chinese resident ID: plausible birth date and the ISO 7064 MOD 11-2 check digit."""
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS)) % 11]
    return number[17].upper() == check


def _card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(match: str) -> bool:
    return sum(c.isdigit() for c in match) >= 8


# Order matters: checksummed numbers first, so a card or ID is never half-eaten as a phone.
PII_RULES: tuple[tuple[str, re.Pattern, str, Callable[[str], bool] | None], ...] = (
    ("email", EMAIL, "[EMAIL]", None),
    ("id", CN_ID, "[ID]", cn_id_ok),
    ("card", CARD, "[CARD]", _card_ok),
    ("ip", IPV4, "[IP]", None),
    ("phone", PHONE, "[PHONE]", _phone_ok),
)


def exclusion_patterns(patterns: list[str] | tuple[str, ...] | None) -> list[re.Pattern]:
    """Keywords or regular expressions (case-insensitive) that keep text from being redacted.

    A pattern that is not a valid regular expression is taken as a plain keyword.
    """
    out = []
    for p in patterns or ():
        if not p or not p.strip():
            continue
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error:
            out.append(re.compile(re.escape(p), re.IGNORECASE))
    return out


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """Replace emails, phones, IPv4s, card and Chinese ID numbers with placeholders.

    Args:
        text: English, Chinese or mixed text.

    Returns:
        (redacted text, {kind: replacements}) with kinds email, id, card, ip, phone.
    """
    found: dict[str, int] = {}
    if not text:
        return text, found
    for kind, pattern, placeholder, valid in PII_RULES:
        def sub(m: re.Match, kind=kind, placeholder=placeholder, valid=valid) -> str:
            if valid and not valid(m.group(0)):
                return m.group(0)
            found[kind] = found.get(kind, 0) + 1
            return placeholder

        text = pattern.sub(sub, text)
    return text, found


# ---------------------------------------------------------------- record transforms


def _map_texts(rec: dict, fn: Callable[[str], str], raw_too: bool) -> dict:
    out = dict(rec)
    for f in TEXT_FIELDS:
        if rec.get(f) is not None or f not in PAIR_FIELDS:  # a plain record keeps chosen=None
            out[f] = fn(rec.get(f) or "")
    out["history"] = [[fn(t or "") for t in pair] for pair in rec.get("history") or []]
    if raw_too:  # the original turns feed a lossless ShareGPT export: they must not keep PII
        for f in ("conversations", "tools"):
            if rec.get(f):
                out[f] = fn(rec[f])
    return out


def _strip_turns(raw: str) -> str:
    """Trim the text of each stored ShareGPT turn ({"from", "value"}); other keys stay as they are."""
    try:
        turns = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(turns, list):
        return raw
    for turn in turns:
        if isinstance(turn, dict) and isinstance(turn.get("value"), str):
            turn["value"] = turn["value"].strip()
    return json.dumps(turns, ensure_ascii=False)


def _is_empty(rec: dict) -> bool:
    prompt = (rec.get("instruction") or "") + (rec.get("input") or "")
    return not (rec.get("output") or "").strip() or not prompt.strip()


def shingles(text: str) -> set[str]:
    """Word unigrams and bigrams plus CJK character bigrams of normalised text."""
    text = text.casefold()
    out: set[str] = set()
    for run in CJK_RUN.findall(text):
        out.update(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    words = re.findall(r"\w+", CJK_RUN.sub(" ", text))
    out.update(words)
    out.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return out


# A number standing alone (in "19 December", "1995年", "$3.50"), not the digits of a word such as "w123".
NUMBER = re.compile(r"(?<![A-Za-z0-9_])\d+(?:[.,]\d+)*(?![A-Za-z0-9_])")


def near_duplicate_rows(texts: list[str], threshold: float = NEAR_THRESHOLD) -> list[int]:
    """Indices of texts that nearly repeat an earlier one (MinHash/LSH Jaccard >= threshold)."""
    return [i for i, _, _ in near_duplicates(texts, threshold)]


def near_duplicates(texts: list[str], threshold: float = NEAR_THRESHOLD) -> list[tuple[int, int, float]]:
    """(index, index of the earlier text it nearly repeats, Jaccard similarity) for each near duplicate.

    Texts whose numbers differ are never duplicates: "5 December 1995" and "19 December 1995" share
    almost every shingle, yet they are two different facts (a date, an amount, a count).
    """
    from datasketch import MinHash, MinHashLSH

    # LSH at a lower threshold than the decision: it only proposes candidates, and its banding
    # misses some pairs just above its threshold; the exact Jaccard check below decides.
    lsh = MinHashLSH(threshold=max(0.1, threshold - LSH_MARGIN), num_perm=NUM_PERM)
    sets = [shingles(t) for t in texts]
    hashes = MinHash.bulk([[s.encode("utf-8") for s in sh] for sh in sets], num_perm=NUM_PERM)
    numbers = [sorted(NUMBER.findall(t)) for t in texts]
    dups = []
    for i, (sh, mh) in enumerate(zip(sets, hashes)):
        if not sh:
            continue
        # LSH proposes candidates; the exact Jaccard check removes its false positives.
        scored = [(len(sh & sets[j]) / len(sh | sets[j]), j) for j in lsh.query(mh) if numbers[j] == numbers[i]]
        best = max((s for s in scored if s[0] >= threshold), default=None, key=lambda s: (s[0], -s[1]))
        if best is not None:
            dups.append((i, best[1], round(best[0], 4)))
            continue
        lsh.insert(i, mh)
    return dups


def _all_text(rec: dict) -> str:
    """Every text of a record, for the exclusion keywords: fields, history, raw turns and tools."""
    turns = [t or "" for pair in rec.get("history") or [] for t in pair]
    return "\n".join([*(rec.get(f) or "" for f in TEXT_FIELDS), *turns, rec.get("conversations") or "",
                      rec.get("tools") or ""])


def _skip_rows(records: list[dict], skip) -> set[int]:
    """Row indices named in redact_skip: a record id, or a 1-based position ("12" or "#12")."""
    wanted = [str(s).strip() for s in skip or () if str(s).strip()]
    if not wanted:
        return set()
    by_id = {rec.get("id"): i for i, rec in enumerate(records)}
    rows = set()
    for w in wanted:
        if w in by_id:
            rows.add(by_id[w])
        elif w.lstrip("#").isdigit() and 1 <= int(w.lstrip("#")) <= len(records):
            rows.add(int(w.lstrip("#")) - 1)
        else:
            raise TuneLabError(f"--redact-skip {w}: no record with that id, and not a position from 1 to "
                               f"{len(records)}")
    return rows


def _record_text(rec: dict) -> str:
    turns = " ".join(t or "" for pair in rec.get("history") or [] for t in pair)
    # `rejected` too: two pairs that share the prompt and the chosen answer are different pairs.
    fields = ("system", "instruction", "input", "output", "rejected")
    return " ".join(rec.get(f) or "" for f in fields) + " " + turns


def plan(
    table: pa.Table,
    dedup: str | None = None,
    strip: bool = False,
    drop_empty: bool = False,
    redact_pii: bool = False,
    max_tokens: int | None = None,
    tokenizer=None,
    redact_exclude: list[str] | tuple[str, ...] | None = None,
    redact_skip: list[str] | tuple[str, ...] | None = None,
    keep_near: list[str] | tuple[str, ...] | None = None,
    near_pairs: list[dict] | None = None,
) -> tuple[pa.Table, dict[str, int], dict[str, list[str]]]:
    """Work out a cleaning without writing anything (the UI previews it).

    Order: strip, redact, drop empty, exact dedup, near dedup, drop over max_tokens.

    Args:
        table: records in the dataset schema.
        dedup: None, "exact" or "near" (near also removes exact duplicates).
        strip: trim whitespace around every text field and history turn.
        drop_empty: drop records without output or without instruction and input.
        redact_pii: replace emails, phones, IPs, card and ID numbers with placeholders.
        max_tokens: drop records longer than this many tokens (chat-formatted).
        tokenizer: tokenizer or stats.TokenCounter for max_tokens (models.tokens.token_counter(MODEL)
            loads a model's; None counts words).
        redact_exclude: keywords or regexes (case-insensitive): a record whose text holds one is
            left as written ("hypothetical", or a test number such as 555-0100).
        redact_skip: records never redacted, by id or by 1-based position in the table ("#12" or "12").
        keep_near: ids of near duplicates to keep all the same (the user judged them distinct).
        near_pairs: a list to fill with every near duplicate found: {"removed", "kept" (the twin it
            repeats), "similarity", "removed_text", "kept_text", "keep" (kept on request)}.

    Returns:
        (new table, counts per reason, example ids per reason). Reasons that drop records:
        duplicate_exact, duplicate_near, empty, too_long; reasons that change them: stripped,
        redacted_<kind> (records changed); redaction_excluded: records with PII left as written
        because of redact_exclude or redact_skip.
    """
    if dedup not in (None, "exact", "near"):
        raise ValueError(f"dedup must be None, 'exact' or 'near', not {dedup!r}")
    records = table.to_pylist()
    keep = exclusion_patterns(redact_exclude)
    skipped = _skip_rows(records, redact_skip)
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}

    def note(reason: str, rec: dict) -> None:
        counts[reason] = counts.get(reason, 0) + 1
        if len(examples.setdefault(reason, [])) < 20:
            examples[reason].append(rec.get("id") or "")

    if strip:
        for i, rec in enumerate(records):
            new = _map_texts(rec, str.strip, raw_too=False)
            if rec.get("conversations"):  # the turns a ShareGPT export writes back must match
                new["conversations"] = _strip_turns(rec["conversations"])
            if new != rec:
                records[i] = new
                note("stripped", rec)
    if redact_pii:
        for i, rec in enumerate(records):
            kinds: dict[str, int] = {}

            def fn(text: str, kinds: dict[str, int] = kinds) -> str:
                red, found = redact_text(text)
                for k in found:
                    kinds[k] = 1
                return red

            new = _map_texts(rec, fn, raw_too=True)
            if kinds and (i in skipped or any(k.search(_all_text(rec)) for k in keep)):
                note("redaction_excluded", rec)  # it holds PII, left as written on request
                continue
            records[i] = new
            for kind in kinds:
                note(f"redacted_{kind}", rec)

    def drop(rows: list[int], reason: str) -> None:
        gone = set(rows)
        for i in rows:
            note(reason, records[i])
        records[:] = [r for i, r in enumerate(records) if i not in gone]

    if drop_empty:
        drop([i for i, r in enumerate(records) if _is_empty(r)], "empty")
    if dedup:
        drop(duplicate_rows(pa.Table.from_pylist(records, schema=table.schema)), "duplicate_exact")
    if dedup == "near":
        texts = [_record_text(r) for r in records]
        found = near_duplicates(texts)
        kept_ids = {str(k) for k in keep_near or ()}
        for i, j, sim in found:
            if near_pairs is not None:
                near_pairs.append({"removed": records[i].get("id"), "kept": records[j].get("id"), "similarity": sim,
                                   "removed_text": texts[i].strip()[:300], "kept_text": texts[j].strip()[:300],
                                   "keep": records[i].get("id") in kept_ids})
        drop([i for i, _, _ in found if records[i].get("id") not in kept_ids], "duplicate_near")
    if max_tokens:
        counter = token_counter(tokenizer)
        lengths = token_lengths(pa.Table.from_pylist(records, schema=table.schema), counter)
        drop([i for i, n in enumerate(lengths) if n > max_tokens], "too_long")
    return pa.Table.from_pylist(records, schema=table.schema), counts, examples


def clean(
    name: str,
    dedup: str | None = None,
    strip: bool = False,
    drop_empty: bool = False,
    redact_pii: bool = False,
    max_tokens: int | None = None,
    tokenizer=None,
    redact_exclude: list[str] | tuple[str, ...] | None = None,
    redact_skip: list[str] | tuple[str, ...] | None = None,
    keep_near: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Clean a dataset into a new version (arguments as in plan()).

    Returns:
        {"version", "before", "after", "removed": {reason: count}, "examples": {reason: [ids]},
         "near_duplicates": plan's near_pairs (each removed record with its kept twin and similarity)}.
    """
    params = {"dedup": dedup, "strip": strip, "drop_empty": drop_empty, "redact_pii": redact_pii,
              "max_tokens": max_tokens, "redact_exclude": list(redact_exclude or []) if redact_pii else None,
              "redact_skip": list(redact_skip or []) if redact_pii else None,
              "keep_near": list(keep_near or []) if dedup == "near" else None}
    result: dict = {}

    def fn(table: pa.Table) -> pa.Table:
        pairs: list[dict] = []
        new, counts, examples = plan(table, dedup, strip, drop_empty, redact_pii, max_tokens, tokenizer,
                                     redact_exclude, redact_skip, keep_near, pairs)
        result.update(before=table.num_rows, after=new.num_rows, removed=counts, examples=examples,
                      near_duplicates=pairs)
        return new

    entry = store.edit(name, fn, op="clean", params={k: v for k, v in params.items() if v})
    return {"version": entry["version"], **result}
