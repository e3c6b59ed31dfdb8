"""edgemed runtime: what ships to the device.

Dependency rule: ``runtime`` imports only numpy, onnxruntime and the standard
library. It never imports tensorflow, keras, tf2onnx, click, streamlit, or the
``pipeline``/``exporters``/``dashboard`` packages.
"""

from runtime.errors import EdgemedError, IntegrityError

__all__ = ["EdgemedError", "IntegrityError"]
