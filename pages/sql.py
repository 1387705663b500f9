"""SQL: read-only DuckDB queries over every dataset (each is a table of its name)."""

import pandas as pd
import streamlit as st

from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.ui import data_widgets as w
from tunelab.ui import layout
from tunelab.ui.i18n import t

layout.init_state()
st.title(t("SQL"))
st.caption(t("Ask questions of your data in SQL (DuckDB dialect). Each dataset is a table named after "
             "it, holding its head version. **Read-only**: only SELECT/WITH queries run; anything that "
             "writes, reads other files or changes settings is refused."))

datasets = store.list_datasets()
for broken in store.unreadable():  # named once; every other dataset stays queryable
    layout.show_error(TuneLabError(broken["error"]))
if not datasets:
    st.info(t("No dataset yet: import one on the Data page first."))
    st.page_link("pages/data.py", label=t("Go to Data"), icon=":material/table:")
    st.stop()

st.markdown(t("**Tables:** {tables} — columns `id, instruction, input, output, system, history, conversations, tools`",
              tables=", ".join(f"`{d['name']}` ({d['records']})" for d in datasets)))
st.caption(t("Examples (click to put one in the editor):"))
examples = w.sql_examples([d["name"] for d in datasets])
for col, (label, example) in zip(st.columns(len(examples)), examples.items()):
    col.button(t(label), key=f"sql.example_{label.split()[0].lower()}", on_click=w.fill_sql, args=(example,),
               width="stretch")

st.text_area(t("Query"), key="sql.query", height=140,
             placeholder=f"SELECT count(*) FROM {w.quote_ident(datasets[0]['name'])}")
st.button(t("Run"), key="sql.run", type="primary", icon=":material/play_arrow:")

text = st.session_state["sql.query"].strip()
if text:
    try:
        result = w.run_sql(text, w.heads())
    except Exception as exc:  # a refused or invalid query is one line, never a traceback
        layout.show_error(exc)
    else:
        frame = pd.DataFrame(result["rows"], columns=result["columns"])
        st.caption(t("{n} row(s)", n=len(frame)) + (t(" (first 10,000 shown)") if result["more"] else ""))
        st.dataframe(frame, hide_index=True, width="stretch", key="sql.result")
