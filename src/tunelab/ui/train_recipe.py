"""The Train page's recipe table, token preview, memory estimate and CLI command for a config."""

from __future__ import annotations

import html
import shlex

import streamlit as st

from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.train import recipe
from tunelab.train.config import TrainConfig, to_flags
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error
from tunelab.ui.train_form import LABELS


@st.cache_data(max_entries=16, show_spinner=False)  # preview() shows a spinner in the session's language
def _preview(model: str, data: str, version: int, cutoff: int) -> list[dict]:
    from tunelab.train.data import preview

    return preview(model, store.read(data, version).slice(0, 3).to_pylist(), cutoff)


def preview(cfg: TrainConfig) -> None:
    """What the model sees: tokens after the chat template, loss tokens highlighted, the cutoff marked."""
    st.subheader(t("What the model sees"))
    st.caption(t("Green tokens carry the loss (the answer the model learns to write); grey ones are context. "
                 "Anything after ✂ is cut off by the cutoff length."))
    try:
        with st.spinner(t("Applying the chat template ...")):
            items = _preview(cfg.model.model, cfg.data.data, store.resolve_version(cfg.data.data), cfg.data.cutoff_len)
    except TuneLabError as exc:
        show_error(exc)
        return
    for i, item in enumerate(items):
        spans = []
        for j, tok in enumerate(item["tokens"]):
            if item["truncated_at"] == j:
                spans.append(f'<b style="color:#e5484d">{html.escape(t("✂ cutoff"))}</b>')
            # Translucent tints: readable on the light and the dark theme alike.
            style = "background:rgba(46,160,67,.28)" if tok["loss"] else "background:rgba(128,128,128,.16)"
            if item["truncated_at"] is not None and j >= item["truncated_at"]:
                style += ";opacity:.35;text-decoration:line-through"
            spans.append(f'<span style="{style}">{html.escape(tok["text"])}</span>')
        st.markdown(t("**Record {n}** — {length} tokens", n=i + 1, length=item["length"]), help=None)
        st.html('<div style="white-space:pre-wrap;font-family:monospace;font-size:12px;line-height:1.6">'
                + "".join(spans) + "</div>")


@st.cache_data(max_entries=16, show_spinner=False)
def _tokens_per_epoch(model: str, data: str, version: int, cutoff: int) -> int:
    from tunelab.train.estimate import tokens_per_epoch

    return tokens_per_epoch(model, data, version, cutoff)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def _facts(model: str, data: str, version: int, cutoff: int, max_records: int | None) -> recipe.Facts:
    cfg = TrainConfig()
    cfg.set({"model": model, "data": data, "data_version": version, "cutoff_len": cutoff, "max_records": max_records})
    return recipe.facts(cfg)


def with_recipe(cfg: TrainConfig) -> TrainConfig:
    """A copy of the form's config with the auto recipe applied (the form's own values win)."""
    out = TrainConfig.from_dict(cfg.to_dict())
    if out.training.recipe == "auto":
        d = cfg.data
        facts = _facts(cfg.model.model, d.data, store.resolve_version(d.data, d.data_version), d.cutoff_len,
                       d.max_records)
        recipe.apply(out, recipe.form_keys(cfg), facts)
    return out


def recipe_table(cfg: TrainConfig) -> TrainConfig:
    """The auto recipe for the form's config as a table "setting: value — why"; returns the config it gives."""
    try:
        tuned = with_recipe(cfg)
    except (TuneLabError, OSError, KeyError) as exc:
        st.caption(t("No recipe: {reason}", reason=t_error(str(exc))))
        return cfg
    if tuned.recipe:
        st.markdown(t("**Recipe** (auto: sized to this dataset; a value you change in the form wins)"))
        show_recipe(tuned.recipe, key="train.recipe_table")
    return tuned


def show_recipe(chosen: dict, key: str) -> None:
    """A recipe's values and reasons as a table."""
    st.dataframe([{"setting": t(LABELS.get(k, k.replace("_", " "))), "value": str(v["value"]), "why": v["why"],
                   "by": t("you") if v.get("source") == "you" else t("recipe")} for k, v in chosen.items()],
                 hide_index=True, key=key,
                 column_config={"setting": t("Setting"), "value": t("Value"), "why": t("Why"), "by": t("Set by")})


def estimate(cfg: TrainConfig) -> None:
    """Trainable parameters, memory and time, before launching."""
    from tunelab.train.estimate import estimate as est

    try:
        tokens = None if cfg.training.max_steps else _tokens_per_epoch(
            cfg.model.model, cfg.data.data, store.resolve_version(cfg.data.data), cfg.data.cutoff_len)
        e = est(cfg, tokens)
    except (TuneLabError, OSError, KeyError) as exc:
        st.caption(t("No estimate: {reason}", reason=t_error(str(exc))))
        return
    c = st.columns(4)
    c[0].metric(t("trainable parameters"), f"{e['trainable']:,}",
                t("{share}% of {total}", share=f"{100 * e['trainable'] / e['total']:.2f}", total=f"{e['total']:,}"),
                delta_color="off")
    c[1].metric(t("memory (approx.)"), f"{e['memory_gb']} GB")
    c[2].metric(t("per step (approx.)"), f"{e['seconds_per_step']} s")
    c[3].metric(t("whole run (approx.)"), t("{n} min", n=round(e["seconds"] / 60, 1)) if e["seconds"] else "—")


def command(cfg: TrainConfig) -> str:
    """The exact CLI command for this config, shown for copying."""
    cmd = "tunelab train " + shlex.join(to_flags(cfg))
    st.code(cmd, language="bash")
    return cmd
