"""The build stages, each a function of (typed config, input artefacts, cache root) → artefact.

Order and parents: data → train (or import) → export → variants → evaluate → bundle.
"""
