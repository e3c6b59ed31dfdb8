"""Anomaly detection on a REAL arterial-pressure waveform: the UCR InternalBleeding16 series (one labelled anomaly).

``scenario`` is the registered build scenario ``vitals-anomaly`` (and ``vitals-anomaly-attention``, the
self-attention model measured beside it); ``data`` reads aeon's copy of the series as files and cuts it into
model windows by time block, ``provenance`` says where it came from, ``model`` builds both Keras autoencoders,
``comparison`` measures them side by side (``benchmarks/results/vitals_attention_vs_autoencoder.md``).
"""
