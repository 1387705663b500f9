"""TuneLab dashboard: a router over pages/, with the workspace and running jobs in the sidebar."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st  # noqa: E402

from tunelab.ui import layout, vote_widgets  # noqa: E402
from tunelab.ui.i18n import t  # noqa: E402

st.set_page_config(page_title="TuneLab", page_icon=":material/tune:", layout="wide")
layout.init_state()

PAGES = {
    "": [st.Page("pages/home.py", title=t("Home"), icon=":material/home:", default=True)],
    t("1 · Data"): [
        st.Page("pages/data.py", title=t("Data"), icon=":material/table:", url_path="data"),
        st.Page("pages/sql.py", title=t("SQL"), icon=":material/database:", url_path="sql"),
        st.Page("pages/stats.py", title=t("Stats"), icon=":material/bar_chart:", url_path="stats"),
    ],
    t("2 · Generate"): [
        st.Page("pages/generate.py", title=t("Generate"), icon=":material/auto_awesome:", url_path="generate"),
    ],
    t("3 · Compare"): [
        st.Page("pages/compare.py", title=t("Compare"), icon=":material/compare:", url_path="compare"),
        # Reached by its link only: a reviewer's page shows the ballot, with no menu or sidebar (below).
        st.Page("pages/vote.py", title=t("Vote"), icon=":material/how_to_vote:", url_path=vote_widgets.URL_PATH),
    ],
    t("4 · Train"): [
        st.Page("pages/train.py", title=t("Train"), icon=":material/model_training:", url_path="train"),
        st.Page("pages/runs.py", title=t("Runs"), icon=":material/stacked_line_chart:", url_path="runs"),
    ],
    t("5 · Use"): [
        st.Page("pages/playground.py", title=t("Playground"), icon=":material/chat:", url_path="playground"),
        st.Page("pages/models.py", title=t("Models"), icon=":material/inventory_2:", url_path="models"),
    ],
}

voting = vote_widgets.is_voting()
if not voting:
    layout.sidebar()
nav = st.navigation(PAGES, position="hidden" if voting else "sidebar")
nav.run()
