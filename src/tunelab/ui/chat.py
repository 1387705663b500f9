"""Playground helpers: the chat log in session state, model choices, rendering, and saving an exchange.

The chat log is a list of exchanges {"user": str, "replies": {slot: {"model", "text", stats...}}};
slot "A" and "B" are the two side-by-side models, each with its own thread of answers. Both answers of
an exchange are generated at once, each in a worker thread (`Answer`) that writes its finished reply
into the exchange itself: the script thread only reads the growing text (Streamlit elements may be
updated from the script thread only), so a rerun in the middle of an answer never loses it. A rating
(thumbs, a better answer, a preference between A and B) is saved through data/feedback.py and
remembered in the exchange ("rated" in a reply, "preferred" in the exchange) so it is saved once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields

import streamlit as st

from tunelab import jobs
from tunelab.data import feedback, store
from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation, GenerationSettings
from tunelab.models.registry import list_models, resolve
from tunelab.ui.i18n import t, t_error

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


@st.fragment(run_every=5)
def watch_choices(shown: list[str]) -> None:
    """Redraw the page when the models on offer change on disk (a run finished in the background),
    so the pickers never lag behind; never in the middle of an answer."""
    if not busy() and model_choices() != shown:
        st.rerun()


def default_pair(choices: list[str]) -> tuple[str, str] | None:
    """What the Playground opens on: the best finished run (play_state.best_run) next to its base model
    (the demo a stakeholder wants to see), or None when nothing has been trained yet."""
    from tunelab.train import runs
    from tunelab.ui.play_state import best_run

    done = [j["id"] for j in jobs.list_jobs("runs") if j.get("status") == "completed" and j["id"] in choices]
    if not done:
        return None
    best = best_run(done)
    try:
        base = runs.lineage(best)["base"]
    except (TuneLabError, OSError):  # a run folder without its config: show the run alone
        base = None
    return best, base if base in choices else NO_MODEL


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
    if reply.get("finish_reason") == "stopped":
        return t("stopped after {latency} s", latency=f"{reply['latency_s']:.2f}")
    cut = t(" · cut at the token limit") if reply.get("finish_reason") == "length" else ""
    first = (t(" · first words after {s} s", s=f"{reply['first_token_s']:.2f}")
             if reply.get("first_token_s") is not None else "")
    return t("{speed} tokens/s · {latency} s · {tokens} tokens", speed=f"{reply['tokens_per_s']:.1f}",
             latency=f"{reply['latency_s']:.2f}", tokens=reply["completion_tokens"]) + first + cut


class Answer:
    """One answer generated in a worker thread, its reply written into the exchange when it ends.

    The worker never touches Streamlit: it appends to `text`, and on its end stores the reply in
    `exchange["replies"][slot]` (or the error in `exchange["errors"][slot]`), the session's own chat
    log. A script run that is cut short (a rerun, a click) therefore loses nothing; the next run
    finds the answer still growing here, or already in the log.
    """

    def __init__(self, exchange: dict, slot: str, model: str, backend, messages: list[dict],
                 settings: GenerationSettings):
        self.exchange, self.slot, self.model = exchange, slot, model
        self.text = ""
        self.error: str | None = None
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self.first_token_at: float | None = None
        self.cancel = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(backend, messages, settings),
                                        name=f"play-{slot}", daemon=True)
        self._thread.start()

    def _run(self, backend, messages: list[dict], settings: GenerationSettings) -> None:
        try:
            stream = backend.stream_chat(messages, settings)
            for piece in stream:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - self.started
                    self.first_token_at = time.time()
                self.text += piece
                if self.cancel.is_set():
                    stream.close()  # in this thread: the generator stops decoding at its next token
                    break
            if stream.generation is None:  # stopped by the user: keep what was written so far
                entry = {"model": self.model, "text": self.text, "tokens_per_s": 0.0, "completion_tokens": None,
                         "latency_s": round(self.elapsed(), 3), "finish_reason": "stopped"}
            else:
                entry = reply_entry(self.model, stream.generation)
            entry["first_token_s"] = round(self.first_token_s, 3) if self.first_token_s is not None else None
            # When it ran (epoch seconds), so two answers of one exchange show they were generated together.
            entry["first_token_at"], entry["finished_at"] = self.first_token_at, time.time()
            self.exchange["replies"][self.slot] = entry
        except Exception as exc:  # noqa: BLE001 - shown under the answer, one line
            self.error = str(exc) if isinstance(exc, TuneLabError) else jobs.error_line(exc)
            self.exchange.setdefault("errors", {})[self.slot] = self.error
        finally:
            self.done.set()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def pending() -> dict[str, Answer]:
    """The answers of the last exchange still being generated (or finished since the last run), by slot."""
    return st.session_state.setdefault("play.pending", {})


def busy() -> bool:
    """Whether an answer is still being generated: the message box stays locked until both are in."""
    return any(not a.done.is_set() for a in pending().values())


def ask(log: list[dict], prompt: str, backends: dict, models: dict[str, str], system: str,
        settings: GenerationSettings) -> dict[str, Answer]:
    """Add the user's message to the log and start every model's answer at once, each in its own thread."""
    log.append({"user": prompt, "replies": {}})
    answers = {slot: Answer(log[-1], slot, models[slot], backends[slot], conversation(log, slot, system), settings)
               for slot in models}
    st.session_state["play.pending"] = answers
    return answers


def stop_all() -> None:
    """Stop every answer being generated; each keeps the text written so far."""
    for a in pending().values():
        a.cancel.set()


def cancel_all() -> None:
    """Stop every answer being generated and forget them (the conversation is cleared)."""
    stop_all()
    pending().clear()


def live_caption(a: Answer) -> str:
    if not a.text:
        return t("Waiting for the first words ... {s} s", s=f"{a.elapsed():.0f}")
    return t("Generating ... {s} s", s=f"{a.elapsed():.0f}")


def follow(live: dict[str, tuple]) -> None:
    """Redraw every growing answer from the script thread until all are done, then rerun.

    Args:
        live: slot -> (Answer, text placeholder, caption placeholder).
    """
    while live:
        for a, text, caption in live.values():
            text.text(a.text + " ▌")  # verbatim: a model's `*`, `#` or `$` is not Markdown
            caption.caption(":material/hourglass_top: " + live_caption(a))
        if all(a.done.is_set() for a, _, _ in live.values()):
            break
        time.sleep(0.2)
    if live:
        pending().clear()
        st.rerun()  # draw the finished thread: stats, rating buttons, the message box unlocked


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


@dataclass
class Rater:
    """Where ratings go and the lineage each one carries: the target dataset, system prompt, engine."""

    dataset: str
    system: str
    engine: str

    def lineage(self, *models: str) -> dict:
        return {"models": list(models), "system": self.system.strip(), "engine": self.engine}


NEW_DATASET = "(new dataset)"


def feedback_target() -> str:
    """The dataset ratings are saved into: an existing one, or a new name (default `feedback`)."""
    names = [d["name"] for d in store.list_datasets()]
    options = [NEW_DATASET] + names
    default = options.index(feedback.DEFAULT_DATASET) if feedback.DEFAULT_DATASET in names else 0
    labels = {NEW_DATASET: t(NEW_DATASET)} | {n: n for n in names}
    c1, c2 = st.columns(2)
    choice = c1.selectbox(t("Save ratings to"), options, index=default, key="play.feedback_dataset",
                          format_func=labels.get,
                          help=t("Thumbs up/down, a better answer you write, and a preference between two answers "
                                 "each become a training record in this dataset (a new version each): preference "
                                 "pairs for dpo/orpo, good/bad answers for kto."))
    if choice != NEW_DATASET:
        return choice
    return c2.text_input(t("New dataset name"), value=feedback.DEFAULT_DATASET, key="play.feedback_new").strip()


def _saved(entry: dict, dataset: str) -> str:
    return t("saved to **{dataset}**, version {version}", dataset=dataset, version=entry["version"])


def rate(rater: Rater, log: list[dict], i: int, slot: str, desirable: bool) -> dict:
    """Thumbs up/down on answer `slot` of exchange i: a KTO record (the answer, desirable or not)."""
    reply = log[i]["replies"][slot]
    entry = feedback.save_feedback(rater.dataset, conversation(log, slot, rater.system, i), kind="kto",
                                   answer=reply["text"], desirable=desirable, lineage=rater.lineage(reply["model"]),
                                   source="thumbs")
    reply["rated"] = {"up" if desirable else "down": entry["version"], "dataset": rater.dataset}
    return entry


def save_better(rater: Rater, log: list[dict], i: int, slot: str, text: str) -> dict:
    """A written answer that beats answer `slot` of exchange i: a pair, chosen = text, rejected = the model's."""
    reply = log[i]["replies"][slot]
    entry = feedback.save_feedback(rater.dataset, conversation(log, slot, rater.system, i), kind="pair",
                                   chosen=text, rejected=reply["text"], lineage=rater.lineage(reply["model"]),
                                   source="better")
    reply["better"] = {"version": entry["version"], "dataset": rater.dataset}
    return entry


