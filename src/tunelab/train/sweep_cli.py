"""`tunelab sweep` (start an Optuna sweep), `sweep show|list|resume|work|stop|promote` (train/sweep.py)."""

from __future__ import annotations

import sys
import time

from tunelab import jobs
from tunelab.cli import add_json, emit
from tunelab.train import config as tconfig

SKIP = {"model", "data"}  # given by --model/--data, which every trial shares


def register(sub) -> None:
    p = sub.add_parser("sweep", help="hyperparameter sweep on Optuna: each trial is a run, bad ones pruned",
                       description="Start a sweep (with --model, --data, --trials, --param), or manage one. Any "
                                   "training flag (--max-steps, --eval-steps...) applies to every trial.")
    p.add_argument("--trials", type=int, default=6, help="trials to finish (across every worker)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPACE",
                   help="a swept setting: learning_rate=1e-5:1e-3:log, epochs=1:5:int, lora_r=4,8,16")
    p.add_argument("--metric", default="eval_loss", help="what the sweep minimises (eval_loss)")
    p.add_argument("--prune", default="median", choices=("median", "hyperband", "none"),
                   help="stop a trial early when its eval losses fall behind (Optuna pruner)")
    p.add_argument("--storage", help="an Optuna storage URL shared by workers (sqlite:///..., postgresql://..., "
                                     "mysql://...); default: sweeps/<id>/study.db in the workspace")
    p.add_argument("--wait", action="store_true", help="follow the sweep until it ends")
    tconfig.add_flags(p)
    add_json(p)
    p.set_defaults(func=cmd_start)
    s = p.add_subparsers(dest="sweep_command", required=False)
    for name, helptext in (("show", "trials, their runs, parameters, status and value, and the best"),
                           ("resume", "relaunch a killed or stopped sweep: the remaining trials only"),
                           ("work", "one more worker on the sweep's study (in this terminal)"),
                           ("stop", "stop the sweep job (its current trial's run keeps going; stop it with runs stop)"),
                           ("promote", "register the best trial's run as a named model")):
        q = s.add_parser(name, help=helptext)
        q.add_argument("sweep")
        if name == "promote":
            q.add_argument("--name", required=True, help="the model name (`tunelab models list`)")
        if name == "work":
            q.add_argument("--job", action="store_true", help="(internal) run as the sweep's background job")
        add_json(q)
        q.set_defaults(func=cmd_sub)
    q = s.add_parser("list", help="every sweep, newest first")
    add_json(q)
    q.set_defaults(func=cmd_sub)


def cmd_start(args) -> int:
    from tunelab.errors import TuneLabError
    from tunelab.train import sweep

    model, data = getattr(args, "model", None), getattr(args, "data", None)
    if not model or not data:
        raise TuneLabError("a sweep needs --model M and --data NAME (or a subcommand: show, resume, work, promote, list)")
    settings = {k: getattr(args, k) for k in tconfig.flag_keys(args) if k not in SKIP}
    sid = sweep.create(model, data, args.trials, args.param, settings, metric=args.metric, prune=args.prune,
                       storage=args.storage)
    sweep.launch(sid)
    print(f"sweep {sid} launched (log: {sweep.sweep_dir(sid) / 'job.log'})", file=sys.stderr)
    st = jobs.read_status(sweep.sweep_dir(sid)) or {}
    if args.wait:
        while st.get("status") in jobs.ACTIVE:
            time.sleep(1.0)
            st = jobs.read_status(sweep.sweep_dir(sid)) or {}
    emit({"sweep": sid, "status": st.get("status")}, args.json, lambda o: f"{o['sweep']} {o['status']}")
    return 0 if st.get("status") not in ("failed", "interrupted") else 1


def cmd_sub(args) -> int:
    from tunelab.train import sweep

    c = args.sweep_command
    if c == "list":
        emit({"sweeps": sweep.list_sweeps()}, args.json,
             lambda o: "\n".join(f"{r['sweep']:<30} {r['status']:<11} {r['trials']} trials  {r['model']} on {r['data']}"
                                 for r in o["sweeps"]) or "no sweeps yet")
        return 0
    if c == "work":
        if args.job:
            return sweep.run_job(args.sweep)
        n = sweep.work(args.sweep, log=lambda s: print(s, file=sys.stderr, flush=True))
        emit({"sweep": args.sweep, "trials_run": n}, args.json, lambda o: f"{o['sweep']}: ran {o['trials_run']} trials")
        return 0
    if c == "resume":
        st = sweep.resume(args.sweep)
        emit({"sweep": args.sweep, "status": st.get("status")}, args.json, lambda o: f"{o['sweep']} {o['status']}")
        return 0
    if c == "stop":
        sweep.sweep_dir(args.sweep)
        st = jobs.stop(sweep.KIND, args.sweep)
        emit({"sweep": args.sweep, "status": st.get("status")}, args.json, lambda o: f"{o['sweep']}: stop requested")
        return 0
    if c == "promote":
        doc = sweep.promote(args.sweep, args.name)
        emit(doc, args.json, lambda o: f"{o['model']} = {o['run']} (best {o['value']:.4f})")
        return 0
    doc = sweep.show(args.sweep)

    def human(o):
        lines = [f"{o['sweep']}: {o['status']}, {len(o['trials'])}/{o['trials_wanted']} trials ({o['model']} on {o['data']})"]
        for t in o["trials"]:
            v = f"{t['value']:.4f}" if isinstance(t["value"], float) else "-"
            lines.append(f"  #{t['number']:<3} {t['status']:<9} {v:>8}  {t['run'] or '-'}  {t['params']}")
        if o["best"]:
            lines.append(f"best: #{o['best']['number']} {o['best']['run']} {o['best']['value']:.4f}")
        if o.get("best_vs_second"):
            lines.append(o["best_vs_second"]["sentence"])
        return "\n".join(lines)

    emit(doc, args.json, human)
    return 0
