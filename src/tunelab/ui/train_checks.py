"""The Train form's last step: what will actually run, and Start only when it can.

The auto recipe replaces form values the user left at their defaults (a learning rate of 0.0002 in
the form may run at 0.001); `recipe_note` says so next to the form. `launch_button` checks every value
with train/validate.py first: out of range, Start is disabled and each reason is shown.
"""

from __future__ import annotations

import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.train import runs, validate
from tunelab.train.config import TrainConfig
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def replaced(cfg: TrainConfig, tuned: TrainConfig) -> list[tuple[str, str, str]]:
    """(setting, form value, value that runs) for each form value the recipe replaces."""
    form, runs_with = cfg.flat(), tuned.flat()
    return [(k, _show(form[k]), _show(runs_with[k])) for k, v in (tuned.recipe or {}).items()
            if v.get("source") == "recipe" and k in form and form[k] != runs_with[k]]


def recipe_note(cfg: TrainConfig, tuned: TrainConfig) -> None:
    """Say which values in the form will not run as shown, and what runs instead."""
    from tunelab.ui.train_widgets import LABELS

    changes = replaced(cfg, tuned)
    if changes:
        items = "; ".join(t("{setting}: runs {value} (form shows {form})", setting=t(LABELS.get(k, k)), value=new,
                            form=old) for k, old, new in changes)
        st.info(t("The auto recipe replaces form values you left at their defaults. {items}. Set a value in the "
                  "form (or choose the manual recipe) to run it as shown.", items=items), icon=":material/tune:")


def estimate(cfg: TrainConfig, tuned: TrainConfig) -> None:
    """The memory and time estimate, only for values that can run (batch 0 or 1e8 has no meaningful one)."""
    from tunelab.ui import train_widgets

    if not validate.problems(cfg):
        train_widgets.estimate(tuned)


def launch_button(cfg: TrainConfig) -> None:
    """Start training, or a disabled Start with the reasons when a value cannot run."""
    from tunelab.ui.train_widgets import with_recipe

    found = validate.problems(cfg)
    if not found:
        try:
            tuned = with_recipe(cfg)
            found = validate.problems(tuned)
        except TuneLabError as exc:
            found = [str(exc)]
    if found:
        st.button(t("Start training"), key="train.start", type="primary", disabled=True,
                  help=t_error(found[0]))
        for reason in found:
            st.error(t_error(reason), icon=":material/block:")
        return
    if st.button(t("Start training"), key="train.start", type="primary"):
        try:
            run_id = runs.create(tuned)
            runs.start(run_id)
        except TuneLabError as exc:
            show_error(exc)
            return
        st.session_state["train.run"] = run_id
        st.query_params["run"] = run_id  # a refresh or a shared link opens this run
        st.toast(t("started {run}", run=run_id))
        st.rerun()  # the live panel at the top of the page was drawn before this click: draw it again
