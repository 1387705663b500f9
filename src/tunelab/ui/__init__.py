"""The only Streamlit-aware code: session state, caches, charts and shared widgets."""
