"""Runs: the queue, every run filtered by tag, status, model and dataset, 2-5 runs compared side by side, sweeps."""

import streamlit as st

from tunelab.train import compare_runs
from tunelab.ui import layout, runs_widgets, sweep_widgets
from tunelab.ui.i18n import t, t_error

layout.init_state()
st.title(t("Runs"))
st.caption(t("Compare runs: their curves, the settings that differ, their results and where they came from."))
if st.session_state.get("runs.error"):
    st.error(t_error(st.session_state.pop("runs.error")))

st.subheader(t("Queue"))
runs_widgets.queue_panel()

st.subheader(t("All runs"))
chosen = runs_widgets.filters()
rows = compare_runs.list_rows(**chosen)
if not compare_runs.list_rows():
    st.caption(t("No runs yet."))
else:
    runs_widgets.runs_table(rows)
    selected = runs_widgets.pick(rows)
    if len(selected) < 2:
        st.caption(t("Choose two to five runs to compare them."))
    else:
        runs_widgets.comparison(selected, rows)

st.subheader(t("Sweeps"))
with st.expander(t("Start a sweep"), icon=":material/tune:"):
    sweep_widgets.start_form()
chosen_sweep = sweep_widgets.picker()
if chosen_sweep:
    sweep_widgets.view(chosen_sweep)
