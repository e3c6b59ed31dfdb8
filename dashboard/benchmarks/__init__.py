"""Benchmarks of the dashboard itself (``python -m dashboard.benchmarks.render``): they live inside ``dashboard/``
because only ``pipeline/cli`` and the dashboard may import the dashboard (``tests/layering.py``)."""
