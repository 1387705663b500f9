"""LLM-as-judge for a report: a second model picks the better of two answers, example by example.

For tasks where ROUGE says little (a reworded but right answer scores low), any chat model behind
an OpenAI-compatible endpoint (`openai:BASE_URL[#model]`, or any MODEL argument) reads the request,
the reference and two answers, and replies A, B or TIE. Every pair is asked in both orders (the
pair's first model shown as A, then as B), as MT-Bench does: a model wins a pair only when both
orders name it, anything else is a tie, so a judge that prefers a position cannot make a winner.

Off unless asked for. judge.json in the report folder keeps the judge, the exact prompt used and its
id (`sha256:` of the text; editable: `--judge-prompt FILE`, the Compare page's field), every verdict,
the counts with Wilson intervals, and how far the judge can be trusted:
    {"judge", "prompt", "prompt_id", "pair": [A, B], "status": "pending"|"completed"|"failed", "error",
     "results": [{"index", "replies": {"ab", "ba"}, "verdicts": {"ab", "ba"}, "picks": {"ab", "ba"},
                  "winner": A|B|"tie"|None, "longer": A|B|None}],
     "counts": {"win", "tie", "loss", "invalid"}  (win: B, the second model, judged better in both orders),
     "orders": {"ab": counts, "ba": counts}  (each order on its own; "ab": A shown first), "n",
     "ci": {"win", "tie", "loss": [lo, hi]}, "position_consistency": share of readable pairs whose two
     orders agree, "consistency", "first_position", "length_bias": {"k", "n", "rate", "ci", "p", "chance"}}
The length bias counts, over every single-order verdict that picked an answer when the two answers'
lengths differ, how often it picked the longer one (chance: 0.5; p from an exact binomial test).
A judge asked again keeps the previous judge.json as a line of judge_history.jsonl.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Callable

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate, rates
from tunelab.jsonio import append_jsonl, read_json, write_json

FILE = evaluate.JUDGE_FILE
HISTORY = "judge_history.jsonl"
ORDERS = ("ab", "ba")  # the pair's first model shown as A; then shown as B
VARIABLES = ("prompt", "reference", "answer_a", "answer_b")
DEFAULT_PROMPT = """You compare two answers to the same request.

Request:
{prompt}

Reference answer (what a good answer says):
{reference}

Answer A:
{answer_a}

Answer B:
{answer_b}

