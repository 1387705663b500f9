"""Train: configure a fine-tune, see what the model sees, launch it and watch it live."""

import streamlit as st

from tunelab.ui import compare_widgets as cw
from tunelab.ui import regress_widgets as rw
from tunelab.ui import train_checks
from tunelab.ui import train_widgets as tw
from tunelab.ui.i18n import t
from tunelab.ui.layout import show_error

st.title(t("Train"))
st.caption(t("Fine-tune a model on a dataset. Runs are background processes: closing or refreshing this page "
             "does not stop them."))

watching = tw.current_run()
if watching:
    tw.live(watching)
    tw.export_panel(watching)
    cw.run_report(watching)  # the before/after report, started by the run itself when it finishes
    rw.panel(watching)  # kept / lost / gained on the regression suite (lm-eval), once it was run

new, past = st.tabs([t("New run"), t("Past runs")])
with new:
    try:
        cfg = tw.config_form()
        if cfg is not None:
            tuned = tw.recipe_table(cfg)
            train_checks.recipe_note(cfg, tuned)  # form values the recipe replaces, and what runs instead
            train_checks.estimate(cfg, tuned)
            st.markdown(t("**The same run from a terminal**"))
            tw.command(cfg)
            train_checks.launch_button(cfg)  # disabled, with the reasons, when a value cannot run
            tw.preview(cfg)
    except Exception as exc:  # noqa: BLE001 - one sentence for user errors, a traceback for bugs
        show_error(exc)
with past:
    tw.past_runs()
