"""The `tunelab` command. Each workflow area registers its own subcommands from its cli module.

Errors a user can cause are TuneLabError: printed as one line on stderr, exit status 1.
With --json a command prints exactly one JSON document on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Any, Callable

from tunelab.errors import TuneLabError
from tunelab.jsonio import dumps

# Modules with a `register(subparsers)` function; each owns its subcommands.
AREAS = (
    "tunelab.app_cli",
    "tunelab.data.cli",
    "tunelab.models.cli",
    "tunelab.synth.cli",
    "tunelab.evals.cli",
    "tunelab.workflow_cli",
    "tunelab.train.cli",
    "tunelab.train.sweep_cli",
    "tunelab.serve.cli",
)


def emit(obj: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print obj as one JSON document (--json) or as human text."""
    if as_json:
        sys.stdout.write(dumps(obj) + "\n")  # NaN and infinity as null: always valid JSON
    else:
        text = human(obj) if human else dumps(obj, indent=2)
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like argparse but shorter
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tunelab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in AREAS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:  # an area not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A terminal gets TuneLab's own progress lines; transformers' per-load "Loading weights" bars
    # (a few ms each) and peft's call of a deprecated transformers method only add noise.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
        return int(rc or 0)
    except TuneLabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except BrokenPipeError:
        # `tunelab data show x | head`: the reader left; not an error. (It is an OSError, so it must be
        # caught before the file-system branch below, which used to swallow it.)
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as exc:
        # Disk full, read-only or permission-denied workspace, a path in the way: one clear line.
        where = f" {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error: file system error on{where}: {exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
