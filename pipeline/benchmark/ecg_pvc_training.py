"""One fold of the PVC LORO measurement: an inner cross-validated ensemble and its threshold.

The held-out test record is never seen. The 9 training records are split into ``inner_folds``
groups (seeded; the V-rich records spread over the groups first, so each group holds V beats). For
each group a model is fitted on the other groups and early-stopped on that group's loss; its
predictions on the group are out-of-fold. The decision threshold is chosen on the pooled
out-of-fold predictions of all 9 training records — by default the threshold with the highest V F1
there (Se and +P weigh alike, as the targets do); ``target-sensitivity`` instead takes the largest
threshold with out-of-fold V Se ≥ ``target_sensitivity``, which collapses towards 0 when a few
training V beats are unlearnable — and the test record is scored with the mean probability of the
inner models (the ensemble). Inner models use seed + group, so a fold is
reproducible; classes are balanced by inverse-frequency weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from pipeline.benchmark.ecg_pvc_scoring import threshold_for_f1, threshold_for_sensitivity
from pipeline.scenarios.ecg_pvc.beats import FALSE_DETECTION, RecordBeats, V
from pipeline.scenarios.ecg_pvc.model import PvcModelConfig, build_pvc_model
from runtime.ecg.rr_features import RR_FEATURE_NAMES

logger = logging.getLogger(__name__)


class ThresholdRule(StrEnum):
    MAX_F1 = "max-f1"  # the out-of-fold threshold with the highest V F1
    TARGET_SENSITIVITY = "target-sensitivity"  # the largest out-of-fold threshold with V Se ≥ the target


@dataclass(frozen=True)
class FoldConfig:
    inner_folds: int = 3  # inner models per fold (each trained on the other inner groups)
    epochs: int = 15  # upper bound; early stopping usually ends sooner
    patience: int = 3  # epochs without inner-validation loss improvement before stopping
    batch_size: int = 128  # beats per step
    learning_rate: float = 2e-3  # Adam
    v_rich_minimum: int = 100  # records with at least this many V beats are spread over the inner groups first
    threshold_rule: ThresholdRule = ThresholdRule.MAX_F1  # how the out-of-fold predictions set the threshold
    target_sensitivity: float = 0.97  # for ThresholdRule.TARGET_SENSITIVITY only


@dataclass(frozen=True)
class FoldResult:
    threshold: float
    test_probabilities: np.ndarray  # ensemble mean, one per detection of the test record
    inner_groups: list[list[str]]
    epochs_run: list[int]
    train_seconds: float
    out_of_fold: dict = field(default_factory=dict)  # V beats, non-V detections and V Se at the threshold


def model_inputs(beats: list[RecordBeats], rows: list[np.ndarray], model: PvcModelConfig) -> dict[str, np.ndarray]:
    """The model's named inputs for the chosen rows of each record, concatenated."""
    inputs = {"rr": np.concatenate([item.rr[row] for item, row in zip(beats, rows)])}
    if model.use_window:
        inputs["window"] = np.concatenate([item.windows[row] for item, row in zip(beats, rows)])[:, :, None]
    if model.use_template:
        inputs["residual"] = np.concatenate([item.residuals[row] for item, row in zip(beats, rows)])[:, :, None]
    return inputs


def inner_groups(train: list[RecordBeats], config: FoldConfig, seed: int) -> list[list[str]]:
    """Seeded partition of the training records: V-rich records dealt first, then the others."""
    generator = np.random.default_rng(seed)
    rich = [item.record for item in train if int(np.sum(item.labels == V)) >= config.v_rich_minimum]
    other = [item.record for item in train if item.record not in rich]
    order = [str(name) for name in generator.permutation(rich)] + [str(name) for name in generator.permutation(other)]
    groups: list[list[str]] = [[] for _ in range(min(config.inner_folds, len(order)))]
    for index, name in enumerate(order):
        groups[index % len(groups)].append(name)
    return [sorted(group) for group in groups]


def _all_rows(item: RecordBeats) -> np.ndarray:
    return np.arange(item.labels.size)


