"""PVC (V vs non-V) detection on REAL ECG: the vendored MIT-BIH subset, beats as the device detects them.

Not registered as a build scenario yet: ``mitdb`` loads the data, ``beats`` turns each record into the
beat windows, RR features and labels the device runtime would see, ``model`` builds the two-input
Keras model; ``pipeline.benchmark.ecg_pvc_loro`` measures designs leave-one-record-out.
"""
