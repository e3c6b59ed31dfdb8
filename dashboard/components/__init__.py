"""Reusable dashboard widgets (Streamlit) and chart builders (Altair)."""