def _training_rows(item: RecordBeats, with_false_detections: bool) -> np.ndarray:
    return _all_rows(item) if with_false_detections else np.flatnonzero(item.labels != FALSE_DETECTION)


def _epoch_logger(prefix: str):
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            logger.info("%s epoch %d: loss %.4f, validation loss %.4f (%.1f s)", prefix, epoch + 1,
                        float(logs.get("loss", np.nan)), float(logs.get("val_loss", np.nan)),
                        time.perf_counter() - self.started)

    return EpochLogger()


def fit_model(model_config: PvcModelConfig, fit_set: list[RecordBeats], validation_set: list[RecordBeats],
              with_false_detections: bool, config: FoldConfig, seed: int, prefix: str):
    """A model fitted on ``fit_set`` and early-stopped on ``validation_set``; (model, epochs run)."""
    import keras

    from pipeline.training.fit import class_weights, seed_everything

    seed_everything(seed)
    rows = [_training_rows(item, with_false_detections) for item in fit_set]
    labels = np.concatenate([item.labels[row] == V for item, row in zip(fit_set, rows)]).astype(np.int64)
    validation_rows = [_all_rows(item) for item in validation_set]
    validation_labels = np.concatenate([item.labels == V for item in validation_set]).astype(np.float32)
    logger.info("%s fit on %d beats (%d V), early stopping on %s", prefix, labels.size, int(labels.sum()),
                ",".join(item.record for item in validation_set))
    model = build_pvc_model(model_config, fit_set[0].windows.shape[1], len(RR_FEATURE_NAMES))
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy")
    history = model.fit(
        model_inputs(fit_set, rows, model_config), labels.astype(np.float32),
        validation_data=(model_inputs(validation_set, validation_rows, model_config), validation_labels),
        epochs=config.epochs, batch_size=config.batch_size, class_weight=class_weights(labels, 2), shuffle=True,
        verbose=0, callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
            _epoch_logger(prefix),
        ],
    )
    return model, len(history.history["loss"])


def _predict(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict(inputs, batch_size=1024, verbose=0))[:, 0]


def run_fold(model_config: PvcModelConfig, with_false_detections: bool, test: RecordBeats,
             train: list[RecordBeats], config: FoldConfig, seed: int, prefix: str) -> FoldResult:
    """Inner ensemble on ``train``, threshold from its out-of-fold predictions, probabilities on ``test``."""
    started = time.perf_counter()
    groups = inner_groups(train, config, seed)
    out_of_fold_probabilities, out_of_fold_labels, test_probabilities, epochs = [], [], [], []
    test_inputs = model_inputs([test], [_all_rows(test)], model_config)
    for index, group in enumerate(groups):
        held_out = [item for item in train if item.record in group]
        fit_set = [item for item in train if item.record not in group]
        model, epochs_run = fit_model(model_config, fit_set, held_out, with_false_detections, config,
                                      seed * 100 + index, f"{prefix} inner {index + 1}/{len(groups)}")
        epochs.append(epochs_run)
        out_of_fold_probabilities.append(_predict(model, model_inputs(held_out, [_all_rows(i) for i in held_out],
                                                                      model_config)))
        out_of_fold_labels.append(np.concatenate([item.labels == V for item in held_out]))
        test_probabilities.append(_predict(model, test_inputs))
    probabilities, is_v = np.concatenate(out_of_fold_probabilities), np.concatenate(out_of_fold_labels)
    if config.threshold_rule is ThresholdRule.TARGET_SENSITIVITY:
        threshold = threshold_for_sensitivity(probabilities, is_v, config.target_sensitivity)
    else:
        threshold = threshold_for_f1(probabilities, is_v)
    called = probabilities >= threshold
    summary = {
        "v_beats": int(is_v.sum()),
        "other_detections": int((~is_v).sum()),
        "v_sensitivity": float(np.mean(called[is_v])) if is_v.any() else None,
        "v_positive_predictivity": float(np.sum(called & is_v) / max(1, called.sum())),
    }
    return FoldResult(threshold, np.mean(test_probabilities, axis=0), groups, epochs,
                      round(time.perf_counter() - started, 1), summary)
