"""One block of a recording as a split's windows: its real windows and, for the synthetic splits, copies of its
clean time with SYNTHETIC artefacts (``artefacts``) — with the counts the provenance reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.scenarios.ppg_quality import data
from pipeline.scenarios.ppg_quality.artefacts import ArtefactConfig, VariationConfig, inject_artefacts, vary_clean
from pipeline.scenarios.ppg_quality.catalogue import SegmentKind
from runtime.contract import InputSpec


@dataclass(frozen=True)
class WindowOptions:
    minimum_artefact_overlap_s: float  # an artefact window holds at least this much of one episode
    block_s: float  # the bootstrap's group: the windows of one recording starting in one block this long
    synthetic_copies: int  # copies of the block's clean time with synthetic artefacts (0: real windows only)
    artefacts: ArtefactConfig
    variation: VariationConfig


@dataclass(frozen=True)
class AssembledBlock:
    inputs: np.ndarray  # float32 (n, samples, 1): the used windows, real first
    labels: np.ndarray  # int64 (n,): 1 motion artefact, 0 acceptable
    counts: dict  # per source of windows: artefact / acceptable / excluded / flagged
    groups: np.ndarray  # text (n,): recording (or its synthetic copy) and block_s block each window starts in


def _tally(windows: data.BlockWindows, tally: Counter) -> None:
    tally["artefact"] += int(np.sum(windows.labels == data.ARTEFACT))
    tally["acceptable"] += int(np.sum(windows.labels == data.CLEAN))
    tally["excluded_uncertain"] += int(np.sum(windows.labels == data.EXCLUDED))
    for flag, count in windows.flagged.items():
        tally[f"flagged_{flag}"] += count


def _synthetic_windows(recording: data.PpgRecording, start: float, end: float, spec: InputSpec,
                       options: WindowOptions, rng: np.random.Generator):
    """Windows of ``synthetic_copies`` varied copies of each clean stretch (≥ a window) with injected artefacts."""
    rate, window_s = recording.model_rate_hz, spec.window_samples / recording.model_rate_hz
    stretches = [(first, last) for first, last in data.clean_stretches(recording.source, start, end,
                                                                       recording.duration_s)
                 if last - first >= window_s]
    for _ in range(options.synthetic_copies):
        for first, last in stretches:
            clean = vary_clean(recording.signal[round(first * rate): round(last * rate)], rate, options.variation, rng)
            signal, injected = inject_artefacts(clean, rate, options.artefacts, rng)
            duration = signal.size / rate
            segments = data.fill_segments(injected, duration, SegmentKind.CLEAN)
            yield data.block_windows(signal, rate, 0.0, duration, spec, segments, options.minimum_artefact_overlap_s)


def assemble_block(recording: data.PpgRecording, block: data.Block, spec: InputSpec, options: WindowOptions,
                   rng: np.random.Generator) -> AssembledBlock:
    """The used windows of ``block`` (excluded and flagged ones counted, not kept) and their counts."""
    start, end = block.bounds(recording.duration_s)
    real = data.block_windows(recording.signal, recording.model_rate_hz, start, end, spec,
                              data.covering_segments(recording.source, recording.duration_s),
                              options.minimum_artefact_overlap_s)
    parts, real_tally, synthetic_tally = [real], Counter(), Counter()
    _tally(real, real_tally)
    for windows in _synthetic_windows(recording, start, end, spec, options, rng):
        parts.append(windows)
        _tally(windows, synthetic_tally)
    kept = [part.labels != data.EXCLUDED for part in parts]
    counts = {"block": f"{block.recording} {start:g}–{end:g} s", "real": dict(real_tally)}
    if options.synthetic_copies:
        counts["synthetic_copies"] = {"copies": options.synthetic_copies, **synthetic_tally}
    sources = [block.recording] + [f"{block.recording}:synthetic-{index}" for index in range(1, len(parts))]
    groups = [np.asarray([f"{name}:{int(block_number)}" for block_number in
                          np.floor(part.starts_s[mask] / options.block_s)], dtype=str)
              for name, part, mask in zip(sources, parts, kept, strict=True)]
    return AssembledBlock(np.concatenate([part.inputs[mask] for part, mask in zip(parts, kept)]).astype(np.float32),
                          np.concatenate([part.labels[mask] for part, mask in zip(parts, kept)]).astype(np.int64),
                          counts, np.concatenate(groups))
