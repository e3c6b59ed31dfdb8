"""edgemed monitoring dashboard: page configuration and navigation only.

Start it with ``edgemed dashboard`` (it passes ``--server.address 127.0.0.1``,
``--browser.gatherUsageStats false`` and ``--server.headless true`` to ``streamlit run`` and hands the
artefact, bundle, telemetry and benchmark paths over in ``EDGEMED_DASHBOARD_*`` variables).
Pages live in ``pages/``, widgets and charts in ``components/``, data access in ``data/`` and the
monitoring math in ``monitoring/``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.components import warm_up

st.set_page_config(page_title="edgemed monitoring", page_icon=":material/monitor_heart:", layout="wide")

navigation = st.navigation({
    "Models": [
        st.Page("pages/builds.py", title="Builds", icon=":material/construction:", default=True),
        st.Page("pages/benchmarks.py", title="Benchmarks", icon=":material/timer:"),
    ],
    "Devices": [
        st.Page("pages/fleet.py", title="Fleet", icon=":material/sensors:"),
        st.Page("pages/drift.py", title="Drift", icon=":material/query_stats:"),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications_active:"),
        st.Page("pages/device.py", title="Device", icon=":material/memory:"),
    ],
})
warm_up.start()  # edgemed dashboard: read the default windows once in the background (first visits are warm)
navigation.run()
