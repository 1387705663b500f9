"""Stats: how long the records are in tokens, what a cutoff would truncate, duplicates, empties."""

import streamlit as st

from tunelab.data import store
from tunelab.models.registry import DEFAULT_MODEL, list_models
from tunelab.ui import charts
from tunelab.ui import data_widgets as w
from tunelab.ui import layout
from tunelab.ui.i18n import t

layout.init_state()
st.title(t("Stats"))
st.caption(t("Token lengths are counted with the chosen model's tokenizer on the chat-formatted record "
             "(system, earlier turns, prompt and answer): training cuts anything beyond its maximum "
             "length, so the dashed lines show what each cutoff would lose."))

datasets = store.list_datasets()
if not datasets:
    st.info(t("No dataset yet: import one on the Data page first."))
    st.page_link("pages/data.py", label=t("Go to Data"), icon=":material/table:")
    st.stop()

names = [d["name"] for d in datasets]
ss = st.session_state
layout.from_url("stats.dataset", "dataset")
layout.from_url("stats.version", "v", int)
if ss["stats.dataset"] not in names:
    ss["stats.dataset"] = ss["data.dataset"] if ss["data.dataset"] in names else names[0]
manifest = store.manifest(ss["stats.dataset"])
versions = {v["version"]: v for v in manifest["versions"]}
if ss["stats.version"] not in versions:
    ss["stats.version"] = manifest["head"]
models = [m["name"] for m in list_models() if m["kind"] != "openai"]  # endpoints have no local tokenizer
if ss["stats.model"] not in models:
    ss["stats.model"] = DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]



def _new_dataset() -> None:
    st.session_state["stats.version"] = None  # show the new dataset's head


c1, c2, c3 = st.columns(3)
name = c1.selectbox(t("Dataset"), names, key="stats.dataset", on_change=_new_dataset)
version = c2.selectbox(t("Version"), sorted(versions, reverse=True), key="stats.version",
                       format_func={v: w.version_label(e, manifest["head"]) for v, e in versions.items()}.get)
model = c3.selectbox(t("Tokenizer of"), models, key="stats.model")
layout.to_url(dataset=name, v=version)

try:
    s = w.dataset_stats(name, version, model)
except Exception as exc:
    layout.show_error(exc)
    st.stop()

m = st.columns(4)
m[0].metric(t("Records"), s["records"])
m[1].metric(t("Exact duplicates"), s["duplicates"], help=t("same text after normalising whitespace and case"))
m[2].metric(t("Empty outputs"), s["empty_output"])
m[3].metric(t("With earlier turns"), s["with_history"])
if s["duplicates"] or s["empty_output"]:
    st.warning(t("Duplicates and empty outputs teach the model little or the wrong thing: the Data "
                 "page's Clean tab removes them (with a preview first)."), icon=":material/cleaning_services:")

st.subheader(t("Token length per record"))
st.plotly_chart(charts.token_histogram(s), key="stats.tokens")
cols = iter(st.columns(3 + len(s["truncated"])))
for label in ("p50", "p95", "max"):
    next(cols).metric(t("Tokens {label}", label=label), s["tokens"][label])
for cutoff, frac in s["truncated"].items():
    next(cols).metric(t("Truncated at {cutoff}", cutoff=cutoff), f"{frac:.1%}")
st.caption(t("Tokenizer: {name}", name=s["tokenizer"]))

st.subheader(t("Length of each field"))
lengths = w.field_lengths(name, version)
st.plotly_chart(charts.field_boxes(lengths), key="stats.fields")
st.dataframe(lengths, hide_index=True, width="stretch", column_config={"field": t("Field"), "empty": t("Empty")})
