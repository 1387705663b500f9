"""`tunelab models list|add` and `tunelab chat`."""

from __future__ import annotations

import argparse
import sys

from tunelab.cli import add_json, emit

BACKENDS = ("auto", "local", "llamacpp")


def _token_counter(model: str | None):
    from tunelab.models.tokens import token_counter  # transformers loads only when a command counts tokens

    return token_counter(model)


def register(sub) -> None:
    # `data stats` and `data clean --max-tokens` count tokens with --model's tokenizer: the data layer
    # cannot load a model, so the models layer hands its counter to the `data` commands here.
    sub.choices["data"].set_defaults(token_counter=_token_counter)
    models = sub.add_parser("models", help="list and add models")
    msub = models.add_subparsers(dest="models_command", required=True)

    p = msub.add_parser("list", help="shipped and added models")
    add_json(p)
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("add", help="register a local HF folder, a .gguf file, an http(s) OpenAI-compatible endpoint, "
                        "or a Hugging Face Hub id ORG/NAME[@REVISION] (downloaded once: HF_ENDPOINT, HF_HOME, HF_TOKEN)")
    p.add_argument("name")
    p.add_argument("target", metavar="PATH_OR_HUB_ID")
    p.add_argument("--revision", default=None, help="Hub branch, tag or commit (default: main)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)  # the Models page's download job id
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding an endpoint's key")
    p.add_argument("--remote-model", default="", help="the model id an endpoint expects (default: NAME)")
    add_json(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("chat", help="ask a model one question; the answer streams to stdout")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: llama.cpp for GGUF models when installed, else transformers")
    p.set_defaults(func=cmd_chat)


def cmd_list(args: argparse.Namespace) -> None:
    from tunelab.models.registry import list_models

    from tunelab.models.templates import template_name

    rows = [{"name": m["name"], "params": m["params"], "source": m["source"], "chat_template": m["chat_template"],
             "revision": m.get("revision", ""), "architecture": m.get("architecture", ""),
             "license": m.get("license", ""), "template": template_name(m)}
            for m in list_models()]
    emit({"models": rows}, args.json, _models_table)


def _models_table(obj: dict) -> str:
    lines = [f"{'NAME':<28} {'PARAMS':>8}  {'TEMPLATE':<9} {'ARCHITECTURE':<24} SOURCE"]
    for m in obj["models"]:
        params = f"{m['params'] / 1e6:.0f}M" if m["params"] else "?"
        lines.append(f"{m['name']:<28} {params:>8}  {m['template']:<9} {m['architecture'] or '?':<24} {m['source']}")
    return "\n".join(lines)


def cmd_add(args: argparse.Namespace) -> None:
    from tunelab.models.registry import add_model

    def add(on_progress=None):
        return add_model(args.name, args.target, api_key_env=args.api_key_env, remote_model=args.remote_model,
                         revision=args.revision, on_progress=on_progress)

    if args.job:
        from tunelab.models.download import run_job

        entry = run_job(args.job, add)
    else:
        entry = add()
    emit(entry, args.json, lambda e: f"added {e['name']} ({e['kind']}: {e.get('path') or e.get('base_url')})"
         + (f" from {e['hub_id']}@{e['revision'][:12]}" if e.get("hub_id") else ""))


def cmd_chat(args: argparse.Namespace) -> None:
    from tunelab.models.generation import GenerationSettings, get_backend

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed)
    spec = args.model if args.backend == "auto" else f"{args.backend}:{args.model}"
    backend = get_backend(spec)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": args.prompt}]
    stream = backend.stream_chat(messages, settings)
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    g = stream.generation
    if g:
        print(f"[{type(backend).__name__}: {g.completion_tokens} tokens, {g.latency_s:.2f} s, "
              f"{g.tokens_per_s:.1f} tokens/s, finish: {g.finish_reason}]", file=sys.stderr)
