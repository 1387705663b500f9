"""Compare: test 2-4 candidate base models on your own test data, weigh quality against size and speed."""

import streamlit as st

from tunelab import jobs
from tunelab.evals import evaluate
from tunelab.ui import compare_widgets as w
from tunelab.ui import leakage_widgets, vote_widgets
from tunelab.ui import stats_widgets as sw
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error

st.title(t("Compare"))
st.caption(t("Run 2–4 candidates on the same held-out examples with greedy decoding, then pick the base "
             "model to fine-tune by quality, speed and what your hardware can hold."))

try:
    with st.expander(t("1 · Candidates and test data"), expanded=True):
        models = w.model_picker()
        data, version = w.data_picker()
        c1, c2 = st.columns(2)
        limit = c1.number_input(t("Examples (limit)"), 1, 100_000, 20, key="compare.limit",
                                help=t("The first N examples of the dataset version; every model answers the same ones."))
        max_new = c2.number_input(t("Max new tokens"), 1, 4096, 128, key="compare.max_new_tokens",
                                  help=t("Longest answer per example. Longer answers cost time on a CPU."))
        w.cost_table(models)
        judge, judge_prompt = w.judge_fields()
        ready = data is not None and evaluate.MIN_MODELS <= len(models) <= evaluate.MAX_MODELS
        if st.button(t("Run comparison"), key="compare.run", type="primary", disabled=not ready,
                     icon=":material/play_arrow:"):
            rid = w.launch(models, data, version, int(limit), int(max_new), judge, judge_prompt)
            st.toast(t("Started {id}. It runs in the background: `tunelab reports show {id}`", id=rid))

    st.subheader(t("2 · Results"))
    w.show_delete_result()
    report_id = w.report_picker()
    if report_id is None:
        st.info(t("No comparisons yet: choose candidates above and run one."))
    else:
        doc = evaluate.load_report(report_id)
        st.caption(t("{data} v{version} · {n} examples · greedy, max {max_new} new tokens · "
                     "`tunelab reports show {id}`", data=doc["data"]["name"], version=doc["data"]["version"],
                     n=len(doc["examples"]), max_new=doc["generation"]["max_new_tokens"], id=report_id))
        leakage_widgets.warn(doc.get("leakage"))  # in red: the data holds rows a run in it trained on
        w.delete_panel(report_id, doc["status"])
        if doc["status"] in jobs.ACTIVE:
            w.progress(report_id)
        else:
            if doc["status"] != "completed":
                st.warning(t("This report is {status}: {error}. It shows what it finished.", status=t(doc["status"]),
                             error=t_error(doc.get("error") or "") or t("it did not finish")))
            sw.verdict_banner(doc)  # the report's one verdict, green only when significant
            params = w.report_params(doc)  # sizes: a column of the table and the scatter's marker areas
            w.metrics_table(doc, params)
            w.charts(doc, params)
            sw.pairs_and_slices(doc)
            w.before_after(doc)
            vote_widgets.judge_results(doc)
            vote_widgets.votes_panel(report_id)
            w.winner(doc)
            st.subheader(t("3 · Examples"))
            w.examples_view(doc)
            w.downloads(doc)
            sw.html_download(doc)
            w.loop_panel(doc)
except Exception as exc:  # a user error is one sentence; a bug shows its traceback
    show_error(exc)
