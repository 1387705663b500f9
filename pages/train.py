import streamlit as st

st.title("Train")
st.info("This step is being built.")
