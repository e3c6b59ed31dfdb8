"""Every peer of a scenario judged by the build's own gate (``same_gate``): LiteRT variants and Keras.

The peers' outputs are computed here, in this process, once per model (not while timing): LiteRT with one
interpreter resized to each batch, Keras with ``model(x, training=False)``. A LiteRT model also runs through
the device stream on the held-out recordings where the scenario has them (``stream_gate``); Keras does not
(it is never a shipping candidate, only a reference row).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.benchmark.head_to_head import candidate_name
from pipeline.benchmark.litert_conversion import LiteRtConversion
from pipeline.benchmark.litert_models import LiteRtModel
from pipeline.benchmark.same_gate import Judgement, RecordingVerdict, judge_samples, judgement, unjudged
from pipeline.benchmark.scenario_inputs import ScenarioInputs
from pipeline.benchmark.stream_gate import run_recording_gate
from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

KERAS = "keras"  # the judgement of both Keras rows (predict and call run the same model)
NO_DATA = "no gate: a bare model file has no labelled data"
KERAS_NOT_STREAMED = ("not run: Keras is a reference row, never a shipping candidate (only ONNX variants and LiteRT "
                      "peers go through the device stream)")


def judgement_key(engine: str, variant: str) -> str:
    """The key of a row's judgement: ``litert int8``, ``onnxruntime fp32``; both Keras rows share ``keras``."""
    return KERAS if engine == KERAS else candidate_name(engine, variant)


def _litert_outputs(path: Path, setting) -> tuple:
    model = LiteRtModel(path, threads=1)
    decision = model.predict_in_batches(setting.decision_inputs) if setting.decision_inputs is not None else None
    return model.predict_in_batches(setting.test_inputs), decision


def _keras_outputs(keras_path: Path, setting) -> tuple:
    from pipeline.benchmark.peers import keras_outputs
    from pipeline.training.keras_files import load_keras_model

    model = load_keras_model(keras_path)
    decision = keras_outputs(model, setting.decision_inputs) if setting.decision_inputs is not None else None
    return keras_outputs(model, setting.test_inputs), decision


def judge_peers(scenario: ScenarioInputs, conversion: LiteRtConversion, keras: bool = True) -> dict[str, Judgement]:
    """Judgements of every LiteRT model ``conversion`` made and (``keras``) of the Keras model, by name
    (``judgement_key``)."""
    names = [candidate_name("litert", str(variant)) for variant in conversion.models]
    if keras and scenario.keras_model is not None:
        names.append(KERAS)
    setting = scenario.gate
    if setting is None:
        return {name: unjudged(NO_DATA) for name in names}
    outputs, failed = {}, {}
    for variant, path in conversion.models.items():
        name = candidate_name("litert", str(variant))
        try:
            outputs[name] = _litert_outputs(path, setting)
        except (ValueError, RuntimeError, EdgemedError) as error:  # the interpreter refused the model or inputs
            failed[name] = unjudged(f"no gate: {type(error).__name__}: {error}")
    if KERAS in names:
        outputs[KERAS] = _keras_outputs(scenario.keras_model, setting)
    judged: dict[str, Judgement] = dict(failed)
    for name, result in judge_samples(setting, outputs).items():
        recordings = None
        if setting.recordings is not None:
            if name == KERAS:
                recordings = RecordingVerdict(None, KERAS_NOT_STREAMED, None, setting.recordings.measured_on)
            else:
                variant = name.removeprefix("litert ")
                path = next(path for made, path in conversion.models.items() if str(made) == variant)
                recordings = run_recording_gate(setting.recordings, name, path, result.metrics)
        judged[name] = judgement(result.metrics, result.verdict, setting.measured_on, recordings)
        logger.info("gate of %s: %s", name, judged[name].reason)
    return judged
