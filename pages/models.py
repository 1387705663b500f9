"""Models: the catalog (shipped and added), add a model from the Hub, and what each costs on this machine."""

import streamlit as st

from tunelab.train import catalog
from tunelab.ui import layout, models_widgets
from tunelab.ui.i18n import t

layout.init_state()
st.title(t("Models"))
st.caption(t("The models you can chat with, compare and fine-tune, and what each would cost on this machine."))

rows = catalog.catalog()  # read from disk every run: a model added by a finished download appears
models_widgets.catalog_table(rows)
st.subheader(t("Add a model from the Hub"))
models_widgets.search_box()
models_widgets.add_form()
models_widgets.downloads()
models_widgets.token_form()
st.subheader(t("Cost on this machine"))
models_widgets.costs([r["name"] for r in rows if r["kind"] != "openai"])
