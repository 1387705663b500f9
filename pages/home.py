import streamlit as st

from tunelab.data import store

st.title("TuneLab")
st.markdown(
    "Fine-tune a language model on your own machine in five steps: **Data** → **Generate** → "
    "**Compare** → **Train** → **Use**."
)
datasets = store.list_datasets()
st.page_link("pages/data.py", label=f"Data — {len(datasets)} dataset(s) in the workspace", icon=":material/table:")
