"""`tunelab eval`, `tunelab compare` and `tunelab reports ...`: evaluation reports from the terminal."""

from __future__ import annotations

import sys

from tunelab import jobs
from tunelab.cli import add_json, emit
from tunelab.evals import evaluate
from tunelab.evals.evaluate import EvalConfig

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
    _common(p)
    p.set_defaults(func=cmd_compare)

    rp = sub.add_parser("reports", help="evaluation reports: list, show, stop, export, run")
    rsub = rp.add_subparsers(dest="reports_command", required=True)
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
    q = rsub.add_parser("export", help="write a report as CSV or JSON (relative paths land in exports/)")
    q.add_argument("report")
    q.add_argument("out")
    q.add_argument("--format", choices=("csv", "json"), default=None, help="default: from the file suffix, else csv")
    add_json(q)
    q.set_defaults(func=lambda a: emit({"path": str(evaluate.export_report(a.report, a.out, a.format))}, a.json))
    q = rsub.add_parser("run", help="run a queued report in this process (what --detach starts)")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(_run(a.report), a.json, _human_report))


def _config(args, models: list[str]) -> EvalConfig:
    return EvalConfig(models=models, data=args.data, version=args.version, limit=args.limit,
                      batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)


def _run(report_id: str) -> dict:
    """Run a report here (jobs.running turns SIGTERM from `reports stop` into a recorded `stopped`)."""
    return evaluate.run_report(report_id, log=lambda msg: print(msg, file=sys.stderr, flush=True))


def _start(args, models: list[str]) -> dict | None:
    """Create the report; run it here, or launch it in the background with --detach."""
    if args.detach:
        report_id = evaluate.start_report(_config(args, models))
        emit({"report": report_id, "status": "queued"}, args.json, lambda d: f"started report {d['report']}")
        return None
    return _run(evaluate.create_report(_config(args, models)))


def cmd_compare(args) -> int:
    models = evaluate.check_model_count([m.strip() for m in args.models.split(",") if m.strip()])
    doc = _start(args, models)
    if doc is not None:
        emit(doc, args.json, _human_report)
    return 0


def cmd_eval(args) -> int:
    doc = _start(args, [args.model])
    if doc is not None:
        emit(dict(doc["models"][0], report=doc["report"]), args.json, lambda e: _table([e]))
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


def _human_report(doc: dict) -> str:
    head = f"report {doc['report']} ({doc['status']}) on {doc['data']['name']} v{doc['data']['version']}"
    return head + "\n" + _table(doc["models"])


def _human_list(d: dict) -> str:
    if not d["reports"]:
        return "no reports yet"
    return "\n".join(f"{r['id']}\t{r['status']}\t{r['progress']}\t{','.join(r['models'] or [])}\t{r['data']}" for r in d["reports"])

