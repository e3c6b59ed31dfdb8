"""What the manifest and report say about the InternalBleeding16 data: source, licence, rate, labels, splits."""

from __future__ import annotations

from pipeline.scenarios.vitals_anomaly.data import (
    AEON_VERSION,
    NOMINAL_RATE_HZ,
    SERIES_NAME,
    TRAIN_PREFIX_SAMPLES,
    BlockWindows,
    UcrSeries,
    VitalsDataConfig,
)

CITATIONS = (
    "Keogh E, Dutta Roy T, Naik U, Agrawal A. Multi-dataset Time-Series Anomaly Detection Competition, "
    "SIGKDD 2021 (https://compete.hexagon-ml.com/practice/competition/39/) — the reference aeon gives.",
    "Wu R, Keogh EJ. Current Time Series Anomaly Detection Benchmarks are Flawed and are Creating the Illusion "
    "of Progress. IEEE Transactions on Knowledge and Data Engineering, 2021 — the UCR anomaly archive.",
)


def describe_data(series: UcrSeries, config: VitalsDataConfig, windows: dict[str, BlockWindows]) -> dict:
    """JSON-serialisable provenance of the splits ``windows`` (one ``BlockWindows`` per block)."""
    first, last = series.anomaly_range
    test = windows["test"]
    hop_s = config.hop_samples / NOMINAL_RATE_HZ
    return {
        "synthetic": False,
        "source": (f"UCR Time Series Anomaly Archive (KDD Cup 2021), series {SERIES_NAME}, as shipped in aeon "
                   f"{AEON_VERSION} (aeon/datasets/data/KDD-TSAD_135, read as CSV files; aeon is never imported)"),
        "files_sha256": {f"{SERIES_NAME}_{part}.csv": digest for part, digest in series.sha256.items()},
        "licence": ("aeon is BSD-3-Clause and ships these files in its package; the UCR archive distributes the "
                    "series freely for research without a stated licence — cite it"),
        "citation": list(CITATIONS),
        "signal": ("a pulsatile blood-pressure waveform (arterial pressure of a pig in an internal-bleeding study, "
                   "per the archive's 'InternalBleeding' series as we understand it; not verifiable offline). "
                   "aeon's docstring says 'heart rate of a patient with internal bleeding': the waveform (a ~183-"
                   "sample pulse with a dicrotic down-stroke, 55.7–104.5) contradicts that"),
        "units": "undocumented; the values (55.7–104.5) are consistent with mmHg",
        "sample_rate_hz": NOMINAL_RATE_HZ,
        "sample_rate_note": ("NOMINAL: neither aeon nor the archive documents the rate. 250 Hz is the rate a porcine "
                             "haemorrhage study reports for its haemodynamic waveforms (Wertz A et al., Crit Care "
                             "Explor 2019;1(10):e0058; not confirmed to be this series' source) and gives 82 "
                             "beats/min for the ~183-sample pulse; every duration and per-hour figure scales with "
                             "this assumption"),
        "samples": int(series.values.size),
        "training_prefix": f"samples 0–{TRAIN_PREFIX_SAMPLES - 1}: the archive's anomaly-free part (the TRAIN file, "
                           "identical to the TEST file's first 1200 samples)",
        "labels": (f"ONE labelled anomaly, samples {first}–{last - 1} (the TEST CSV's is_anomaly column; the archive's "
                   "original file name ..._1200_4187_4199 says the same): a burst of jagged oscillation on one "
                   "pulse's down-stroke. Labels are per sample and the boundary is approximate (the waveform is "
                   "still disturbed one sample after the labelled end)"),
        "window_labels": (f"a window is anomalous when it holds ≥ {config.labels.min_anomaly_samples} labelled "
                          f"samples; windows holding fewer, or within {config.labels.boundary_margin_samples} samples "
                          "of the range, are ambiguous and left out of the test split"),
        "windows": {"samples": config.window_samples, "hop_samples": config.hop_samples, "hop_s": hop_s,
                    "normalization": config.normalization.value},
        "split_rule": ("contiguous time blocks of the one series with a gap of at least one window between blocks "
                       "(no window spans two splits); train is the archive's training prefix"),
        "blocks": config.blocks.to_dict(),
        "windows_per_split": {name: {"kept": int(block.labels.size), "anomalous": int(block.labels.sum()),
                                     "quality_flagged_left_out": block.flagged,
                                     "ambiguous_left_out": block.ambiguous}
                              for name, block in windows.items()},
        "normal_test_signal_s": _normal_seconds(test, config),
        "weak_test": ("a single labelled anomaly: its anomalous windows all come from one event about "
                      f"{(last - first) / NOMINAL_RATE_HZ * 1000:.0f} ms long (nominal), so window-level sensitivity "
                      "and its bootstrap interval (which treats overlapping windows as independent) overstate what is "
                      "known; the event-level result is one yes/no, and false alarms per hour extrapolate from "
                      "seconds of normal signal"),
    }


def _normal_seconds(test: BlockWindows, config: VitalsDataConfig) -> float:
    """Seconds of signal covered by the test split's normal windows (their union), at the nominal rate."""
    starts = test.starts[test.labels == 0]
    covered = set()
    for start in starts.tolist():
        covered.update(range(start, start + config.window_samples))
    return round(len(covered) / NOMINAL_RATE_HZ, 3)
