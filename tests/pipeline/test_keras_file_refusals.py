"""A model file edgemed cannot load says which kind of problem it has and a fix the user can act on.

Found by an audit: a Lambda layer and a custom (registered or not) layer class were refused with "register custom
objects with keras.saving.register_keras_serializable", which a command-line user cannot do (the class was
registered; the CLI cannot import the module) and which does not apply to a Lambda at all.
"""

from __future__ import annotations

import pytest

from pipeline.errors import ModelLoadError
from pipeline.training.keras_files import load_keras_model


def test_a_lambda_layer_is_refused_with_the_built_in_replacement_as_the_fix(tmp_path):
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(lambda t: t * 2.0)(
        inputs)))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="holds a Lambda layer") as refused:
        load_keras_model(tmp_path / "lambda.keras")
    assert "built-in Keras layers" in refused.value.fix and "register" not in refused.value.fix


def test_a_custom_layer_class_is_refused_with_a_fix_a_command_line_user_can_follow(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="audit")
    class Doubling(keras.layers.Layer):
        def call(self, values):
            return values * 2.0

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1)(Doubling()(inputs))).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("audit>Doubling")  # as in a fresh process: the class is not imported
    with pytest.raises(ModelLoadError, match="custom layer or model class") as refused:
        load_keras_model(tmp_path / "custom.keras")
    assert "built-in Keras layers" in refused.value.fix