Which answer is better? Reply with one word: A, B, or TIE."""
_REPLY = re.compile(r"^\W*(tie|a|b)\b", re.IGNORECASE)


def _dir(report_id: str):
    return jobs.job_dir(evaluate.KIND, report_id)


def check_prompt(prompt: str) -> str:
    """Refuse a judge prompt without a place for both answers."""
    missing = [v for v in ("answer_a", "answer_b") if "{" + v + "}" not in prompt]
    if missing:
        raise TuneLabError(f"the judge prompt needs {{answer_a}} and {{answer_b}}; it lacks {{{missing[0]}}}")
    return prompt


def configure(report_id: str, judge: str, prompt: str | None = None, pair: list[str] | None = None) -> dict:
    """Ask for a judge on a report: judge.json with status pending (run() fills it in).

    Args:
        report_id: the report.
        judge: the judging MODEL, usually `openai:BASE_URL`.
        prompt: the judge prompt with {prompt} {reference} {answer_a} {answer_b} (default DEFAULT_PROMPT).
        pair: the two models compared (default: the report's first two).
    """
    if not judge or not judge.strip():
        raise TuneLabError("give the judge as openai:BASE_URL (an OpenAI-compatible endpoint)")
    conf = read_json(_dir(report_id) / "config.json")
    if conf is None:
        raise TuneLabError(f"unknown report {report_id!r} (see `tunelab reports list`)")
    pair = list(pair or conf["models"][:2])
    if len(pair) != 2 or any(m not in conf["models"] for m in pair):
        raise TuneLabError(f"a judge compares two of the report's models ({', '.join(conf['models'])})")
    from tunelab import urls
    from tunelab.models.registry import resolve

    if urls.redact(judge) != judge:
        resolve(judge.strip())  # the key in its URL moves into this process's environment (tunelab/urls.py)
    text = check_prompt(prompt or DEFAULT_PROMPT)
    doc = {"judge": urls.redact(judge.strip()), "prompt": text, "prompt_id": prompt_id(text), "pair": pair,
           "status": "pending", "error": None, "results": [], "counts": None, "created": time.time()}
    previous = load(report_id)
    if previous and previous.get("status") == "completed":
        append_jsonl(_dir(report_id) / HISTORY, previous)
    write_json(_dir(report_id) / FILE, doc)
    return doc


def prompt_id(prompt: str) -> str:
    """The prompt's version: "sha256:" and the first 12 hex digits of its text's hash."""
    return "sha256:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


def load(report_id: str) -> dict | None:
    """The report's judge.json, or None when it was never judged."""
    return read_json(_dir(report_id) / FILE)


def parse(reply: str) -> str | None:
    """"A", "B" or "tie" from a judge's reply; None when it answered something else."""
    m = _REPLY.match(reply or "")
    if not m:
        return None
    word = m.group(1).lower()
    return "tie" if word == "tie" else word.upper()


def render(template: str, values: dict) -> str:
    """The judge prompt with its variables replaced literally (braces elsewhere are safe)."""
    for key in VARIABLES:
        template = template.replace("{" + key + "}", values.get(key, ""))
    return template


def _asks(cfg: dict, doc: dict) -> list[tuple[dict, str, str]]:
    """(example, first model, prompt) twice per example both models answered: A first, then B first."""
    a, b = cfg["pair"]
    asked = []
    for ex in doc["examples"]:
        if a in ex["outputs"] and b in ex["outputs"]:
            for first, second in ((a, b), (b, a)):
                asked.append((ex, first, render(cfg["prompt"], {
                    "prompt": ex["prompt"], "reference": ex["reference"],
                    "answer_a": ex["outputs"][first]["output"], "answer_b": ex["outputs"][second]["output"]})))
    return asked


def _pick(verdict: str | None, first: str, second: str) -> str | None:
    """The model a verdict names (A: the one shown first), "tie", or None for an unreadable reply."""
    return None if verdict is None else "tie" if verdict == "tie" else first if verdict == "A" else second


def combine(pick_ab: str | None, pick_ba: str | None) -> str | None:
    """One pair's result from its two orders: a model only when both orders name it, else "tie".

    None (not counted) when either reply was unreadable.
    """
    if pick_ab is None or pick_ba is None:
        return None
    return pick_ab if pick_ab == pick_ba else "tie"


def summarise(results: list[dict], pair: list[str]) -> dict:
    """Counts, intervals, position consistency and length bias from per-pair results (see the module doc)."""
    a, b = pair
    side = {b: "win", a: "loss", "tie": "tie", None: "invalid"}
    counts = {"win": 0, "tie": 0, "loss": 0, "invalid": 0}
    orders = {o: dict(counts) for o in ORDERS}
    for r in results:
        counts[side[r["winner"]]] += 1
        for o in ORDERS:
            orders[o][side[r["picks"][o]]] += 1
    n = counts["win"] + counts["tie"] + counts["loss"]
    readable = [r for r in results if r["winner"] is not None]
    consistent = sum(1 for r in readable if r["picks"]["ab"] == r["picks"]["ba"])
    # Position and length bias read each order's own pick (an inconsistent pair shows the bias best).
    singles = [(r, o) for r in results for o in ORDERS if r["picks"][o] not in (None, "tie")]
    first = sum(1 for r, o in singles if r["picks"][o] == (a if o == "ab" else b))
    sized = [(r, o) for r, o in singles if r["longer"] is not None]
    longer = sum(1 for r, o in sized if r["picks"][o] == r["longer"])
    return {
        "counts": counts, "orders": orders, "n": n,
        "ci": {k: rates.wilson(counts[k], n) for k in ("win", "tie", "loss")},
        "position_consistency": round(consistent / len(readable), 4) if readable else None,
        "consistency": rates.rate(consistent, len(readable)),
        "first_position": dict(rates.rate(first, len(singles)), p=rates.binom_p(first, len(singles))),
        "length_bias": dict(rates.rate(longer, len(sized)), p=rates.binom_p(longer, len(sized)), chance=0.5),
    }


def run(report_id: str, log: Callable[[str], None] | None = None) -> dict:
    """Judge every example both models answered, in both orders; writes and returns judge.json.

    Raises:
        TuneLabError: no judge asked for, or the judge endpoint failed (recorded as failed first).
    """
    from tunelab.models.generation import GenerationSettings, get_backend

    cfg = load(report_id)
    if cfg is None:
        raise TuneLabError(f"report {report_id} has no judge: give --judge openai:BASE_URL")
    log = log or (lambda _m: None)
    doc = evaluate.load_report(report_id)
    a, b = cfg["pair"]
    asked = _asks(cfg, doc)
    try:
        backend = get_backend(cfg["judge"])
        replies = backend.chat([[{"role": "user", "content": p}] for _, _, p in asked],
                               GenerationSettings(max_new_tokens=8, temperature=0.0), batch_size=4) if asked else []
    except TuneLabError as exc:
        write_json(_dir(report_id) / FILE, dict(cfg, status="failed", error=str(exc)))
        raise
    results = []
    for i in range(0, len(asked), 2):
        ex = asked[i][0]
        texts = {o: replies[i + j].text for j, o in enumerate(ORDERS)}
        verdicts = {o: parse(texts[o]) for o in ORDERS}
        picks = {"ab": _pick(verdicts["ab"], a, b), "ba": _pick(verdicts["ba"], b, a)}
        la, lb = len(ex["outputs"][a]["output"]), len(ex["outputs"][b]["output"])
        results.append({"index": ex["index"], "replies": {o: texts[o].strip()[:200] for o in ORDERS},
                        "verdicts": verdicts, "picks": picks, "winner": combine(picks["ab"], picks["ba"]),
                        "longer": None if la == lb else a if la > lb else b})
    out = dict(cfg, status="completed", error=None, results=results, **summarise(results, [a, b]),
               finished=time.time())
    write_json(_dir(report_id) / FILE, out)
    c = out["counts"]
    log(f"judge {cfg['judge']}: {b} vs {a}, both orders: {c['win']} win, {c['tie']} tie, {c['loss']} loss"
        + (f", {c['invalid']} unreadable" if c["invalid"] else "")
        + f"; the two orders agree on {rates.percent(out['consistency'])} of pairs")
    return out


def run_if_pending(report_id: str, log: Callable[[str], None] | None = None) -> dict | None:
    """Run a judge asked for when the report was made (after its answers); None when none was."""
    cfg = load(report_id)
    if not cfg or cfg.get("status") != "pending":
        return None
    return run(report_id, log)
