"""GGUF export types: file size and llama.cpp decode speed of each `--gguf-type`, against float32.

Writes the shipped SmolLM2-135M-Instruct (dequantised once into the model cache, as a run's base)
as f32, q8_0, q4_0, q4_k_m, q5_k_m and q6_k with TuneLab's exporter (models/convert.save_gguf),
then answers the same chat prompts greedily with each file in the llama.cpp backend, the types
interleaved over --rounds rounds so machine noise falls on all of them alike. Reports MB and
tokens/s per type, each as a ratio to f32 measured in the same run, and whether the first answer
matches f32's. Needs the llamacpp extra (`make install-llamacpp`). Appends a dated section to
bench/RESULTS.md (and bench/results/gguf.json).

    .venv/bin/python bench/gguf_bench.py [--max-new-tokens 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import record, row  # noqa: E402

PROMPTS = ["Give me three tips for a job interview.", "What colour is the sky, and why?",
           "Write a short poem about the sea."]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from tunelab.models import registry
    from tunelab.models.convert import GGUF_TYPES, save_gguf, tokenizer_pre
    from tunelab.models.generation import GenerationSettings
    from tunelab.models.llamacpp import LlamaCppBackend
    from tunelab.models.loading import load_model

    name = "smollm2-135m-instruct"
    model, tok = load_model(name, device="cpu")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for qtype in GGUF_TYPES:
            paths[qtype] = Path(tmp) / f"{qtype}.gguf"
            save_gguf(model, tok, paths[qtype], name=name, pre=tokenizer_pre(name), qtype=qtype)
        backends = {q: LlamaCppBackend(registry.resolve(str(p))) for q, p in paths.items()}
        tokens = {q: 0 for q in paths}
        seconds = {q: 0.0 for q in paths}
        first = {}
        for _ in range(args.rounds):
            for prompt in PROMPTS:
                for q, backend in backends.items():
                    gen = backend.chat([[{"role": "user", "content": prompt}]], settings)[0]
                    tokens[q] += gen.completion_tokens
                    seconds[q] += gen.latency_s
                    first.setdefault(q, gen.text)
        mb = {q: p.stat().st_size / 2**20 for q, p in paths.items()}
    speed = {q: tokens[q] / seconds[q] for q in paths}
    rows = []
    for q in paths:
        rows.append(row(f"{q}: file size", round(mb[q], 1), round(mb["f32"], 1), "MiB", higher_is_better=False))
        rows.append(row(f"{q}: decode speed (llama.cpp, greedy)", round(speed[q], 1), round(speed["f32"], 1),
                        "tokens/s"))
    same = ", ".join(f"{q}: {'same' if first[q] == first['f32'] else 'differs'}" for q in paths if q != "f32")
    record("gguf", rows, notes=f"SmolLM2-135M-Instruct, {len(PROMPTS)} prompts x {args.rounds} rounds, "
                               f"{args.max_new_tokens} new tokens max; first answer vs f32: {same}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
