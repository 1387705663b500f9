"""Loading models and tokenizers into transformers.

GGUF files are dequantised into transformers once and saved as safetensors in
<workspace>/models/cache/, because loading a GGUF is slow (SmolLM2 ~20 s) and a GGUF-loaded model
cannot be saved or trained; the cached copy loads in well under a second.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked
from tunelab.models.registry import ModelRef, resolve
from tunelab.models.weights import PICKLE_SUFFIXES, check_safetensors, model_cache  # noqa: F401  (loading.X callers)

# Base models ship without a chat template. This Alpaca-style fallback lets the same
# messages -> prompt path serve chat, evaluation and training; the UI says it is a fallback.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'assistant' %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def _cache_dir(ref: ModelRef) -> Path:
    digest = hashlib.sha1(f"{ref.path}:{os.path.getsize(ref.path)}".encode()).hexdigest()[:10]
    return model_cache() / f"{workspace.validate_name(ref.name[:40].replace(' ', '_'), 'model name')}-{digest}"


def _convert_gguf(ref: ModelRef, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src, fname = str(Path(ref.path).parent), Path(ref.path).name
    print(f"converting {ref.name} from GGUF to safetensors (once) ...", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=fname, quantization_config=GgufConfig(dequantize=True)
    )
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(target)
    # The dequantised float32 model (and the GGUF reader's buffers) would otherwise linger until a later
    # garbage collection, inside the peak memory of the training run that converted it first.
    del model, tok
    release_memory()


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc's malloc_trim, where present)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        if name:
            ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def hf_dir(model: str | ModelRef) -> Path:
    """The Hugging Face folder for a model (GGUF converted and cached on first call)."""
    ref = resolve(model) if isinstance(model, str) else model
    if ref.kind == "run":
        return hf_dir(ref.base)
    if ref.kind == "hf":
        return Path(ref.path)
    if ref.kind == "gguf":
        target = _cache_dir(ref)
        if not (target / "config.json").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with locked(target.parent / f".{target.name}.lock"):
                if not (target / "config.json").exists():
                    _convert_gguf(ref, target)
        return target
    raise TuneLabError(f"{ref.name} is an HTTP endpoint; it has no local weights")


def load_tokenizer(model: str | ModelRef):
    """The model's tokenizer, with the fallback chat template set when it has none."""
    from transformers import AutoTokenizer

    ref = resolve(model) if isinstance(model, str) else model
    src = Path(ref.adapter) if ref.kind == "run" and (Path(ref.adapter) / "tokenizer_config.json").exists() else hf_dir(ref)
    tok = AutoTokenizer.from_pretrained(str(src))
    if not tok.chat_template:
        tok.chat_template = FALLBACK_CHAT_TEMPLATE
        tok.init_kwargs["tunelab_fallback_template"] = True
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def has_native_template(tok) -> bool:
    return not tok.init_kwargs.get("tunelab_fallback_template", False)


def load_model(model: str | ModelRef, dtype: str = "float32", device: str | None = None, trainable: bool = False):
    """Load (model, tokenizer); a run id loads its base with the adapter applied.

    Args:
        model: a MODEL argument or a resolved ModelRef.
        dtype: float32 | bfloat16 | float16.
        device: "cpu", "cuda", ... (default: cuda when available).
        trainable: keep a run's adapter trainable (continue training) instead of inference mode.
    Returns:
        (model, tokenizer), model in eval mode unless trainable.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ref = resolve(model) if isinstance(model, str) else model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(ref)
    folder = check_safetensors(hf_dir(ref))
    if ref.kind == "run":
        check_safetensors(ref.adapter, adapter=True)
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, dtype), use_safetensors=True)
    if ref.kind == "run":
        from peft import PeftModel

        base = PeftModel.from_pretrained(base, ref.adapter, is_trainable=trainable)
    base.to(device)
    if not trainable:
        base.eval()
    return base, tok
