"""`tunelab reports regress RUN`: the regression suite (lm-evaluation-harness) on a run's base and tuned weights."""

from __future__ import annotations

import argparse
import sys

from tunelab.cli import add_json, emit


def register(rsub) -> None:
    """Add `regress` to the `reports` subcommands."""
    q = rsub.add_parser("regress", help="did tuning break what the run did not train on? base vs tuned on "
                                        "lm-eval tasks (the shipped instruction-following suite by default)")
    q.add_argument("run", help="a training run id")
    q.add_argument("--tasks-dir", metavar="DIR", help="a folder of lm-eval task YAMLs (+ their JSONL) to run instead "
                                                      "of the shipped suite")
    q.add_argument("--task", action="append", default=[], metavar="NAME",
                   help="an lm-eval task by name (its data from the Hub or the datasets cache; repeatable)")
    q.add_argument("--limit", type=int, default=None, help="only the first N items of each task")
    q.add_argument("--batch-size", type=int, default=8, help="items generated together (default 8)")
    q.add_argument("--detach", action="store_true", help="run in the background (the run's page shows it); "
                                                            "prints the job's status")
    q.add_argument("--as-job", action="store_true", help=argparse.SUPPRESS)  # what --detach starts
    add_json(q)
    q.set_defaults(func=cmd_regress)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_regress(args) -> int:
    from tunelab import jobs
    from tunelab.evals import regress

    opts = dict(tasks_dir=args.tasks_dir, tasks=args.task, limit=args.limit, batch_size=args.batch_size)
    if args.detach:
        st = regress.start(args.run, **opts)
        emit({"run": args.run, "status": st.get("status")}, args.json,
             lambda d: f"started the regression suite of run {d['run']}; the Train page shows it when it ends "
                       f"(runs/{d['run']}/regress.json)")
        return 0
    if not args.as_job:
        emit(regress.run(args.run, log=_log, **opts), args.json, human)
        return 0
    with jobs.running(regress.KIND, args.run) as job:
        def log(msg: str) -> None:
            _log(msg)
            job.update(progress=msg.removeprefix("regress: ")[:120])

        doc = regress.run(args.run, log=log, **opts)
        job.update(summary=doc["summary"])
    if job.status == "stopped":
        return 1
    emit(doc, args.json, human)
    return 0


def _f(v, signed: bool = False) -> str:
    return "n/a" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def human(doc: dict) -> str:
    """One line per task: score base -> tuned (stderr), paired difference [interval], p, verdict."""
    lines = [f"regression suite: run {doc['run']} vs base {doc['base']}"]
    for t in doc["tasks"]:
        se = t["stderr"]
        lines.append(f"{t['task']:<24} {t['metric']} {_f(t['base'])} (±{_f(se['base'])}) -> {_f(t['tuned'])} "
                     f"(±{_f(se['tuned'])})  diff {_f(t['diff'], True)} [{_f(t['ci'][0], True)}, "
                     f"{_f(t['ci'][1], True)}]  p={_f(t['p_adjusted'])}  n={t['n']}  {t['verdict']}")
    s = doc["summary"]
    lines.append(f"{s['kept']} kept, {s['lost']} lost, {s['gained']} gained (Holm-adjusted p < 0.05)")
    return "\n".join(lines)
