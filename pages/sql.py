import streamlit as st

st.title("Sql")
st.info("This step is being built.")
