import streamlit as st

st.title("Data")
st.info("This step is being built.")
