"""Writing a transformers decoder and its BPE tokenizer as a GGUF file, one table entry per architecture.

Tensor names come from the `gguf` package's own HF -> GGUF name map (the one llama.cpp's
convert_hf_to_gguf.py and transformers' GGUF loader use), so a new architecture is an ARCHES entry plus
its metadata keys. The per-architecture surprises, as llama.cpp's converter handles them:
- Llama/Mistral rotate q/k with interleaved halves in llama.cpp: those two weights are permuted.
- Gemma's RMSNorm multiplies by (1 + w); llama.cpp's by w, so every norm weight is stored as w + 1.
- Phi-3 keeps its fused qkv_proj and gate_up_proj (attn_qkv, ffn_up of twice the width).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TuneLabError


@dataclass(frozen=True)
class Arch:
    gguf: str  # llama.cpp's architecture name (gguf.MODEL_ARCH member name in lower case)
    permute_qk: bool = False
    norm_shift: float = 0.0
    gemma: bool = False  # key/value length, sliding window and soft-capping keys


ARCHES = {
    "llama": Arch("llama", permute_qk=True),
    "mistral": Arch("llama", permute_qk=True),  # llama.cpp runs Mistral as llama
    "qwen2": Arch("qwen2"),
    "qwen3": Arch("qwen3"),
    "gemma2": Arch("gemma2", norm_shift=1.0, gemma=True),
    "gemma3_text": Arch("gemma3", norm_shift=1.0, gemma=True),
    "phi3": Arch("phi3"),
}


def _permute(w, n_head: int):
    """HF stores q/k rotary halves side by side; llama.cpp's llama expects them interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _metadata(w, c, arch: Arch) -> None:
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    rope = (getattr(c, "rope_parameters", None) or {})
    rope = rope.get("full_attention", rope) if isinstance(rope.get("full_attention"), dict) else rope
    w.add_rope_freq_base(float(rope.get("rope_theta") or getattr(c, "rope_theta", 10000.0)))
    rotary = int(head_dim * (getattr(c, "partial_rotary_factor", None) or rope.get("partial_rotary_factor") or 1.0))
    w.add_rope_dimension_count(rotary)
    if arch.gemma:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        if getattr(c, "sliding_window", None):
            w.add_sliding_window(c.sliding_window)
        if getattr(c, "attn_logit_softcapping", None):
            w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        if getattr(c, "final_logit_softcapping", None):
            w.add_final_logit_softcapping(c.final_logit_softcapping)
    elif arch.gguf == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(c.vocab_size)


def write_gguf(model, tok, path: Path, name: str, pre: str = "default", qtype: str = "f32") -> None:
    """Write a decoder of one of ARCHES and its BPE tokenizer as a GGUF file.

    qtype "q8_0" stores every 2-D weight whose rows split into 32-value blocks as Q8_0 (as llama.cpp's
    own converter does with --outtype q8_0); norms, biases and odd-sized tensors stay float32. Other
    types: convert.save_gguf().
    """
    import gguf
    import numpy as np
    from gguf import quants

    q8 = gguf.GGMLQuantizationType.Q8_0
    if qtype not in ("f32", "q8_0"):
        raise ValueError(f"write_gguf writes f32 or q8_0, not {qtype!r} (save_gguf quantises with llama.cpp)")
    c = model.config
    arch = ARCHES.get(c.model_type)
    if arch is None:
        supported = ", ".join(sorted(ARCHES))
        raise TuneLabError(f"GGUF export supports {supported} models; this one is {c.model_type!r} "
                           "(export --merge and convert it with llama.cpp's convert_hf_to_gguf.py)")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf.upper()], c.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), arch.gguf)
    w.add_name(name)
    _metadata(w, c, arch)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(w, tok, c.vocab_size, pre)
    tied = getattr(c, "tie_word_embeddings", False)
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and tied:
            continue
        gname = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise TuneLabError(f"GGUF export does not know the tensor {key} of a {c.model_type!r} model")
        arr = tensor.detach().float().numpy()
        if arch.permute_qk and gname.endswith("attn_q.weight"):
            arr = _permute(arr, c.num_attention_heads)
        elif arch.permute_qk and gname.endswith("attn_k.weight"):
            arr = _permute(arr, c.num_key_value_heads)
        if arch.norm_shift and gname.endswith("norm.weight"):
            arr = arr + arch.norm_shift
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if qtype == "q8_0" and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            w.add_tensor(gname, quants.quantize(arr, q8), raw_dtype=q8)  # byte shape -> logical shape
        else:
            w.add_tensor(gname, arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _add_tokenizer(w, tok, vocab_size: int, pre: str) -> None:
    """The BPE vocabulary, merges, special ids and chat template, read from tokenizer.json."""
    import gguf

    spec = json.loads(tok.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise TuneLabError("GGUF export supports BPE tokenizers only")
    vocab = {**spec["model"]["vocab"], **{a["content"]: a["id"] for a in spec.get("added_tokens", [])}}
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    special = {a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    for t, i in vocab.items():
        if i < vocab_size:
            tokens[i] = t
            types[i] = gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for attr, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                      ("unk_token_id", w.add_unk_token_id), ("pad_token_id", w.add_pad_token_id)):
        if getattr(tok, attr, None) is not None:
            add(getattr(tok, attr))
    w.add_add_bos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
