import streamlit as st

st.title("Compare")
st.info("This step is being built.")
