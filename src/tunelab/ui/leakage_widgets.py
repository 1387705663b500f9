"""The red line a report of a run shows when its data holds rows the run trained on (evals/leakage.py)."""

from __future__ import annotations

import streamlit as st

from tunelab.evals import leakage
from tunelab.ui.i18n import t


def warn(leak: dict | None) -> None:
    """st.error naming the overlap ("x of n rows ... were trained on"); nothing when there is none."""
    if leak and leak.get("overlap"):
        st.error(t("Scored on trained rows: {detail}", detail=leakage.sentence(leak)), icon=":material/warning:")
