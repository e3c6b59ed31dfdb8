"""Data access for the dashboard: artefacts and bundles, telemetry, benchmark results.

Nothing in this package imports Streamlit, so every reader can be used and tested on its own.
"""
