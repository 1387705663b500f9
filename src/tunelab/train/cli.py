"""`tunelab train`, `tunelab runs list|show|stop|resume` and `tunelab export`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tunelab import jobs
from tunelab.cli import add_json, emit
from tunelab.errors import TuneLabError
from tunelab.models.convert import GGUF_TYPES  # light: no torch at import
from tunelab.train import config as tconfig
from tunelab.train import validate


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model on a dataset as a background run",
                       description="Start a training run. Without --detach it follows the run until it ends "
                                   "(Ctrl-C detaches; the run keeps going).")
    p.add_argument("config", nargs="?", help="CONFIG.yaml (what a run folder's config.yaml holds); flags override it")
    tconfig.add_flags(p)
    p.add_argument("--detach", action="store_true", help="return as soon as the run is launched")
    p.add_argument("--launcher", choices=tconfig.LAUNCHERS, default="python",
                   help="accelerate: run through `accelerate launch`: --num-processes data-parallel processes (DDP "
                        "over gloo on CPUs, NCCL on GPUs), FSDP/DeepSpeed via --accelerate-config")
    p.add_argument("--num-processes", type=int, default=1,
                   help="processes for --launcher accelerate. --batch-size and --grad-accum are per process, so "
                        "the global batch is batch_size x grad_accum x N: 2 processes with --grad-accum G train "
                        "like one process with --grad-accum 2G (same seed: the same loss curve)")
    p.add_argument("--accelerate-config", help="an `accelerate config` YAML (FSDP, DeepSpeed, multi-node) for --launcher accelerate")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the launched process trains this run
    add_json(p)
    p.set_defaults(func=cmd_train)

    r = sub.add_parser("runs", help="list, inspect, stop and resume training runs")
    rs = r.add_subparsers(dest="runs_command", required=True)
    c = rs.add_parser("curves", help="every metric of every step of one or more runs, as CSV (run,step,metric,value)")
    c.add_argument("run", nargs="+")
    c.add_argument("--csv", metavar="FILE", help="write the CSV here (relative paths land in the workspace's exports/)")
    c.add_argument("--force", action="store_true", help="replace an existing FILE (refused otherwise)")
    add_json(c)
    c.set_defaults(func=cmd_curves)
    for name, fn, helptext in (("list", cmd_list, "every run, newest first"),
                               ("show", cmd_show, "status and metrics of a run"),
                               ("stop", cmd_stop, "stop a run (it checkpoints first)"),
                               ("resume", cmd_resume, "continue a stopped or interrupted run from its last checkpoint"),
                               ("cancel", cmd_queue, "take a queued run out of the queue"),
                               ("front", cmd_queue, "move a queued run to the front of the queue")):
        q = rs.add_parser(name, help=helptext)
        if name != "list":
            q.add_argument("run")
        add_json(q)
        q.set_defaults(func=fn)
    add_manage_commands(rs)

    e = sub.add_parser("export", help="write a run's adapter, merged weights, a GGUF file or an Ollama folder")
    e.add_argument("run")
    e.add_argument("out", help="output folder (or .gguf file with --gguf); relative paths land in the workspace's exports/")
    e.add_argument("--merge", action="store_true", help="merge the adapter into the base weights (safetensors)")
    e.add_argument("--gguf", action="store_true", help="write a GGUF file (merged weights) for llama.cpp")
    e.add_argument("--gguf-type", choices=GGUF_TYPES, default="f32",
                   help="f32: same greedy answers as the merged weights; q8_0: about 3.7x smaller and faster in llama.cpp; "
                        "q4_0, q4_k_m, q5_k_m, q6_k: smaller still, need the llamacpp extra (make install-llamacpp)")
    e.add_argument("--ollama", action="store_true",
                   help="write OUT/ as an Ollama model: model.gguf (of --gguf-type) and a Modelfile with the chat "
                        "template, system prompt and stop tokens (`ollama create NAME -f OUT/Modelfile`)")
    e.add_argument("--force", action="store_true", help="replace an existing file or folder at OUT (refused otherwise)")
    e.add_argument("--job", help=argparse.SUPPRESS)  # internal: the dashboard's export job to report into
    add_json(e)
    e.set_defaults(func=cmd_export)


def cmd_train(args) -> int:
    from tunelab.train import runs

    if args.worker:
        return runs.worker(args.worker)
    from tunelab.train import recipe

    runs.check_launch(args.launcher, args.num_processes)  # before the recipe reads the dataset
    base, mine = None, tconfig.flag_keys(args)
    flags = set(mine)
    if args.config:  # a run's config.yaml: the user's settings again, the recipe's sized to this run's data
        doc = validate.load_yaml(_config_path(args.config).read_bytes(), where=args.config)  # one-line errors
        base, file_keys = tconfig.rerun(doc)
        mine |= file_keys
    cfg = tconfig.from_flags(args, base)
    if base is not None:  # a pinned version belongs to the dataset it was pinned for
        if cfg.data.data != base.data.data and "data_version" not in flags:
            cfg.data.data_version = None
        if cfg.data.eval_data != base.data.eval_data and "eval_data_version" not in flags:
            cfg.data.eval_data_version = None
    if cfg.data.data:  # without data, create() refuses in one line
        recipe.apply(cfg, mine, processes=args.num_processes)
    run_id = runs.create(cfg, args.launcher, args.num_processes, args.accelerate_config)
    for line in recipe.lines(cfg.recipe):  # after create(): a refused run prints only its one error line
        print(line, file=sys.stderr)
    runs.start(run_id)
    print(f"run {run_id} launched (log: {runs.run_dir(run_id) / 'job.log'})", file=sys.stderr)
    st = runs.status(run_id) if args.detach else _follow(run_id)
    doc = {"run": run_id, "status": st.get("status"), "recipe": cfg.recipe}
    if st.get("best_step") is not None:
        doc.update(best_step=st["best_step"], best_eval_loss=st.get("best_eval_loss"),
                   early_stopped=bool(st.get("early_stopped")))
    emit(doc, args.json, lambda o: f"{o['run']} {o['status']}")
    if st.get("status") in ("failed", "interrupted", "stopped"):  # a run that did not finish is not a success
        print(f"error: run {run_id} {st.get('status')}" + (f": {st['error']}" if st.get("error") else ""),
              file=sys.stderr)
        return 1
    return 0


def _config_path(p: str) -> Path:
    path = Path(p)
    if not path.is_file():
        raise TuneLabError(f"config file {p!r} not found")
    return path


def _follow(run_id: str) -> dict:
    """Print new metric rows to stderr until the run ends; Ctrl-C detaches and leaves it running."""
    from tunelab.train import runs

    seen, last = 0, None
    try:
        while True:
            st = runs.status(run_id)
            rows = runs.metrics(run_id)
            seen = min(seen, len(rows))
            for r in rows[seen:]:
                print(f"step {r['step']}/{st.get('max_steps')} loss {r['loss']:.4f}"
                      + (f" eval_loss {r['eval_loss']:.4f}" if r.get("eval_loss") is not None else "")
                      + f" {r.get('tokens_per_s')} tok/s", file=sys.stderr)
            seen = len(rows)
            if st.get("status") != last:
                print(f"status: {st.get('status')}", file=sys.stderr)
                last = st.get("status")
            if st.get("status") in jobs.FINAL:
                return st
            time.sleep(1.0)
    except KeyboardInterrupt:
        print(f"detached: {run_id} keeps running (`tunelab runs show {run_id}`, `tunelab runs stop {run_id}`)",
              file=sys.stderr)
        return runs.status(run_id)


def cmd_list(args) -> int:
    from tunelab.train import runs

    rows = runs.list_runs()

    def human(o):
        lines = [f"{r['run']:<32} {r['status']:<11} {r['step']}/{r['max_steps'] or '?':<6} {r['method']:<8} "
                 f"{r['model']} on {r['data']}" for r in o["runs"]]
        return "\n".join(lines) or "no runs yet (`tunelab train --data NAME`)"

    emit({"runs": rows}, args.json, human)
    return 0


def cmd_show(args) -> int:
    from tunelab.train import curves, runs

    doc = runs.show(args.run)
    _add_preference_metrics(doc, runs.metrics(args.run))
    tb = curves.tensorboard_dir(args.run)  # the run's event files: `tensorboard --logdir` takes this or runs/
    doc["tensorboard"] = str(tb) if tb else None
    st = runs.status(args.run)
    if st.get("best_step") is not None and "best_step" not in doc:  # early stopping's pick of the run's weights
        doc.update(best_step=st["best_step"], best_eval_loss=st.get("best_eval_loss"),
                   early_stopped=bool(st.get("early_stopped")))

    def human(o):
        lines = [f"{o['run']}: {o['status']}, step {o['step']}/{o['max_steps']}"]
        if o.get("best_step") is not None:
            lines.append(f"  best eval loss {o['best_eval_loss']:.4f} at step {o['best_step']}"
                         + (f"; stopped early at step {o['step']}" if o.get("early_stopped") else ""))
        lines += [f"  step {m['step']:>5}  loss {_num(m.get('loss'))}"
                  + (f"  eval_loss {_num(m['eval_loss'])}" if m.get("eval_loss") is not None else "")
                  + (f"  reward_margin {m['reward_margin']:.4f}  reward_accuracy {m['reward_accuracy']:.2f}"
                     if m.get("reward_accuracy") is not None else "")
                  for m in o["metrics"][-10:]]
        if o.get("tensorboard"):
            lines.append(f"  tensorboard --logdir {o['tensorboard']}")
        if o.get("report"):  # the before/after report (evals/auto.py), in one sentence
            lines.append(f"  report {o['report']['report'] or '-'}: {o['report']['sentence']}")
        return "\n".join(lines + ([f"error: {o['error']}"] if o.get("error") else []))

    emit(doc, args.json, human)
    return 0


def _num(v) -> str:
    """A metric for the terminal: 4 decimals, or '-' when missing or not a number (a damaged row)."""
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


# A preference run's rows carry these too (train/preference.py); `runs show` passes them on where present.
PREFERENCE_METRICS = ("reward_margin", "reward_accuracy", "logps_chosen", "logps_rejected", "eval_reward_margin",
                      "eval_reward_accuracy", "eval_logps_chosen", "eval_logps_rejected", "kl", "eval_kl")


def _add_preference_metrics(doc: dict, rows: list[dict]) -> None:
    """Add the preference metrics of each metrics row (matched by step) to the `runs show` rows."""
    by_step = {r.get("step"): r for r in rows}
    for m in doc.get("metrics") or []:
        r = by_step.get(m.get("step")) or {}
        m.update({k: r[k] for k in PREFERENCE_METRICS if k in r})


def cmd_curves(args) -> int:
    from tunelab import outputs
    from tunelab.train import curves

    rows = curves.curves(args.run)
    text = curves.rows_csv(rows)
    doc = {"runs": list(dict.fromkeys(args.run)), "rows": len(rows),
           "metrics": list(dict.fromkeys(r["metric"] for r in rows)), "csv": None}
    if args.csv:
        doc["csv"] = str(outputs.write_text(outputs.target(args.csv, args.force), text))
    elif args.json:
        doc["curves"] = rows
    emit(doc, args.json, lambda o: f"wrote {o['rows']} rows to {o['csv']}" if o["csv"] else text.rstrip("\n"))
    return 0


def cmd_stop(args) -> int:
    from tunelab.train import runs

    st = runs.stop(args.run)
    emit({"run": args.run, "status": st.get("status")}, args.json, lambda o: f"{o['run']}: stop requested")
    return 0


def cmd_queue(args) -> int:
    from tunelab.train import runs

    st = (runs.cancel if args.runs_command == "cancel" else runs.front)(args.run)
    emit({"run": args.run, "status": st.get("status")}, args.json, lambda o: f"{o['run']} {o['status']}")
    return 0


def cmd_resume(args) -> int:
    from tunelab.train import runs

    st = runs.resume(args.run)
    emit({"run": args.run, "status": st.get("status")}, args.json, lambda o: f"{o['run']} {o['status']}")
    return 0


def add_manage_commands(rs) -> None:
    """`runs rename|note|tag|delete`: a display name, notes and tags per run, and deleting one (train/manage.py)."""
    q = rs.add_parser("rename", help="give a run a display name (its id stays); an empty name clears it")
    q.add_argument("run")
    q.add_argument("name")
    q = rs.add_parser("note", help="set a run's notes (an empty text clears them)")
    q.add_argument("run")
    q.add_argument("text")
    q = rs.add_parser("tag", help="add tags to a run (or remove them with --remove)")
    q.add_argument("run")
    q.add_argument("tags", nargs="+")
    q.add_argument("--remove", action="store_true", help="remove these tags instead of adding them")
    q = rs.add_parser("delete", help="delete a finished run's folder (refused while it is queued or running)")
    q.add_argument("run")
    q.add_argument("--force", action="store_true", help="delete even when other runs start from this one")
    for name in ("rename", "note", "tag", "delete"):
        add_json(rs.choices[name])
        rs.choices[name].set_defaults(func=cmd_manage)


def cmd_manage(args) -> int:
    from tunelab.train import manage

    c = args.runs_command
    if c == "delete":
        doc = manage.delete(args.run, force=args.force)
        emit(doc, args.json, lambda o: f"deleted {o['run']} ({o['freed_mb']} MB freed)")
        return 0
    if c == "rename":
        doc = manage.rename(args.run, args.name)
    elif c == "note":
        doc = manage.note(args.run, args.text)
    else:
        doc = manage.tag(args.run, remove=args.tags) if args.remove else manage.tag(args.run, add=args.tags)
    emit(doc, args.json, lambda o: f"{o['run']}: {o['name'] or o['run']} [{', '.join(o['tags'])}]"
         + (f" — {o['notes']}" if o["notes"] else ""))
    return 0


def cmd_export(args) -> int:
    from tunelab.train import export

    if args.job:
        doc = export.run_job(args.job, lambda: export.export(args.run, args.out, merge=args.merge, gguf=args.gguf,
                                                             gguf_type=args.gguf_type, ollama=args.ollama,
                                                             force=args.force))
    else:
        doc = export.export(args.run, args.out, merge=args.merge, gguf=args.gguf, gguf_type=args.gguf_type,
                            ollama=args.ollama, force=args.force)
    emit(doc, args.json, lambda o: "\n".join(f"wrote {p}" for p in o["files"]))
    return 0
