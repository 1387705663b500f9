"""`tunelab generate`: grow a dataset from seed examples with a model (flags and JSON shape as documented in README.md)."""

from __future__ import annotations

import sys

from tunelab.errors import TuneLabError


def register(sub) -> None:
    from tunelab.cli import add_json
    from tunelab.synth.generate import DEFAULT_BACKEND, STRATEGIES

    p = sub.add_parser("generate", help="generate a batch of new records from seed examples")
    p.add_argument("--seeds", help="seed dataset NAME or file (Alpaca JSON/JSONL, seed_tasks.jsonl)")
    p.add_argument("--n", type=int, default=20, help="items to generate per strategy (default 20)")
    p.add_argument("--into", help="dataset NAME the accepted records are added to (a new version)")
    p.add_argument("--backend", default=DEFAULT_BACKEND,
                   help="local:MODEL or openai:BASE_URL[#model]; an endpoint is sent $OPENAI_API_KEY from this "
                        "shell, if set, as its bearer key (unset it for a server you do not trust)")
    p.add_argument("--prompt", help="a prompt template file (text with {seed_examples} {n} {task_description} {mistakes})")
    p.add_argument("--template", help="a saved prompt template name (default default-en)")
    p.add_argument("--prompt-version", type=int, help="version of the template (default: latest)")
    p.add_argument("--strategy", action="append", choices=STRATEGIES,
                   help="new (default), fill (answer seeds without output), paraphrase; repeatable")
    p.add_argument("--no-outputs", action="store_true", help="new instructions only, no second call for outputs")
    p.add_argument("--no-accept", action="store_true", help="keep the batch for review instead of adding it")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detach", action="store_true", help="run in the background; prints the batch id")
    p.add_argument("--job", metavar="BATCH", help="run (or re-run) the batch whose config.json is in generations/BATCH")
    add_json(p)
    p.set_defaults(func=cmd_generate)


def config(args):
    """The GenerateConfig the flags describe (a --prompt file becomes a template version)."""
    from tunelab.synth import prompts
    from tunelab.synth.generate import GenerateConfig

    template, version = args.template or prompts.DEFAULT_TEMPLATE, args.prompt_version
    if args.prompt:
        saved = prompts.from_file(args.prompt)
        template, version = saved["name"], saved["version"]
    return GenerateConfig(seeds=args.seeds, n=args.n, backend=args.backend, template=template,
                          prompt_version=version, strategies=args.strategy or ["new"],
                          outputs=not args.no_outputs, temperature=args.temperature, seed=args.seed)


def _human(result: dict) -> str:
    lines = [f"batch {result['batch']}: {result['generated']} generated, {result['accepted']} accepted, "
             f"{len(result['rejected'])} rejected (prompt {result['template']} v{result['prompt_version']})"]
    lines += [f"  rejected: {r['reason']}: {r['text'][:70]}" for r in result["rejected"]]
    if result.get("dataset"):
        lines.append(f"added to {result['dataset']['name']} v{result['dataset']['version']}")
    return "\n".join(lines)


def cmd_generate(args) -> int:
    from tunelab.cli import emit
    from tunelab.synth import generate

    if not args.seeds and not args.job:
        raise TuneLabError("give --seeds PATH_OR_NAME (a seed dataset or file)")
    if not args.into and not args.no_accept:
        raise TuneLabError("give --into NAME (the dataset to add accepted records to), or --no-accept")
    if args.into:
        from tunelab.workspace import validate_name

        validate_name(args.into, "dataset name")
    cfg = generate.load_config(args.job) if args.job and not args.seeds else config(args)
    if args.detach:
        batch_id = generate.start_batch(cfg, into=None if args.no_accept else args.into)
        emit({"batch": batch_id, "status": "queued"}, args.json, lambda r: f"started batch {r['batch']}")
        return 0

    def progress(done: int, total: int, message: str) -> None:
        sys.stderr.write(f"[generate] {message}\n")

    if args.job and not generate.batch_dir(args.job).exists():
        raise TuneLabError(f"unknown generation batch {args.job!r}")
    result = generate.run(cfg, args.job, progress)
    if args.into and not args.no_accept:
        result["dataset"] = generate.accept(result["batch"], args.into) if result["accepted"] else None
    emit(result, args.json, _human)
    return 0
