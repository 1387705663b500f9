"""An Ollama model folder: the GGUF file and a Modelfile that carries the chat template, system prompt and stops.

Ollama renders prompts with Go templates, not the tokenizer's Jinja. Rather than translate Jinja
(which can do anything), the tokenizer's template is rendered on probe conversations and cut into
one block per role (prefix + content + suffix), a default system prompt and a generation prompt;
the Go template is written from those pieces and then checked against the tokenizer on more
conversations. A template that is not a sum of per-message blocks (one that folds the system
prompt into the first user turn, say) is refused in one line rather than exported wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TuneLabError

ROLES = ("system", "user", "assistant")
# Contents no template rewrites (no whitespace to trim, no markup) and that never occur in one.
PROBES = {"system": "tlSYSTEMprobe", "user": "tlUSERprobe", "assistant": "tlASSISTANTprobe"}
GGUF_NAME = "model.gguf"


@dataclass
class ChatFormat:
    """A chat template as blocks: each message is prefix[role] + content + suffix[role]."""

    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str  # appended after the last message (add_generation_prompt)
    system: str  # the system prompt the template adds when a conversation has none ("" if it adds none)

    def render(self, messages: list[dict]) -> str:
        """The prompt as Ollama builds it: SYSTEM first unless the conversation has its own, then the blocks."""
        if self.system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.system}, *messages]
        return "".join(self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in messages) + self.generation


def chat_format(tok) -> ChatFormat:
    """The tokenizer's chat template cut into per-role blocks, checked on multi-turn conversations.

    Raises:
        TuneLabError: the template cannot be written as per-message blocks.
    """
    sys_m, user_m, asst_m = ({"role": r, "content": PROBES[r]} for r in ROLES)
    user2 = {"role": "user", "content": PROBES["user"] + "2"}
    growing = [[sys_m], [sys_m, user_m], [sys_m, user_m, asst_m], [sys_m, user_m, asst_m, user2]]
    renders = [_render(tok, msgs, False) for msgs in growing]
    prefix, suffix, before = {}, {}, ""
    for msgs, text in zip(growing[:3], renders[:3]):
        role = msgs[-1]["role"]
        if not text.startswith(before) or (text[len(before):]).count(PROBES[role]) != 1:
            raise _untranslatable(f"the {role} message is not a block of its own")
        prefix[role], suffix[role] = text[len(before):].split(PROBES[role])
        before = text
    full = _render(tok, growing[-1], True)
    if not full.startswith(renders[-1]):
        raise _untranslatable("the generation prompt is not appended at the end")
    generation = full[len(renders[-1]):]
    system = ""
    only_user, user_block = _render(tok, [user_m], False), prefix["user"] + PROBES["user"] + suffix["user"]
    if only_user != user_block:  # the template adds a default system prompt
        head = only_user[: -len(user_block)] if only_user.endswith(user_block) else ""
        if not (head.startswith(prefix["system"]) and head.endswith(suffix["system"])):
            raise _untranslatable("a conversation without a system message gets something other than a system block")
        system = head[len(prefix["system"]): len(head) - len(suffix["system"])]
    fmt = ChatFormat(prefix, suffix, generation, system)
    checks = [[user_m], [sys_m, user_m], [user_m, asst_m, user2],
              [sys_m, user_m, asst_m, user2, {"role": "assistant", "content": "a2"}, {"role": "user", "content": "u3"}]]
    for msgs in checks:
        if fmt.render(msgs) != _render(tok, msgs, True):
            raise _untranslatable("its blocks differ between turns")
    return fmt


def _render(tok, messages: list[dict], generation: bool) -> str:
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except Exception as exc:  # a template may refuse a probe (e.g. one without a system role)
        raise _untranslatable(f"it refused a probe conversation ({exc})") from None


def _untranslatable(why: str) -> TuneLabError:
    return TuneLabError(f"this model's chat template cannot be written as an Ollama TEMPLATE ({why}); "
                        "export --gguf and write the Modelfile's TEMPLATE by hand")


def go_template(fmt: ChatFormat) -> str:
    """The Go template Ollama renders over .Messages; one shared block when only the role name differs."""
    pieces = {r: (fmt.prefix[r], fmt.suffix[r]) for r in ROLES}
    for text in (fmt.generation, *(p for pair in pieces.values() for p in pair)):
        if "{{" in text or "}}" in text or '"""' in text:
            raise _untranslatable("its text contains template or Modelfile delimiters")
    shared = {(pre.replace(r, "\0", 1), suf) for r, (pre, suf) in pieces.items()}
    if len(shared) == 1 and all(pre.count(r) == 1 for r, (pre, _) in pieces.items()):  # ChatML and the like
        (pre, suf), = shared
        head, tail = pre.split("\0")
        body = head + _tag(".Role") + tail + _tag(".Content") + suf
    else:
        body = "".join(_tag(("if" if i == 0 else "else if") + f' eq .Role "{r}"') + pre + _tag(".Content") + suf
                       for i, (r, (pre, suf)) in enumerate(pieces.items())) + _tag("end")
    return _tag("range .Messages") + body + _tag("end") + fmt.generation


def _tag(action: str) -> str:
    return "{{ " + action + " }}"


def stop_words(fmt: ChatFormat, tok) -> list[str]:
    """Where an answer ends: the end-of-turn token and every special token the template writes.

    A template with no special token in its user prefix (a plain-text one such as "### Instruction:")
    also stops where the model would begin the next user turn.
    """
    specials = [s for s in getattr(tok, "all_special_tokens", []) if s]
    written = "\0".join([*(fmt.prefix[r] + "\0" + fmt.suffix[r] for r in ROLES), fmt.generation])
    stops = [tok.eos_token] if tok.eos_token else []
    stops += sorted((s for s in specials if s in written and s not in stops), key=written.find)
    user_prefix = fmt.prefix["user"].strip()
    if user_prefix and not any(s in user_prefix for s in specials):
        stops.append(user_prefix)
    return [s for s in stops if '"""' not in s]


def modelfile(tok, gguf_name: str = GGUF_NAME) -> str:
    """The Modelfile text for a GGUF file beside it, from the tokenizer's chat template."""
    fmt = chat_format(tok)
    lines = ["# `ollama create NAME -f Modelfile` in this folder, then `ollama run NAME`.",
             f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(fmt)}"""']
    if fmt.system:
        if '"""' in fmt.system:
            raise _untranslatable("its default system prompt contains a Modelfile delimiter")
        lines.append(f'SYSTEM """{fmt.system}"""')
    lines += [f"PARAMETER stop {_quote(s)}" for s in stop_words(fmt, tok)]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return f'"{value}"' if '"' not in value and "\n" not in value else f'"""{value}"""'


def write(folder: Path, text: str) -> Path:
    """Write the Modelfile into folder; returns its path."""
    path = folder / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path
