"""Playground helpers: the chat log in session state, model choices, rendering, and saving an exchange.

The chat log is a list of exchanges {"user": str, "replies": {slot: {"model", "text", stats...}}};
slot "A" and "B" are the two side-by-side models, each with its own thread of answers.
"""

from __future__ import annotations

from dataclasses import fields

import streamlit as st

from tunelab import jobs
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation, GenerationSettings
from tunelab.models.registry import list_models, resolve
from tunelab.ui.i18n import t

NO_MODEL = "(none)"
ENGINES = ("auto", "transformers", "llama.cpp")
ENGINE_HELP = ("auto: llama.cpp for a plain GGUF model when it is installed (about 7x faster on a CPU), "
               "transformers otherwise. llama.cpp runs a training run too: its merged weights are converted "
               "to GGUF once (a few seconds). Endpoints always answer over HTTP.")


def backend_spec(model: str, engine: str) -> str:
    """The backend spec (generation.get_backend) for a model under the chosen engine.

    Args:
        model: a MODEL (registry name, path, .gguf file, run id).
        engine: one of ENGINES; an OpenAI-compatible endpoint ignores it.
    """
    if engine == "auto" or resolve(model).kind == "openai":
        return model
    return ("local:" if engine == "transformers" else "llamacpp:") + model


def model_choices() -> list[str]:
    """Registry models, then completed training runs (a run id means base + adapter)."""
    runs = [j["id"] for j in jobs.list_jobs("runs") if j.get("status") == "completed"]
    return [m["name"] for m in list_models()] + runs


def default_pair(choices: list[str]) -> tuple[str, str] | None:
    """What the Playground opens on: the newest finished run next to its base model (the demo a
    stakeholder wants to see), or None when nothing has been trained yet."""
    from tunelab.train import runs

    done = [j["id"] for j in jobs.list_jobs("runs") if j.get("status") == "completed" and j["id"] in choices]
    if not done:
        return None
    try:
        base = runs.lineage(done[0])["base"]
    except (TuneLabError, OSError):  # a run folder without its config: show the run alone
        base = None
    return done[0], base if base in choices else NO_MODEL


def conversation(log: list[dict], slot: str, system: str, upto: int | None = None) -> list[dict]:
    """The messages model `slot` has seen: system, every earlier exchange with its own answers.

    Args:
        log: the chat log.
        slot: "A" or "B".
        system: the system prompt ("" for none).
        upto: stop before this exchange's answer (default: include the last user turn only).
    Returns:
        OpenAI-style messages ending with a user turn.
    """
    upto = len(log) - 1 if upto is None else upto
    msgs = [{"role": "system", "content": system}] if system.strip() else []
    for ex in log[:upto]:
        reply = ex["replies"].get(slot)
        if reply is not None:
            msgs += [{"role": "user", "content": ex["user"]}, {"role": "assistant", "content": reply["text"]}]
    return msgs + [{"role": "user", "content": log[upto]["user"]}]


def exchange_record(log: list[dict], slot: str, system: str) -> dict:
    """The last exchange with model `slot`'s answer as a training record (earlier turns become history)."""
    last = log[-1]
    history = [[ex["user"], ex["replies"][slot]["text"]] for ex in log[:-1] if slot in ex["replies"]]
    return {"instruction": last["user"], "input": "", "output": last["replies"][slot]["text"],
            "system": system.strip(), "history": history}


def save_exchange(dataset: str, log: list[dict], slot: str, system: str) -> dict:
    """Append the last exchange to a dataset as a new version; returns the version's manifest entry."""
    reply = log[-1]["replies"][slot]
    return store.append_records(dataset, [exchange_record(log, slot, system)], op="playground",
                                params={"model": reply["model"]})


def reply_entry(model: str, g: Generation) -> dict:
    return {"model": model, "text": g.text, "tokens_per_s": g.tokens_per_s, "latency_s": g.latency_s,
            "completion_tokens": g.completion_tokens, "finish_reason": g.finish_reason}


def stats_caption(reply: dict) -> str:
    cut = t(" · cut at the token limit") if reply.get("finish_reason") == "length" else ""
    return t("{speed} tokens/s · {latency} s · {tokens} tokens", speed=f"{reply['tokens_per_s']:.1f}",
             latency=f"{reply['latency_s']:.2f}", tokens=reply["completion_tokens"]) + cut


def settings_form() -> GenerationSettings:
    """Generation settings widgets; tooltips come from GenerationSettings' field help, translated here."""
    helps = {f.name: t(f.metadata["help"]) for f in fields(GenerationSettings)}
    c1, c2, c3, c4 = st.columns(4)
    max_new = c1.number_input(t("Max new tokens"), 1, 2048, 200, step=50, key="play.max_new_tokens",
                              help=helps["max_new_tokens"])
    temp = c2.slider(t("Temperature"), 0.0, 2.0, 0.0, 0.05, key="play.temperature", help=helps["temperature"])
    top_p = c3.slider(t("Top-p"), 0.05, 1.0, 1.0, 0.05, key="play.top_p", help=helps["top_p"])
    seed = c4.number_input(t("Seed"), 0, 2**31 - 1, 0, key="play.seed",
                           help=helps["seed"] + t(" Used only when temperature is above 0."))
    return GenerationSettings(max_new_tokens=int(max_new), temperature=float(temp), top_p=float(top_p),
                              seed=int(seed) if temp > 0 else None)


def render_thread(log: list[dict], slot: str) -> None:
    """Earlier exchanges for one model column."""
    for ex in log:
        st.chat_message("user").write(ex["user"])
        reply = ex["replies"].get(slot)
        if reply is not None:
            with st.chat_message("assistant"):
                st.markdown(reply["text"] or t("_(empty answer)_"))
                st.caption(stats_caption(reply))
