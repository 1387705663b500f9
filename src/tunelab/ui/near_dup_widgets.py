"""The Clean step's near duplicates: each removed record beside the kept twin it repeats, with a box to keep it."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from tunelab.ui.i18n import t


def show(preview: dict, name: str, head: int, request_preview: Callable[[str, int], None]) -> None:
    """One entry per near duplicate found (data/clean.plan's near_pairs): both texts, the similarity, Keep.

    request_preview(name, head): how the Clean step previews again (ui/data_actions.py passes its own)."""
    pairs = preview.get("near_pairs") or []
    if not pairs:
        return
    with st.expander(t("Near duplicates and the records they repeat ({n})", n=len(pairs)), expanded=True):
        for p in pairs[:50]:
            st.checkbox(t("Keep `{removed}`: it is not a copy of `{kept}` (similarity {sim:.2f})",
                          removed=p["removed"], kept=p["kept"], sim=p["similarity"]),
                        value=p["keep"], key=f"data.clean_keep_near.{name}.{p['removed']}",
                        on_change=_toggle, args=(name, head, p["removed"], request_preview))
            c1, c2 = st.columns(2)
            c1.caption(t("removed: {record}", record=p["removed_text"]))
            c2.caption(t("kept: {record}", record=p["kept_text"]))
        if len(pairs) > 50:
            st.caption(t("The first {shown} of {n} records; leave others as written with a keyword below.",
                         shown=50, n=len(pairs)))


def _toggle(name: str, head: int, record_id: str, request_preview: Callable[[str, int], None]) -> None:
    """Keep a near duplicate (or drop it after all), and preview again."""
    keep = set(st.session_state["data.clean_keep_near"]) ^ {record_id}
    st.session_state["data.clean_keep_near"] = sorted(keep)
    request_preview(name, head)
