"""edgemed monitoring: the telemetry collector and (later) the Streamlit dashboard.

Dependency rule: ``dashboard`` may import ``runtime`` (record schema, features);
it never trains or exports, and never imports ``pipeline`` or ``exporters``.
"""
