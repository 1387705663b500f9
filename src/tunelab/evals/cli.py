"""`tunelab eval`, `tunelab compare` and `tunelab reports ...`: evaluation reports from the terminal."""

from __future__ import annotations

import sys

from tunelab import jobs
from tunelab.cli import add_json, emit
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate, judge, rates, report_doc, votes
from tunelab.evals.evaluate import EvalConfig

# What `eval --json` carries besides its one model's entry (the same keys as compare's document).
EVAL_KEYS = ("pairs", "verdict", "verdict_detail", "slices", "provenance")
COLUMNS = ("rouge_l", "bleu", "exact_match", "tokens_per_s", "latency_s", "peak_rss_mb")


def _common(p) -> None:
    p.add_argument("--data", required=True, help="dataset NAME (its output field is the reference)")
    p.add_argument("--version", type=int, default=None, help="dataset version (default: head)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--max-new-tokens", type=int, default=128, help="longest answer in tokens (default 128)")
    p.add_argument("--batch-size", type=int, default=8, help="examples generated together (default 8)")
    p.add_argument("--detach", action="store_true", help="run in the background; print the report id")
    add_json(p)


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate one model on a dataset (greedy decoding)")
    p.add_argument("model", help="MODEL: registry name, folder, .gguf, run id or endpoint")
    _common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="evaluate 2-4 models on the same examples, side by side")
    p.add_argument("--models", required=True, help="comma-separated MODELs, 2 to 4")
    _judge_flags(p)
    _common(p)
    p.set_defaults(func=cmd_compare)

    rp = sub.add_parser("reports", aliases=["report"],
                        help="evaluation reports: list, show, stop, delete, export, run, judge, and fix the data from one")
    rsub = rp.add_subparsers(dest="reports_command", required=True)
    rp.commands = rsub  # tunelab/workflow_cli.py adds the loop's commands (wrong, fix, seeds)
    q = rsub.add_parser("list", help="every report, newest first")
    add_json(q)
    q.set_defaults(func=lambda a: emit({"reports": evaluate.list_reports()}, a.json, _human_list))
    q = rsub.add_parser("show", help="a report's models and examples")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(evaluate.load_report(a.report), a.json, _human_report))
    q = rsub.add_parser("stop", help="stop a running report (what it finished is kept)")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=cmd_stop)
    q = rsub.add_parser("delete", help="remove a finished report and its files (a running one is refused)")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(evaluate.delete_report(a.report), a.json,
                                       lambda d: f"deleted report {d['report']}"))
    q = rsub.add_parser("export", help="write a report as CSV, JSON or one self-contained HTML page that opens offline "
                                       "(relative paths land in exports/)")
    q.add_argument("report")
    q.add_argument("out")
    q.add_argument("--format", choices=("csv", "json", "html"), default=None,
                   help="default: from the file suffix (.json, .html), else csv")
    q.add_argument("--force", action="store_true", help="replace an existing file or folder at OUT (refused otherwise)")
    add_json(q)
    q.set_defaults(func=lambda a: emit({"path": str(report_doc.export_report(a.report, a.out, a.format, a.force))},
                                       a.json))
    q = rsub.add_parser("run", help="run a queued report in this process (what --detach starts)")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(_run(a.report), a.json, _human_report))
    q = rsub.add_parser("judge", help="let a judge model pick the better answer of two models, example by example")
    q.add_argument("report")
    _judge_flags(q, required=True)
    add_json(q)
    q.set_defaults(func=cmd_judge)
    _register_votes(rsub)

    # `wrong`, `fix`, `seeds` and then `regress` follow, added by tunelab/workflow_cli.py (in this order).


def _judge_flags(p, required: bool = False) -> None:
    p.add_argument("--judge", required=required, metavar="openai:BASE_URL",
                   help="LLM-as-judge: an OpenAI-compatible endpoint (openai:BASE_URL[#model]) compares the first two "
                        "models' answers pairwise (off unless given)")
    p.add_argument("--judge-prompt", metavar="FILE",
                   help="the judge prompt, with {prompt} {reference} {answer_a} {answer_b} (default: a built-in one)")


def _judge_prompt(args) -> str | None:
    if not args.judge_prompt:
        return None
    from pathlib import Path

    path = Path(args.judge_prompt).expanduser()
    if not path.is_file():
        raise TuneLabError(f"judge prompt file {args.judge_prompt} not found")
    return path.read_text(encoding="utf-8")


