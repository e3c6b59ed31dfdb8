"""EEG artefact detection (clean / movement / electromagnetic) on REAL PLUX EEG with a small recurrent model.

``recordings`` catalogues and reads the files (installed as data, never imported); ``data`` cuts the device's windows
and screens their coarse labels; ``model`` builds the GRU or LSTM classifier and counts its cost; ``scenario`` is the
registered build scenario ``eeg-artifact``; ``cells`` measures GRU against LSTM through the build.
"""
