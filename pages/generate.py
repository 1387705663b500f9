"""Generate: grow a dataset from seed examples — prompt versions, batches of a chosen size, review."""

import streamlit as st

from tunelab import jobs
from tunelab.synth import generate
from tunelab.ui import generate_widgets as w
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error

st.title(t("Generate"))
st.caption(t("Show a model a few seed examples, generate about 20 new ones, review every item, "
             "turn the mistakes into the next prompt version, and repeat until batches come back clean."))
w.show_flash()

try:
    with st.expander(t("1 · Seeds and prompt"), expanded=True):
        seeds = w.seeds_picker()
        version = w.template_editor()
    with st.expander(t("2 · Generate"), expanded=True):
        strategies = w.strategy_picker()
        backend = w.backend_picker()
        n = st.number_input(t("Items per strategy"), 1, 1000, 20, key="gen.n")
        if st.button(t("Generate batch (≈{n})", n=w.batch_size(n, strategies)), key="gen.run", type="primary",
                     disabled=not (seeds and strategies)):
            w.launch(generate.GenerateConfig(
                seeds=seeds, n=int(n), backend=backend, template=version["name"],
                prompt_version=version["version"], strategies=strategies,
                outputs=st.session_state["gen.outputs"]))
            st.rerun()

    st.subheader(t("3 · Review"))
    batch_id = w.batch_picker()
    if batch_id:
        status = (jobs.read_status(generate.batch_dir(batch_id)) or {}).get("status")
        if status in jobs.ACTIVE:
            w.progress(batch_id)
        elif status == "failed":
            st.error(t_error((jobs.read_status(generate.batch_dir(batch_id)) or {}).get("error") or "") or t("the batch failed"))
        else:
            items = w.review(batch_id)
            st.subheader(t("Why items were rejected"))
            w.reasons_panel(batch_id, items)
            w.accept_panel(batch_id)
    st.subheader(t("Acceptance rate per prompt version"))
    w.acceptance_chart()
except Exception as exc:  # a user error is one sentence; a bug shows its traceback
    show_error(exc)