def prefer(rater: Rater, log: list[dict], i: int, winner: str) -> dict:
    """One side of a side-by-side exchange preferred: a pair, chosen = its answer, rejected = the other's.

    The prompt is the winner's conversation (each side has its own earlier answers; for the first
    exchange both are the same).
    """
    ex = log[i]
    loser = next(s for s in ex["replies"] if s != winner)
    win, lose = ex["replies"][winner], ex["replies"][loser]
    entry = feedback.save_feedback(rater.dataset, conversation(log, winner, rater.system, i), kind="pair",
                                   chosen=win["text"], rejected=lose["text"],
                                   lineage=rater.lineage(win["model"], lose["model"]), source="prefer")
    ex["preferred"] = {"slot": winner, "version": entry["version"], "dataset": rater.dataset}
    return entry


def _act(action) -> None:
    """Run a save; a user error (an empty dataset name, an empty answer) shows as one sentence."""
    from tunelab.ui import layout

    try:
        action()
    except TuneLabError as exc:
        layout.show_error(exc)
    else:
        st.rerun()  # redraw the thread with the rating in place of its buttons


def answer_feedback(rater: Rater | None, log: list[dict], i: int, slot: str) -> None:
    """Thumbs up/down and "write a better answer" under answer `slot` of exchange i (once each)."""
    reply = log[i]["replies"][slot]
    if rater is None or not reply["text"].strip():
        return
    rated = reply.get("rated")
    if rated:
        icon = ":material/thumb_up:" if "up" in rated else ":material/thumb_down:"
        st.caption(f"{icon} " + _saved({"version": rated.get("up", rated.get("down"))}, rated["dataset"]))
    else:
        row = st.container(horizontal=True)
        if row.button("", key=f"play.up.{slot}.{i}", icon=":material/thumb_up:", help=t("A good answer")):
            _act(lambda: rate(rater, log, i, slot, True))
        if row.button("", key=f"play.down.{slot}.{i}", icon=":material/thumb_down:", help=t("A bad answer")):
            _act(lambda: rate(rater, log, i, slot, False))
    better = reply.get("better")
    if better:
        st.caption(":material/edit_note: " + t("Better answer") + " " + _saved(better, better["dataset"]))
        return
    # Opened by a thumbs down: the natural next step is to say what the answer should have been.
    with st.expander(t("Write the better answer"), expanded=bool(rated and "down" in rated)):
        text = st.text_area(t("Better answer"), key=f"play.better.{slot}.{i}", height=100,
                            help=t("Saved as a preference pair: your answer chosen, the model's rejected."))
        if st.button(t("Save the pair"), key=f"play.better_save.{slot}.{i}", icon=":material/save:"):
            _act(lambda: save_better(rater, log, i, slot, text))


