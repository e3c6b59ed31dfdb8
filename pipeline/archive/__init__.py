"""Archive validation: the device runtime over every recording of an archive on Ray Data (edgemed validate-archive).

``layout`` is the archive format (recordings, beat-annotation sidecars, ``archive.json``) and its reader;
``generate`` writes archives (``edgemed make-archive``); ``worker`` is what a Ray worker does with one recording
(the device stream, and the build's own EC57 scoring where there are reference beats); ``run`` is the Ray Data
pipeline and its outputs; ``cluster`` reaching a cluster (and why a run on it failed); ``report`` the totals, failed
files and figures; ``scaling`` the workers benchmark.

Ray is imported only when a pipeline runs (``pip install 'edgemed[fleet]'``): the format and the report need numpy
and pyarrow alone. This room may import runtime, validation, clinical and errors (``tests/layering.py``).
"""

from pipeline.archive.layout import Archive, ArchiveEntry, ArchiveError, read_annotations, read_archive

# Only the format here: a Ray worker imports ``pipeline.archive.worker`` (and so this package) on start-up, and must
# not pay for the report's imports (the clinical gate pulls in scikit-learn). The pipeline is ``pipeline.archive.run``.
__all__ = ["Archive", "ArchiveEntry", "ArchiveError", "read_annotations", "read_archive"]
