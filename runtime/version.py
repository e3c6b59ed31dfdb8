"""edgemed's version: the one place it is written (pyproject.toml reads it from here).

Part of every artefact id, manifest and telemetry record, so a change of version
rebuilds every cached stage.
"""

EDGEMED_VERSION = "0.1.0"
