"""`export --ollama`: the Modelfile parses and its Go TEMPLATE renders what the tokenizer's chat template renders.

Ollama is not installed here, so the test carries its own reader of Modelfile directives and a small
Go-template renderer for the subset Ollama templates use (range/if/else if over .Messages, .System,
.Prompt, .Response, eq), both written from Ollama's documentation, independently of the writer.
"""

from __future__ import annotations

import re

import pytest

import tiny_model as tiny_builder
from cli_run import one_line_error, tunelab
from tunelab.cli import main as cli
from tunelab.errors import TuneLabError
from tunelab.models import ollama
from tunelab.models.loading import FALLBACK_CHAT_TEMPLATE, load_tokenizer
from tunelab.train import runs
from tunelab.train.config import TrainConfig

CONVERSATIONS = [
    [{"role": "user", "content": "What colour is the sky?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."},
     {"role": "user", "content": "And a vegetable?"}],
    [{"role": "system", "content": "You are terse.\nNo lists."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Say {{ .Role }} literally."}],
]


# --- a Modelfile reader ----------------------------------------------------------------------------

def parse_modelfile(text: str) -> dict:
    """{"FROM": [..], "TEMPLATE": [..], "SYSTEM": [..], "PARAMETER": [(name, value)]}; values unquoted."""
    out: dict = {}
    rest = text
    while rest:
        line, _, after = rest.partition("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            rest = after
            continue
        m = re.match(r"\s*([A-Za-z]+)\s+", line)
        assert m, f"not a directive: {line!r}"
        directive, rest = m.group(1).upper(), rest[m.end():]
        assert directive in {"FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "ADAPTER", "LICENSE", "MESSAGE"}, directive
        name = None
        if directive == "PARAMETER":
            name, rest = re.match(r"(\S+)\s+(.*)", rest, re.S).groups()
        if rest.startswith('"""'):
            value, sep, rest = rest[3:].partition('"""')
            assert sep, "unterminated triple quote"
            assert rest[:1] in ("", "\n"), "text after a closing triple quote"
        elif rest.startswith('"'):
            value, sep, rest = rest[1:].partition('"')
            assert sep and "\n" not in value and rest[:1] in ("", "\n")
        else:
            value, _, rest = rest.partition("\n")
        rest = rest[1:] if rest.startswith("\n") else rest
        out.setdefault(directive, []).append((name, value) if name else value)
    return out


# --- a Go text/template renderer for Ollama's subset -----------------------------------------------

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _tokens(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", a)] with Go's trim markers applied."""
    out, pos = [], 0
    for m in ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            pos += len(template[pos:]) - len(template[pos:].lstrip())
    out.append(("text", template[pos:]))
    return out


def _parse(tokens: list, i: int = 0, stops: tuple = ()) -> tuple[list, int, str | None]:
    """Nodes until one of stops ("end", "else..."): (nodes, next index, the stop action met)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
        elif value == "end" or value.startswith("else"):
            assert value.split()[0] in stops, f"unexpected {{{{ {value} }}}}"
            return nodes, i, value
        elif value.startswith("range "):
            body, i, stop = _parse(tokens, i, ("end",))
            assert stop == "end"
            nodes.append(("range", value[6:].strip(), body))
        elif value.startswith("if "):
            branches, cond = [], value[3:].strip()
            while True:
                body, i, stop = _parse(tokens, i, ("end", "else"))
                branches.append((cond, body))
                if stop == "end":
                    break
                cond = stop[len("else if "):].strip() if stop.startswith("else if ") else "true"
            nodes.append(("if", branches))
        else:
            nodes.append(("value", value))
    assert not stops, "missing {{ end }}"
    return nodes, i, None


def _value(expr: str, dot, root: dict):
    if expr == "true":
        return True
    if expr.startswith('"'):
        return expr[1:-1]
    if expr.startswith("eq "):
        a, b = re.findall(r'"[^"]*"|\S+', expr[3:])
        return _value(a, dot, root) == _value(b, dot, root)
    if expr.startswith("not "):
        return not _value(expr[4:], dot, root)
    assert re.fullmatch(r"\$?\.[A-Za-z]+", expr), f"unsupported expression {expr!r}"
    scope = root if expr.startswith("$") else dot
    return scope.get(expr.lstrip("$.")) or ""


def _run(nodes: list, dot, root: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_value(node[1], dot, root)))
        elif node[0] == "range":
            out += [_run(node[2], item, root) for item in _value(node[1], dot, root) or []]
        else:
            out.append(next((_run(body, dot, root) for cond, body in node[1] if _value(cond, dot, root)), ""))
    return "".join(out)


def render_go(template: str, data: dict) -> str:
    nodes, _, _ = _parse(_tokens(template))
    return _run(nodes, data, data)


def ollama_prompt(modelfile: dict, messages: list[dict]) -> str:
    """The prompt Ollama's /api/chat builds: SYSTEM goes first unless the request has its own system message."""
    system = (modelfile.get("SYSTEM") or [""])[-1]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    msgs = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    return render_go(modelfile["TEMPLATE"][-1], {"Messages": msgs, "System": system})


def test_the_go_renderer_follows_go_semantics():
    """The checker itself: trim markers, else-if chains, range over messages, an Ollama-style legacy template."""
    data = {"Messages": [{"Role": "user", "Content": "hi"}], "System": "", "Prompt": "p"}
    assert render_go("a  {{- .Prompt -}}  b", data) == "apb"
    assert render_go('{{ range .Messages }}{{ if eq .Role "system" }}S{{ else if eq .Role "user" }}U:{{ .Content }}'
                      "{{ else }}X{{ end }}{{ end }}", data) == "U:hi"
    assert render_go("{{ if .System }}sys{{ end }}[{{ .Prompt }}]", data) == "[p]"
    assert render_go('{{ range .Messages }}{{ if eq .Role "assistant" }}A{{ end }}{{ $.Prompt }}{{ end }}', data) == "p"


# --- the Modelfile against the tokenizer ------------------------------------------------------------

def _tokenizers():
    smol = load_tokenizer("smollm2-135m-instruct")
    plain = load_tokenizer("smollm2-135m-instruct")
    plain.chat_template = FALLBACK_CHAT_TEMPLATE  # what a base model without a template is tuned and served with
    return {"chatml": smol, "fallback": plain}


@pytest.mark.parametrize("which", ["chatml", "fallback"])
def test_modelfile_template_renders_the_tokenizers_prompt(which):
    tok = _tokenizers()[which]
    mf = parse_modelfile(ollama.modelfile(tok))
    assert mf["FROM"] == ["./model.gguf"] and len(mf["TEMPLATE"]) == 1
    for messages in CONVERSATIONS:
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ollama_prompt(mf, messages) == want, messages
    stops = [v for name, v in mf["PARAMETER"] if name == "stop"]
    assert stops[0] == tok.eos_token == "<|im_end|>"
    if which == "chatml":
        assert mf["SYSTEM"] == ["You are a helpful AI assistant named SmolLM, trained by Hugging Face"]
        assert stops == ["<|im_end|>", "<|im_start|>"] and "{{ .Role }}" in mf["TEMPLATE"][0]
    else:
        assert "SYSTEM" not in mf and stops == ["<|im_end|>", "### Instruction:"]


def test_a_template_that_folds_the_system_prompt_into_the_user_turn_is_refused():
    tok = _tokenizers()["chatml"]
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
                         "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}"
                         "{% endif %}{% endfor %}")  # drops the system prompt: no block of its own
    with pytest.raises(TuneLabError, match="cannot be written as an Ollama TEMPLATE"):
        ollama.modelfile(tok)


@pytest.fixture
def run_id(workspace, tiny_model):
    """A 2-step LoRA run of the tiny llama (SmolLM2's tokenizer and chat template)."""
    tiny_builder.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2,
             "cutoff_len": 128})
    rid = runs.create(cfg)
    assert runs.main(runs.run_dir(rid)) == 0, runs.log_tail(rid)
    return rid


@pytest.mark.slow
def test_ollama_export_writes_a_folder_ollama_can_create_from(workspace, run_id):
    import gguf

    assert cli(["export", run_id, "for-ollama", "--ollama", "--gguf-type", "q8_0"]) == 0
    folder = workspace / "exports" / "for-ollama"
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "model.gguf"]  # no temporary files left
    mf = parse_modelfile((folder / "Modelfile").read_text(encoding="utf-8"))
    model = folder / mf["FROM"][0]
    reader = gguf.GGUFReader(str(model))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    tok = load_tokenizer(run_id)
    for messages in CONVERSATIONS:
        assert ollama_prompt(mf, messages) == tok.apply_chat_template(messages, tokenize=False,
                                                                      add_generation_prompt=True)
    # the GGUF carries the same template for llama.cpp itself
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == tok.chat_template


def test_ollama_export_refuses_a_gguf_file_name_in_one_line(workspace, run_id):
    proc = tunelab(workspace, "export", run_id, "x.gguf", "--ollama")
    assert "--ollama writes a folder" in one_line_error(proc)
    assert not list(workspace.glob("exports/*"))
