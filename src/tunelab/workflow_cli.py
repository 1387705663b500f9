"""`tunelab reports wrong | fix | seeds`: the loop from a report's wrong answers back into the data.

A command module over `workflow` (which reaches evals, synth and train), so it sits on top; it adds
its commands to the `reports` parser that evals/cli.py makes.
"""

from __future__ import annotations

from tunelab import workflow
from tunelab.cli import add_json, emit
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate
from tunelab.evals.regress import cli as regress_cli


def register(sub) -> None:
    rsub = sub.choices["reports"].commands
    # The loop: a report's wrong answers back into the data (then `tunelab train --model RUN --data NAME`).
    q = rsub.add_parser("wrong", help="the examples the tuned model got wrong (not exact, ROUGE-L below --threshold)")
    q.add_argument("report")
    _pick_flags(q, examples=False)
    add_json(q)
    q.set_defaults(func=cmd_wrong)
    q = rsub.add_parser("fix", help="add a report's wrong answers, corrected, as training records (a new dataset version)")
    q.add_argument("report")
    q.add_argument("--into", required=True, help="dataset NAME to add them to (a record it already has is corrected)")
    q.add_argument("--answers", help="corrected answers: JSON {index or id: answer} or JSONL {index or id, output}; "
                                     "default: each example's reference")
    q.add_argument("--allow-test-rows", action="store_true",
                   help="add them even when they are the rows a run is tested on (they stop testing anything)")
    _pick_flags(q)
    add_json(q)
    q.set_defaults(func=cmd_fix)
    q = rsub.add_parser("seeds", help="send a report's wrong answers to Generate: seeds plus 'mistakes to avoid'")
    q.add_argument("report")
    q.add_argument("--into", required=True, help="seed dataset NAME (a new version)")
    q.add_argument("--template", help="prompt template to add the mistakes to (default: default-en, or default-zh "
                                      "for Chinese prompts)")
    _pick_flags(q)
    add_json(q)
    q.set_defaults(func=cmd_seeds)
    regress_cli.register(rsub)  # after the loop's commands, where `reports -h` has always listed it


def _pick_flags(p, examples: bool = True) -> None:
    if examples:
        p.add_argument("--examples", help="comma-separated example indices (default: every wrong answer)")
    p.add_argument("--model", help="whose answers are read (default: the report's run, else its last model)")
    p.add_argument("--threshold", type=float, default=0.5, help="ROUGE-L below which a non-exact answer is wrong")


def _indices(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise TuneLabError(f"--examples takes comma-separated indices such as 0,3,7, not {text!r}") from None


def cmd_wrong(args) -> int:
    doc = evaluate.load_report(args.report)
    rows = workflow.wrong_examples(doc, args.model, args.threshold)
    emit({"report": args.report, "model": args.model or workflow.tuned_model(doc), "examples": rows}, args.json,
         lambda d: "\n".join(f"{e['index']}\t{e['rouge_l']:.2f}\t{e['prompt'][:50]}\t{e['answer'][:50]}"
                             for e in d["examples"]) or "no wrong answers")
    return 0


def cmd_fix(args) -> int:
    answers = workflow.read_answers(args.answers) if args.answers else None
    out = workflow.fix(args.report, args.into, _indices(args.examples), answers, args.model, args.threshold,
                       allow_test=args.allow_test_rows)
    emit(out, args.json, lambda d: f"{d['name']} v{d['version']}: {d['added']} added, {d['corrected']} corrected "
                                   f"from report {d['report']}; next: tunelab train --model RUN --data {d['name']}")
    return 0


def cmd_seeds(args) -> int:
    out = workflow.seeds(args.report, args.into, args.template, _indices(args.examples), args.model, args.threshold)
    emit(out, args.json, lambda d: f"seeds {d['seeds']['name']} v{d['seeds']['version']}, prompt "
                                   f"{d['prompt']['name']} v{d['prompt']['version']}; next: {d['command']}")
    return 0
