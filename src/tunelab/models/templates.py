"""Named chat templates for base models, and which one a model uses.

A model with its own chat template ("native") keeps it. A base model gets one of these by name
(`tunelab train --template NAME`, the Train page picker), or the one detected from its tokenizer's
special tokens and config. A run saves its tokenizer with the template it trained with, so chat,
compare, serve and export (GGUF metadata, the Ollama Modelfile) use that same template afterwards.
"""

from __future__ import annotations

from tunelab.errors import TuneLabError

_SYS_FIRST = "{% for m in messages %}"

TEMPLATES: dict[str, str] = {
    "chatml": (
        _SYS_FIRST + "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "qwen": (  # ChatML with Qwen's default system prompt when none is given
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        + _SYS_FIRST + "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}" + _SYS_FIRST + "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "gemma": (  # Gemma has no system role: a system message opens the first user turn
        "{{ bos_token }}{% set ns = namespace(sys='') %}" + _SYS_FIRST
        + "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}"
        "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
        "{% if m['role'] == 'user' %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}{{ m['content'] | trim }}<end_of_turn>\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "mistral": (  # no system role either: it opens the first [INST]
        "{{ bos_token }}{% set ns = namespace(sys='') %}" + _SYS_FIRST
        + "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}"
        "{% elif m['role'] == 'user' %}[INST] {{ ns.sys }}{% set ns.sys = '' %}{{ m['content'] }} [/INST]"
        "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "phi3": (
        _SYS_FIRST + "<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    "alpaca": (  # the fallback TuneLab has always used for base models (models/loading.py)
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
        "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
        "{% elif m['role'] == 'assistant' %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}### Response:\n{% endif %}"
    ),
    "plain": (  # no markup: turns separated by blank lines (completion-style base models)
        "{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
        "\n\n{% endfor %}"
    ),
}
NAMES = ("auto", "native", *TEMPLATES)  # train/config.py's `template` choices hold the same names

# The marker tokens that identify a template family, in the order they are tried.
_MARKERS = (("llama3", "<|start_header_id|>"), ("gemma", "<start_of_turn>"), ("chatml", "<|im_start|>"),
            ("phi3", "<|assistant|>"), ("mistral", "[INST]"))


def get(name: str) -> str:
    """The Jinja source of a named template."""
    if name not in TEMPLATES:
        choices = ", ".join(NAMES)
        raise TuneLabError(f"unknown chat template {name!r}; choose one of: {choices}")
    return TEMPLATES[name]


def family(template: str | None) -> str:
    """The named family a chat template string belongs to ("" when none matches)."""
    if not template:
        return ""
    for name, body in TEMPLATES.items():
        if template == body:
            return name
    return next((name for name, marker in _MARKERS if marker in template), "")


def detect(tok, model_type: str = "") -> str:
    """The template a base model (no chat template of its own) should train with.

    Its tokenizer's special tokens decide (a base Gemma already knows <start_of_turn>, a base Qwen
    <|im_start|>: the config's model type picks Qwen's flavour of ChatML); a tokenizer with none of
    them gets Alpaca, whose markers are plain text rather than tokens the model never saw.
    """
    vocab = tok.get_vocab()
    for name, marker in _MARKERS:
        if marker in vocab:
            return "qwen" if name == "chatml" and model_type.startswith("qwen") else name
    return "alpaca"


def apply(tok, name: str, model_type: str = "") -> str:
    """Set tok's chat template from a choice ("auto", "native" or a name); returns the name used."""
    native = not tok.init_kwargs.get("tunelab_fallback_template", False) and bool(tok.chat_template)
    if name == "native" or (name == "auto" and native):
        if not native:
            choices = ", ".join(TEMPLATES)
            raise TuneLabError(f"this model has no chat template of its own; choose one with --template ({choices})")
        return family(tok.chat_template) or "native"
    chosen = detect(tok, model_type) if name == "auto" else name
    tok.chat_template = get(chosen)
    tok.init_kwargs["tunelab_fallback_template"] = False
    tok.init_kwargs["tunelab_template"] = chosen
    return chosen


def template_name(entry: dict) -> str:
    """The template a registry row's model chats with: its family when native, else the Alpaca fallback."""
    if entry.get("kind") == "openai":
        return "endpoint"
    if not entry.get("chat_template", True):
        return "alpaca"
    if entry.get("name") == "smollm2-135m-instruct":
        return "chatml"
    path = entry.get("path") or ""
    if path:
        from pathlib import Path

        from tunelab.jsonio import read_json

        folder = Path(path)
        jinja = folder / "chat_template.jinja"
        text = jinja.read_text() if jinja.is_file() else (read_json(folder / "tokenizer_config.json") or {}).get(
            "chat_template") if folder.is_dir() else None
        return family(text if isinstance(text, str) else None) or ("native" if text else "alpaca")
    return "native"


def apply_to(tok, name: str, model: str) -> str:
    """apply() with the model type read from MODEL's config (a run's base for a run); returns the name used."""
    from tunelab.models.hub import describe
    from tunelab.models.loading import hf_dir

    return apply(tok, name, describe(hf_dir(model))["model_type"])
