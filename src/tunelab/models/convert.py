"""Converting a run's weights: merged into its base, and written as a GGUF file for llama.cpp.

This is the models layer: it reads a run through its `output.json` contract (models/run_output.py)
and never imports `train`. `tunelab export` (train/export.py) and the llama.cpp backend both call it.

GGUF is written by models/gguf_writer.py with the `gguf` package (llama.cpp's convert_hf_to_gguf.py is
not installed here), for the Llama, Mistral, Qwen2/3, Gemma2/3 and Phi-3 architectures, in float32 so
the file gives the same greedy output as the merged weights, or Q8_0. The k-quants and Q4_0 come from
llama.cpp's own quantiser (the optional `llamacpp` extra), run on that float32 file.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.models import registry, run_output
from tunelab.models.gguf_writer import write_gguf  # the writer, one entry per architecture
from tunelab.models.llama_lib import import_llama_cpp, quiet_llama_log

# --gguf-type -> llama.cpp's file type. f32 and q8_0 are written here; the others need llama.cpp's
# quantiser, which picks per tensor (Q4_K_M keeps half the attn_v/ffn_down tensors at Q6_K, say).
LLAMA_FTYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
GGUF_TYPES = ("f32", "q8_0", *LLAMA_FTYPES)


def saved(run_id: str) -> tuple[Path, dict]:
    """(run folder, its output.json) for a run that has saved weights; a user error otherwise."""
    d = jobs.job_dir("runs", run_id)
    if not (d / "config.yaml").exists():
        raise TuneLabError(f"unknown run {run_id!r} (see `tunelab runs list`)")
    meta = run_output.read(d)
    if not meta:
        raise TuneLabError(f"run {run_id} has no saved weights yet (it has not reached its first checkpoint)")
    return d, meta


def merged(run_id: str):
    """(model with the adapter merged into its weights, tokenizer), on CPU in float32."""
    from tunelab.models.loading import load_model

    model, tok = load_model(run_id, device="cpu")
    if getattr(model, "peft_config", None):
        if model.peft_config["default"].is_prompt_learning:
            raise TuneLabError("a P-tuning run has no weights to merge (its soft prompt is added at run time); "
                               "export the adapter without --merge/--gguf")
        model = model.merge_and_unload()
    return model, tok


def merged_dir(ref: registry.ModelRef) -> Path:
    """A LoRA run's weights merged into its base once, as a cached folder that loads like any model.

    Generating through base + unmerged adapter runs every LoRA matmul beside the base's on each
    token (about 0.6x the base's speed on CPU); the merged copy generates at the base's speed with
    the same greedy answers. It lives in runs/<id>/merged/step-N-<digest>/ (the digest follows the
    adapter file, so a resumed run reaching the same step again gets a new copy), is written to a
    temporary name and renamed, and an earlier checkpoint's copy is removed.

    Args:
        ref: a resolved run (kind "run") with a LoRA or QLoRA adapter.
    Returns:
        The folder (safetensors + tokenizer + config.json).
    """
    import hashlib
    import shutil

    from tunelab.jsonio import locked

    weights = Path(ref.adapter) / "adapter_model.safetensors"
    st = weights.stat()
    digest = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:8]
    root = Path(ref.path) / "merged"
    target = root / f"step-{ref.extra.get('step') or 0}-{digest}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".lock"):  # two processes asking at once: one merges, the other reuses it
        if not (target / "config.json").exists():
            model, tok = merged(ref.name)
            tmp = root / f".{target.name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                model.save_pretrained(tmp)
                tok.save_pretrained(tmp)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for old in root.glob("step-*"):  # an earlier checkpoint's copy is stale now
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def run_gguf(run_id: str) -> Path:
    """The run's merged model as a float32 GGUF file for llama.cpp, written once per checkpoint.

    llama.cpp cannot apply a PEFT adapter itself, so a run is merged and converted (SmolLM2: about
    7 s); the file sits in the run folder, named by the checkpoint step, so a resumed run gets a new one.
    """
    d, meta = saved(run_id)
    path = d / "gguf" / f"step-{meta['step']}.gguf"
    if path.exists():
        return path
    model, tok = merged(run_id)
    # written under a temporary name, then renamed: another process converting the same run wrote an identical file
    save_gguf(model, tok, path, name=run_id, pre=tokenizer_pre(meta["base"]))
    for old in path.parent.glob("step-*.gguf"):  # an earlier checkpoint's file is stale now
        if old != path:
            old.unlink(missing_ok=True)
    return path


def tokenizer_pre(base: str) -> str:
    """llama.cpp's pre-tokenizer name: kept from the base GGUF when there is one."""
    ref = registry.resolve(base)
    if ref.kind == "gguf":
        import gguf

        field = gguf.GGUFReader(ref.path).fields.get("tokenizer.ggml.pre")
        if field is not None:
            return bytes(field.parts[field.data[0]]).decode()
    return "default"


def check_gguf_type(qtype: str) -> None:
    """A user error for an unknown type, or for a llama.cpp type when llama.cpp is not installed.

    Called before merging (seconds to minutes), so a missing extra costs nothing.
    """
    if qtype not in GGUF_TYPES:
        raise TuneLabError(f"unknown GGUF type {qtype!r}: use one of {', '.join(GGUF_TYPES)}")
    if qtype in LLAMA_FTYPES and _quantiser() is None:
        raise TuneLabError(f"--gguf-type {qtype} needs llama.cpp's quantiser, the optional llamacpp extra: run "
                           "`make install-llamacpp` (it compiles for about 10 minutes); f32 and q8_0 need nothing extra")


def _quantiser():
    return import_llama_cpp()


def save_gguf(model, tok, path: Path, name: str, pre: str = "default", qtype: str = "f32") -> None:
    """Write the model as a GGUF file of type qtype (one of GGUF_TYPES), atomically.

    The file appears under its name only once complete; llama.cpp types go through a temporary
    float32 file that is removed afterwards.
    """
    check_gguf_type(qtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    f32 = path.with_name(f".{path.name}.{os.getpid()}.f32.tmp")
    try:
        if qtype in LLAMA_FTYPES:
            write_gguf(model, tok, f32, name=name, pre=pre)
            quantize(f32, tmp, qtype)
        else:
            write_gguf(model, tok, tmp, name=name, pre=pre, qtype=qtype)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        f32.unlink(missing_ok=True)


def quantize(src: Path, dst: Path, qtype: str) -> None:
    """Quantise a GGUF file with llama.cpp's quantiser (llama_model_quantize) into dst.

    Args:
        src: a float32 (or f16/bf16) GGUF file.
        dst: the file to write.
        qtype: one of LLAMA_FTYPES. Rows whose length is not a multiple of 256 cannot hold k-quant
            blocks; llama.cpp stores those tensors in its fallback type (Q5_0 for Q4_K, Q8_0 for Q6_K).
    """
    import ctypes

    check_gguf_type(qtype)
    if qtype not in LLAMA_FTYPES:
        raise ValueError(f"llama.cpp's quantiser writes {', '.join(LLAMA_FTYPES)}, not {qtype!r}")
    llama_cpp = _quantiser()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[qtype])
    params.nthread = os.cpu_count() or 1
    with quiet_llama_log():  # it logs a line per tensor
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise TuneLabError(f"llama.cpp could not quantise the model to {qtype} (llama_model_quantize returned {rc})")


__all__ = ["GGUF_TYPES", "LLAMA_FTYPES", "check_gguf_type", "merged", "merged_dir", "quantize", "run_gguf",
           "save_gguf", "saved", "tokenizer_pre", "write_gguf"]
