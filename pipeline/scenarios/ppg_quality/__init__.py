"""PPG window quality (motion artefact vs acceptable pulse) on REAL PPG: PLUX recordings and heartpy's CSVs.

``scenario`` is the registered build scenario ``ppg-quality``; ``data`` reads the recordings (files installed as
data, never imported), resamples them with the device's resampler and cuts the device's windows with their
labels; ``artefacts`` makes the SYNTHETIC motion artefacts the training split adds to real rest PPG;
``model`` builds the depthwise-separable 1-D CNN and counts its parameters, MACs and bytes.
"""
