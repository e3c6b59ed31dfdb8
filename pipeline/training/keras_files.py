"""Loading ``.keras`` files with errors that say what is wrong and how to fix it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.errors import ModelLoadError


def load_keras_model(path: Path):
    """Load a Keras 3 ``.keras`` archive; ``ModelLoadError`` if missing, not a .keras, or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"model file {path} does not exist",
            expected="a Keras 3 model saved with model.save('name.keras')",
            fix="check the path",
        )
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path} is not a Keras 3 .keras archive (it is not a zip file with a .keras suffix)",
            expected="a file written by model.save('name.keras')",
            fix="re-save the model with Keras 3: model.save('model.keras')",
        )
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise ModelLoadError(
            f"{path} could not be loaded: {error}",
            expected="an intact Keras 3 archive whose custom layers, if any, are registered",
            fix="re-save the model, or register custom objects with keras.saving.register_keras_serializable",
        ) from error
