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
        text = str(error)
        if "Lambda" in text and "safe_mode" in text:  # edgemed never loads code from a model file
            what, fix = "holds a Lambda layer (code stored in the file, which edgemed does not run)", (
                "replace the lambda with built-in Keras layers or keras.ops (e.g. Rescaling for t * 2), then save "
                "again")
        elif "Could not locate" in text or "get_config" in text:  # a class the command line cannot import
            what, fix = "uses a custom layer or model class, which the edgemed command line cannot import", (
                "rebuild the model from built-in Keras layers (a subclassed keras.Model as a functional model), then "
                "save again")
        else:
            what, fix = "could not be loaded", "re-save the model with Keras 3 (model.save('model.keras'))"
        raise ModelLoadError(
            f"{path} {what}: {text[:300]}",
            expected="an intact Keras 3 archive of built-in Keras layers",
            fix=fix,
        ) from error
