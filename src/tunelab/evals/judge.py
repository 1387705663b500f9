"""LLM-as-judge for a report: a second model picks the better of two answers, example by example.

For tasks where ROUGE says little (a reworded but right answer scores low), any chat model behind
an OpenAI-compatible endpoint (`openai:BASE_URL[#model]`, or any MODEL argument) reads the request,
the reference and two answers, and replies A, B or TIE. The two models' answers swap places on
every other example, so a judge that prefers the first position does not favour one model.

Off unless asked for. judge.json in the report folder keeps the judge, the exact prompt used
(editable: `--judge-prompt FILE`, the Compare page's field), every verdict and the counts:
    {"judge", "prompt", "pair": [A, B], "status": "pending"|"completed"|"failed", "error",
     "results": [{"index", "first", "reply", "verdict": "A"|"B"|"tie"|None, "winner"}],
     "counts": {"win", "tie", "loss", "invalid"}}  (win: B, the second model, judged better)
"""

from __future__ import annotations

import re
import time
from typing import Callable

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate
from tunelab.jsonio import read_json, write_json

FILE = "judge.json"
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
    doc = {"judge": urls.redact(judge.strip()), "prompt": check_prompt(prompt or DEFAULT_PROMPT), "pair": pair,
           "status": "pending", "error": None, "results": [], "counts": None, "created": time.time()}
    write_json(_dir(report_id) / FILE, doc)
    return doc


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


def run(report_id: str, log: Callable[[str], None] | None = None) -> dict:
    """Judge every example both models answered; writes and returns judge.json.

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
    asked = []
    for ex in doc["examples"]:
        if a in ex["outputs"] and b in ex["outputs"]:
            first = a if ex["index"] % 2 == 0 else b  # alternate positions against a first-answer bias
            second = b if first == a else a
            asked.append((ex, first, render(cfg["prompt"], {
                "prompt": ex["prompt"], "reference": ex["reference"],
                "answer_a": ex["outputs"][first]["output"], "answer_b": ex["outputs"][second]["output"]})))
    try:
        backend = get_backend(cfg["judge"])
        replies = backend.chat([[{"role": "user", "content": p}] for _, _, p in asked],
                               GenerationSettings(max_new_tokens=8, temperature=0.0), batch_size=4) if asked else []
    except TuneLabError as exc:
        write_json(_dir(report_id) / FILE, dict(cfg, status="failed", error=str(exc)))
        raise
    results, counts = [], {"win": 0, "tie": 0, "loss": 0, "invalid": 0}
    for (ex, first, _), reply in zip(asked, replies):
        v = parse(reply.text)
        winner = None if v is None else "tie" if v == "tie" else (first if v == "A" else (b if first == a else a))
        counts["invalid" if winner is None else "tie" if winner == "tie" else "win" if winner == b else "loss"] += 1
        results.append({"index": ex["index"], "first": first, "reply": reply.text.strip()[:200], "verdict": v,
                        "winner": winner})
    out = dict(cfg, status="completed", error=None, results=results, counts=counts, finished=time.time())
    write_json(_dir(report_id) / FILE, out)
    log(f"judge {cfg['judge']}: {b} vs {a}: {counts['win']} win, {counts['tie']} tie, {counts['loss']} loss"
        + (f", {counts['invalid']} unreadable" if counts["invalid"] else ""))
    return out


def run_if_pending(report_id: str, log: Callable[[str], None] | None = None) -> dict | None:
    """Run a judge asked for when the report was made (after its answers); None when none was."""
    cfg = load(report_id)
    if not cfg or cfg.get("status") != "pending":
        return None
    return run(report_id, log)
