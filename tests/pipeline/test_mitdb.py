"""The vendored MIT-BIH subset: counts as published, annotations consistent, a modified copy refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.scenarios.ecg_pvc.mitdb import (
    DATA_FILE,
    EXPECTED_SHA256,
    RECORD_IDS,
    MitBihRecord,
    load_records,
    provenance,
)
from runtime.errors import IntegrityError
from runtime.hashing import sha256_file

# record → (beats, V), the data README's table (the database's published counts)
PUBLISHED = {
    "100": (2273, 1), "105": (2572, 41), "106": (2027, 520), "108": (1763, 17), "114": (1879, 43),
    "116": (2412, 109), "119": (1987, 444), "121": (1863, 1), "123": (1518, 3), "200": (2601, 826),
}


@pytest.fixture(scope="module")
def records() -> list[MitBihRecord]:
    return load_records()


def test_vendored_file_and_readme_carry_the_same_hash():
    assert sha256_file(DATA_FILE) == EXPECTED_SHA256
    readme = (DATA_FILE.parent / "README.md").read_text()
    assert EXPECTED_SHA256 in readme
    for attribution in ("ODC-By 1.0", "Moody GB, Mark RG", "Goldberger AL", "PhysioNet", "tpcp"):
        assert attribution in readme


def test_counts_per_record_match_the_published_table(records):
    assert [record.record_id for record in records] == list(RECORD_IDS)
    for record in records:
        beats, pvcs = PUBLISHED[record.record_id]
        assert record.beat_indices.size == beats, record.record_id
        assert record.pvc_indices.size == pvcs, record.record_id
        assert int(record.is_pvc.sum()) == pvcs
        assert record.is_pvc.shape == record.beat_indices.shape and record.is_pvc.dtype == bool


def test_shapes_units_and_leads(records):
    for record in records:
        assert record.signal_mv.dtype == np.float32 and record.signal_mv.shape == (650_000,)
        assert record.sample_rate_hz == 360.0
        assert record.duration_s == pytest.approx(30 * 60 + 5.56, abs=0.01)
        assert record.lead == ("V5" if record.record_id == "114" else "MLII")
        assert 0.2 < float(np.ptp(np.percentile(record.signal_mv, [1, 99]))) < 5.0  # millivolts, not ADC counts


def test_millivolt_conversion_is_the_database_gain(records):
    with np.load(DATA_FILE, allow_pickle=False) as archive:
        adc = archive["ecg_100"]
    record = records[0]
    np.testing.assert_array_equal(record.signal_mv, ((adc.astype(np.float32) - 1024) / 200).astype(np.float32))
    assert record.signal_mv[np.argmax(adc)] == pytest.approx((int(adc.max()) - 1024) / 200)


def test_pvcs_are_annotated_beats_and_indices_sorted_in_range(records):
    for record in records:
        assert np.all(np.isin(record.pvc_indices, record.beat_indices))
        np.testing.assert_array_equal(record.beat_indices[record.is_pvc], record.pvc_indices)
        assert np.all(np.diff(record.beat_indices) > 0)
        assert record.beat_indices[0] >= 0 and record.beat_indices[-1] < record.signal_mv.size


def test_provenance_says_real_data_and_its_licence():
    described = provenance()
    assert described["synthetic"] is False
    assert "ODC-By" in described["licence"]
    assert described["records"] == list(RECORD_IDS)
    assert any("Moody" in citation for citation in described["citation"])
    assert "114" in described["lead_notes"]


def test_a_subset_of_records_in_the_order_asked():
    assert [record.record_id for record in load_records(["200", "105"])] == ["200", "105"]
    with pytest.raises(DataError, match="unknown MIT-BIH record"):
        load_records(["999"])


def test_a_modified_copy_is_refused_by_its_hash(tmp_path):
    copy = tmp_path / "mitdb_subset.npz"
    shutil.copyfile(DATA_FILE, copy)
    with copy.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError, match="sha256"):
        load_records(path=copy)


def _rewrite(source, target, **changes) -> None:
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(changes)
    np.savez(target, **arrays)


def test_inconsistent_annotations_are_refused_with_a_typed_error(tmp_path):
    with np.load(DATA_FILE, allow_pickle=False) as archive:
        beats, pvcs = archive["beats_100"], archive["pvc_100"]
    cases = {
        "not annotated beats": {"pvc_100": np.asarray([beats[0] + 1], dtype=np.int32)},
        "outside the signal": {"beats_100": np.append(beats, 700_000).astype(np.int32)},
        "not strictly increasing": {"beats_100": beats[::-1].copy()},
    }
    for message, change in cases.items():
        path = tmp_path / f"{len(message)}.npz"
        _rewrite(DATA_FILE, path, **change)
        with pytest.raises(DataError, match=message):
            load_records(["100"], path=path, expected_sha256=None)
    assert pvcs.size == 1


def test_a_missing_file_says_how_to_restore_it(tmp_path):
    with pytest.raises(DataError, match="not found") as raised:
        load_records(path=tmp_path / "absent.npz")
    assert "restore" in raised.value.fix
