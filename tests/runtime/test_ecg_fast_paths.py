"""The stream's fast paths give the numbers of the general code they stand in for: windows gathered through a strided
view, R-peak refinement without clipping, the conditioner's whole-chunk checks, and the flat-line detector's running
maximum."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.mitdb import load_records
from runtime.ecg.quality import FlatLineDetector, QualityConfig, QualityFlag, SourceConditioner
from runtime.ecg.rpeaks import refine_peaks, windows_at


def test_windows_at_equals_fancy_indexing():
    values = np.random.default_rng(0).standard_normal(1000)
    starts = np.array([0, 3, 3, 500, 1000 - 37])
    np.testing.assert_array_equal(windows_at(values, starts, 37), values[starts[:, None] + np.arange(37)])
    view = values[100:400]  # a contiguous view: its own first sample is index 0
    np.testing.assert_array_equal(windows_at(view, np.array([0, 263]), 37), view[[[*range(37)], [*range(263, 300)]]])


def reference_refine(signal, coarse, rate, reach_s, context):
    """Every index clipped to the signal, the median by ``np.median``: the general path, written plainly."""
    last = signal.size - 1
    around = np.clip(coarse[:, None] + np.arange(-context[0], context[1]), 0, last)
    median = np.median(signal[around], axis=1)
    reach = round(reach_s * rate)
    local = np.clip(coarse[:, None] + np.arange(-reach, reach + 1), 0, last)
    return local[np.arange(coarse.size), np.abs(signal[local] - median[:, None]).argmax(axis=1)]


@pytest.mark.parametrize("context", [(90, 162), (91, 162), (5, 3)])
def test_refinement_without_clipping_equals_the_clipped_general_path(context):
    signal = load_records(["200"])[0].signal_mv[: 360 * 20].astype(np.float64)
    coarse = np.array([0, 3, 40, 95, 400, 1000, 3333, signal.size - 170, signal.size - 2, signal.size - 1])
    inside = np.array([200, 777, 1500, 5000])  # every window inside: the strided fast path
    for peaks in (coarse, inside, inside[::-1], coarse[:1]):
        np.testing.assert_array_equal(refine_peaks(signal, peaks, 360.0, 0.05, context),
                                      reference_refine(signal, peaks, 360.0, 0.05, context))


def marked(marks, flag):
    return sorted({index for kind, start, end in marks if kind is flag for index in range(start, end)})


def test_the_conditioners_whole_chunk_checks_do_not_depend_on_the_chunks():
    """Good chunks take two reductions (no per-sample test) and a run ending in the last sample needs no search: the
    repaired samples and every flagged sample are the same as for any other split, bad samples and plateaus too."""
    random = np.random.default_rng(5)
    signal = np.sin(np.arange(20_000) / 40.0) + random.normal(0, 0.01, 20_000)
    signal[1000:1010] = np.nan
    signal[1500] = np.inf
    signal[2000:2003] = -1e12
    signal[3000:3050] = signal[3000:3050].max() + 0.5  # a plateau at a new running maximum: clipped
    signal[7000:7100] = 0.25  # a plateau inside the running extremes: not clipped
    signal[9000:9004] = -3.0  # a short plateau at a new minimum
    signal[15_000:] = np.round(signal[15_000:], 1)  # repeated values: runs everywhere
    results = []
    for sizes in ([signal.size], [1, 2, 3, 997, 4096], [2], [3600]):
        conditioner = SourceConditioner(360.0, QualityConfig(), adc_range=(-2.5, 2.5))
        repaired, marks, position, index = [], [], 0, 0
        while position < signal.size:
            size = sizes[index % len(sizes)]
            values, found = conditioner.process(signal[position : position + size])
            repaired.append(values)
            marks += found
            position, index = position + size, index + 1
        results.append((np.concatenate(repaired), marked(marks, QualityFlag.NON_FINITE),
                        marked(marks, QualityFlag.CLIPPED)))
    for repaired, non_finite, clipped in results[1:]:
        np.testing.assert_array_equal(repaired, results[0][0])
        assert non_finite == results[0][1] and clipped == results[0][2]
    assert results[0][1] == [*range(1000, 1010), 1500, 2000, 2001, 2002]
    assert set(range(3000, 3050)) <= set(results[0][2]) and not set(range(7000, 7100)) & set(results[0][2])


def test_the_flat_line_detector_judges_each_segment_against_the_median_of_its_reference():
    random = np.random.default_rng(6)
    config = QualityConfig(flat_reference_segments=7)
    detector, reference, expected = FlatLineDetector(config), deque(maxlen=7), []
    segments = random.normal(0, 1, (400, 50)) * random.choice([1e-4, 0.5, 1, 3, 10], (400, 1))
    segments[100:110] = 0.2  # constant: flat by the absolute rule
    for top, bottom in zip(segments.max(axis=1).tolist(), segments.min(axis=1).tolist(), strict=True):
        spread, level = top - bottom, max(1.0, abs(top), abs(bottom))
        flat = spread <= config.flat_absolute * level or (
            len(reference) >= config.flat_reference_minimum and spread <= config.flat_relative * np.median(reference))
        if not flat:
            reference.append(spread)
        expected.append(flat)
    found = []
    for first in range(0, 400, 13):
        found += detector.flat_segments(segments[first : first + 13])
    assert found == expected and any(found) and not all(found)
