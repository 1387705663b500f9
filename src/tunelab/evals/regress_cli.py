"""`tunelab reports regress RUN`: the regression suite (lm-evaluation-harness) on a run's base and tuned weights."""

from __future__ import annotations

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
    add_json(q)
    q.set_defaults(func=cmd_regress)


def cmd_regress(args) -> int:
    from tunelab.evals import regress

    doc = regress.run(args.run, tasks_dir=args.tasks_dir, tasks=args.task, limit=args.limit,
                      batch_size=args.batch_size, log=lambda m: print(m, file=sys.stderr, flush=True))
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
