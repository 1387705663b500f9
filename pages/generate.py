import streamlit as st

st.title("Generate")
st.info("This step is being built.")
