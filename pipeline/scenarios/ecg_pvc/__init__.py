"""PVC (V vs non-V) detection on REAL ECG: the vendored MIT-BIH subset, beats as the device detects them.

``scenario`` is the registered build scenario ``ecg-pvc`` (record-wise splits, the shipped design, the held-out
recordings the ``validate`` stage runs); ``mitdb`` loads the data, ``beats`` turns each record into the beat
windows, RR features, template residuals and labels the device runtime would see, ``model`` builds the Keras
model; ``pipeline.benchmark.ecg_pvc_loro`` measures designs leave-one-record-out (``make validate-ecg``).
"""