def preference_row(rater: Rater, log: list[dict], slots: dict[str, str]) -> None:
    """"Prefer A" / "Prefer B" for the last exchange when both models answered it."""
    ex = log[-1] if log else None
    if ex is None or len(ex["replies"]) < 2 or not all(r["text"].strip() for r in ex["replies"].values()):
        return
    i = len(log) - 1
    done = ex.get("preferred")
    if done:
        st.caption(":material/thumbs_up_down: " + t("Preferred **{model}**", model=ex["replies"][done["slot"]]["model"])
                   + " — " + _saved(done, done["dataset"]))
        return
    row = st.container(horizontal=True)
    for slot in sorted(ex["replies"]):  # A then B, whichever finished first
        if row.button(t("Prefer {model}", model=slots.get(slot, slot)), key=f"play.prefer.{slot}",
                      icon=":material/thumb_up:", help=t("Saved as a preference pair: this answer chosen, "
                                                         "the other rejected.")):
            _act(lambda slot=slot: prefer(rater, log, i, slot))


def trained_versions() -> list[tuple[str, int]]:
    """(dataset, version) of every preference run not failed: the ratings they have used."""
    from tunelab.train import runs
    from tunelab.train.config import PREFERENCE_METHODS

    out = []
    for j in jobs.list_jobs("runs"):
        if j.get("status") == "failed":
            continue
        try:
            cfg = runs.config(j["id"])
        except (TuneLabError, OSError):
            continue
        if cfg.method.method in PREFERENCE_METHODS and cfg.data.data_version:
            out.append((cfg.data.data, int(cfg.data.data_version)))
    return out


