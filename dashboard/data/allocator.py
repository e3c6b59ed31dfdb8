"""Which allocator Arrow uses in the dashboard process.

The pages' frames carry their latency bins and counters as Arrow list columns (``monitoring.aggregate_entries``): at
1 000 devices a window is hundreds of megabytes of Arrow buffers, allocated again at every refresh. Arrow's default
allocator (mimalloc in the pyarrow wheels) hands large buffers back to the operating system as soon as they are
freed, so a visit after a large release (the fleet-wide drift evaluation in the background) pays the kernel again
for the memory it allocates. Measured on the render benchmark's 1 000-device
store (``python -m dashboard.benchmarks.render``, Alerts' visit after the fleet-wide drift evaluation): with mimalloc
1.26–1.80 s (0.46–0.66 s of it in the kernel), with the C library's malloc ("system") 0.99–1.11 s (0.16–0.25 s);
jemalloc 1.09–1.10 s. An operator's own choice in ``ARROW_DEFAULT_MEMORY_POOL`` is kept.
"""

from __future__ import annotations

import os

import pyarrow as pa

VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"  # Arrow's own setting: mimalloc, jemalloc or system


def use_system_allocator() -> str:
    """Arrow's default memory pool set to the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL`` names one;
    the backend in use afterwards."""
    if not os.environ.get(VARIABLE) and pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name
