"""Benchmark harness: ONNX variants on every execution provider, against Keras and LiteRT peers.

Entry point: ``pipeline.benchmark.harness.run_benchmark``; CLI: ``edgemed bench``.
Every model is measured in a fresh subprocess (``pipeline.benchmark.worker``) so that its
peak resident memory is its own. Results follow ``pipeline/benchmark/schema.md``.
"""
