import streamlit as st

st.title("Playground")
st.info("This step is being built.")
