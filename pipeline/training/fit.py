"""Deterministic Keras training with early stopping, progress and a saved history."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from pipeline.config import TrainConfig
from pipeline.splits import DataSplits
from runtime.contract import TaskKind

logger = logging.getLogger(__name__)

EpochProgress = Callable[[int, int, dict], None]


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow seeds plus deterministic TF kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights (scikit-learn's ``balanced`` rule)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    mapping = {int(label): float(weight) for label, weight in zip(present, weights)}
    return {label: mapping.get(label, 1.0) for label in range(num_classes)}


def _progress_callback(total_epochs: int, progress: EpochProgress | None):
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = {key: float(value) for key, value in (logs or {}).items()}
            logger.info("epoch %d/%d %s", epoch + 1, total_epochs, logs)
            if progress:
                progress(epoch + 1, total_epochs, logs)

    return EpochLogger()


def train_model(
    model, splits: DataSplits, config: TrainConfig, seed: int, progress: EpochProgress | None = None
) -> dict:
    """Fit ``model`` on the train split, stop early on validation loss, return the history.

    The loss follows the splits' task: sparse categorical cross-entropy for a softmax over the classes
    (multiclass), binary cross-entropy for one sigmoid (binary; labels 0/1), the mean squared error of the
    reconstruction for an autoencoder (anomaly: the inputs are the targets, labels unused). The best weights
    (lowest validation loss) are restored before returning.
    """
    import keras

    seed_everything(seed)
    num_classes = len(splits.class_names)
    binary, anomaly = splits.task is TaskKind.BINARY, splits.task is TaskKind.ANOMALY
    loss = "mse" if anomaly else "binary_crossentropy" if binary else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss,
                  metrics=[] if anomaly else ["accuracy"])
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
    )
    train_labels, validation_labels = splits.train.labels, splits.validation.labels
    if binary:  # a (batch, 1) sigmoid against float targets of the same shape
        train_labels, validation_labels = (np.asarray(labels, dtype=np.float32)[:, None]
                                           for labels in (train_labels, validation_labels))
    if anomaly:  # an autoencoder reconstructs its inputs
        train_labels, validation_labels = splits.train.inputs, splits.validation.inputs
    weights = None
    if config.balance_classes and not anomaly:
        weights = class_weights(np.asarray(splits.train.labels, dtype=np.int64), num_classes)
    history = model.fit(
        splits.train.inputs,
        train_labels,
        validation_data=(splits.validation.inputs, validation_labels),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        shuffle=True,
        verbose=0,
        callbacks=[stopper, _progress_callback(config.epochs, progress)],
    )
    record = {key: [float(value) for value in values] for key, values in history.history.items()}
    best_epoch = int(np.argmin(record["val_loss"])) + 1
    summary = {
        "history": record,
        "epochs_run": len(record["loss"]),
        "best_epoch": best_epoch,
        "best_val_loss": float(np.min(record["val_loss"])),
    }
    if "val_accuracy" in record:
        summary["best_val_accuracy"] = float(record["val_accuracy"][best_epoch - 1])
    return summary