def _config(args, models: list[str]) -> EvalConfig:
    return EvalConfig(models=models, data=args.data, version=args.version, limit=args.limit,
                      batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run(report_id: str) -> dict:
    """Run a report here (jobs.running turns SIGTERM from `reports stop` into a recorded `stopped`),
    then the judge asked for when it was made, if any."""
    doc = evaluate.run_report(report_id, log=_log)
    verdicts = judge.run_if_pending(report_id, log=_log)
    return dict(doc, judge=verdicts["counts"]) if verdicts else doc


def _start(args, models: list[str]) -> dict | None:
    """Create the report; run it here, or launch it in the background with --detach."""
    prompt = _judge_prompt(args) if getattr(args, "judge", None) else None
    report_id = evaluate.create_report(_config(args, models))
    if getattr(args, "judge", None):
        judge.configure(report_id, args.judge, prompt)
    if args.detach:
        evaluate.launch_report(report_id)
        emit({"report": report_id, "status": "queued"}, args.json, lambda d: f"started report {d['report']}")
        return None
    return _run(report_id)


def cmd_compare(args) -> int:
    models = evaluate.check_model_count([m.strip() for m in args.models.split(",") if m.strip()])
    doc = _start(args, models)
    if doc is not None:
        emit(doc, args.json, _human_report)
    return 0


def cmd_eval(args) -> int:
    doc = _start(args, [args.model])
    if doc is not None:
        emit(dict(doc["models"][0], report=doc["report"], leakage=doc.get("leakage"),
                  **{k: doc.get(k) for k in EVAL_KEYS}), args.json, _human_eval)
    return 0


def cmd_judge(args) -> int:
    judge.configure(args.report, args.judge, _judge_prompt(args))
    out = judge.run(args.report, log=_log)
    out["judge_agreement"] = votes.agreement(args.report)  # the judge checked against the reviewers' votes
    emit(out, args.json, lambda d: "{win} win, {tie} tie, {loss} loss, {invalid} unreadable".format(**d["counts"])
         + f" ({d['pair'][1]} vs {d['pair'][0]}, both orders); position consistency "
         + f"{rates.percent(d['consistency'])}; {d['judge_agreement']['sentence']}")
    return 0


def cmd_stop(args) -> int:
    st = jobs.stop(evaluate.KIND, args.report)
    emit({"report": args.report, "status": st.get("status")}, args.json, lambda d: f"stopping {d['report']}")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _table(models: list[dict]) -> str:
    lines = ["\t".join(("model",) + COLUMNS)]
    lines += ["\t".join([m["name"]] + [_fmt(m.get(c)) for c in COLUMNS]) for m in models]
    return "\n".join(lines)


def _human_eval(entry: dict) -> str:
    return _human_report({"report": entry["report"], "status": "completed", "leakage": entry.get("leakage"),
                          "models": [entry], "data": None, "verdict": entry.get("verdict")})


def _human_report(doc: dict) -> str:
    head = (f"report {doc['report']} ({doc['status']}) on {doc['data']['name']} v{doc['data']['version']}"
            if doc.get("data") else f"report {doc['report']}")
    if doc.get("leakage"):  # in red on a terminal: the score is on rows a run in it trained on
        from tunelab.evals import leakage

        warn = f"warning: {leakage.sentence(doc['leakage'])}"
        head = (f"\033[31m{warn}\033[0m" if sys.stdout.isatty() else warn) + "\n" + head
    return head + "\n" + _table(doc["models"]) + (f"\n{doc['verdict']}" if doc.get("verdict") else "")


def _human_list(d: dict) -> str:
    if not d["reports"]:
        return "no reports yet"
    return "\n".join(f"{r['id']}\t{r['status']}\t{r['progress']}\t{','.join(r['models'] or [])}\t{r['data']}" for r in d["reports"])


# ---------------------------------------------------------------- stakeholder votes

def _register_votes(rsub) -> None:
    """`reports votes | vote-link | vote-pairs`: stakeholder votes on a report."""
    q = rsub.add_parser("votes", help="the reviewers' blind votes on a report: per model pair, with intervals, "
                                      "and how often the judge agrees with them")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.summary(a.report), a.json, _human_votes))
    q = rsub.add_parser("vote-link", help="the voting page's link for a report (with its access code) to send to "
                                          "reviewers")
    q.add_argument("report")
    q.add_argument("--url", default="http://127.0.0.1:8501",
                   help="the dashboard's address as reviewers reach it (default http://127.0.0.1:8501)")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.link(a.report, a.url), a.json,
                                       lambda d: f"{d['url']}\naccess code: {d['code']}"))
    q = rsub.add_parser("vote-pairs", help="the reviewers' preferred answers as preference pairs (a new dataset "
                                           "version for `tunelab train --method dpo`)")
    q.add_argument("report")
    q.add_argument("--into", required=True, help="dataset NAME to add the pairs to (created if new)")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.to_preferences(a.report, a.into), a.json,
                                       lambda d: f"{d['name']} v{d['version']}: {d['pairs']} preference pairs from "
                                                 f"report {d['report']}; next: tunelab train --method dpo "
                                                 f"--model MODEL --data {d['name']}"))


def _human_votes(d: dict) -> str:
    """Plain-text vote results: one line per pair, then the judge's agreement."""
    lines = [f"{d['votes']} votes from {len(d['voters'])} reviewers on {d['items']} items"
             + (f" ({d['damaged']} damaged lines skipped)" if d["damaged"] else "")]
    for p in d["pairs"]:
        c = p["counts"]
        lines.append(f"{p['b']} vs {p['a']}: {c['win']} preferred, {c['tie']} tie, {c['loss']} not preferred; "
                     f"{p['b']} preferred in {rates.percent(p['preferred'])} of decided votes")
    lines.append(d["judge_agreement"]["sentence"])
    return "\n".join(lines)