def waiting_line() -> str | None:
    """The Home checklist's line on ratings not trained on yet; None when nothing was ever rated."""
    counts = feedback.waiting(trained_versions())
    if not counts:
        return None
    pairs = sum(c["pairs"] for c in counts.values())
    kto = sum(c["kto"] for c in counts.values())
    return t("**{pairs}** preference pair(s) and **{kto}** rated answer(s) from the Playground are waiting for a "
             "preference run (dpo, orpo or kto) in {datasets}.", pairs=pairs, kto=kto,
             datasets=", ".join(f"`{n}`" for n in counts))


def render_thread(log: list[dict], slot: str, rater: Rater | None = None, live: dict | None = None) -> None:
    """Every exchange for one model column, each answer with its rating controls.

    An answer still being generated gets placeholders, added to `live` for `follow` to fill.
    """
    answers = pending()
    for i, ex in enumerate(log):
        st.chat_message("user").text(ex["user"])
        reply = ex["replies"].get(slot)
        error = ex.get("errors", {}).get(slot)
        growing = answers.get(slot)
        if reply is not None:
            with st.chat_message("assistant"):
                st.text(reply["text"]) if reply["text"] else st.markdown(t("_(empty answer)_"))
                st.caption(stats_caption(reply))
                answer_feedback(rater, log, i, slot)
        elif error is not None:
            with st.chat_message("assistant"):
                st.error(t_error(error), icon=":material/error:")  # the worker's one line, in the user's language
        elif growing is not None and growing.exchange is ex and live is not None:
            with st.chat_message("assistant"):
                live[slot] = (growing, st.empty(), st.empty())


def preselect(choices: list[str]) -> None:
    """Select the models a link asks for: ?model=RUN_ID_OR_NAME[&compare=OTHER].

    A run id without `compare` opens next to its base model (the before/after demo). Applied when the
    URL differs from what this session last wrote there (a link, another page's button, a refresh),
    so a choice made in the page is never overridden by its own URL.
    """
    want, other = st.query_params.get("model"), st.query_params.get("compare")
    if not want or st.session_state.get("play.url") == (want, other):
        return
    st.session_state["play.url"] = (want, other)
    if want not in choices:
        st.session_state["play.url_missing"] = want
        return
    st.session_state.pop("play.url_missing", None)
    st.session_state["play.model_a"] = want
    if other in choices:
        st.session_state["play.model_b"] = other
    elif other is None and (pair := _run_and_base(want, choices)):
        st.session_state["play.model_b"] = pair[1]
    else:
        st.session_state["play.model_b"] = NO_MODEL


def _run_and_base(run_id: str, choices: list[str]) -> tuple[str, str] | None:
    from tunelab.train import runs

    try:
        base = runs.lineage(run_id)["base"]
    except (TuneLabError, OSError, KeyError):  # not a run, or a run folder without its config
        return None
    return (run_id, base) if base in choices else None


def remember_selection(model_a: str, model_b: str) -> None:
    """Write the selected models into the URL, so a refresh or a shared link opens the same pair."""
    missing = st.session_state.pop("play.url_missing", None)
    if missing:
        st.warning(t("**{model}** from the link is not available: it is not a model TuneLab knows, or a run "
                     "that has not finished yet.", model=missing), icon=":material/link_off:")
    url = (model_a, model_b if model_b != NO_MODEL else None)
    st.query_params["model"] = model_a
    if url[1]:
        st.query_params["compare"] = url[1]
    else:
        st.query_params.pop("compare", None)
    st.session_state["play.url"] = url


def link(model: str) -> dict:
    """The query parameters that open the Playground on `model` (for st.page_link / st.switch_page)."""
    return {"model": model}
