import streamlit as st

st.title("Stats")
st.info("This step is being built.")
