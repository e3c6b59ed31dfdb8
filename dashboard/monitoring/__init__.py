"""Monitoring math: drift against a bundle's reference profile, fleet statistics and alert rules.

Nothing in this package imports Streamlit.
"""
