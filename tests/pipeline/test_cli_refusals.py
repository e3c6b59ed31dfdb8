"""The build-side command line refuses bad input with a clear error before it has done (or lost) any work: archive
indexes, user data, signal exports, key folders and output folders."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.archive.generate import plan_excerpts
from pipeline.archive.layout import ArchiveError, read_archive
from pipeline.archive.run import validate_archive
from pipeline.archive.worker import TrustSettings
from pipeline.benchmark.fuzz_inputs import _npy_header
from pipeline.build.signing import KeyLocationError, generate_keys
from pipeline.build.user_data import ModelSignature, gather_inputs, label_names, read_npz, sample_rate
from pipeline.cli import main
from pipeline.errors import DataError
from runtime.contract import KeyPurpose, TaskKind


@pytest.mark.parametrize("index", ['{"recordings": [], "source": {"rate": NaN}}', "[" * 100_000 + "]" * 100_000])
def test_an_archive_index_with_nan_or_endless_nesting_is_refused_on_reading(tmp_path, index):
    (tmp_path / "archive.json").write_text(index)
    with pytest.raises(ArchiveError) as refused:
        read_archive(tmp_path)
    assert "archive.json" in str(refused.value)


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_run(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ArchiveError, match="cannot be written"):  # before the bundle is even opened
        validate_archive(tmp_path / "no-bundle", None, tmp_path / "a-file" / "out", TrustSettings())


def test_user_data_refuses_empty_splits_odd_class_names_and_complex_rates():
    signature = ModelSignature(("input",), ((4,),), (3,), 3)
    with pytest.raises(DataError, match="test inputs hold no rows"):
        gather_inputs({"test_inputs": np.zeros((0, 4), dtype=np.float32)}, "test", signature)
    with pytest.raises(DataError, match="1-D array of strings"):
        label_names(TaskKind.MULTICLASS, {"class_names": np.array([["a", "b", "c"], ["d", "e", "f"]])}, 3)
    with pytest.raises(DataError, match="one positive number"):
        sample_rate({"sample_rate_hz": np.array(360 + 1j)})


def test_user_data_is_refused_on_its_headers_when_it_decodes_beyond_the_budget(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:  # 4.5 GB declared; headers only, no data read
        archive.writestr("test_inputs.npy", _npy_header("<f4", (1_125_000_000,)))
    with pytest.raises(DataError, match="decode to 4500000000 bytes"):
        read_npz(tmp_path / "bomb.npz")


def test_make_archive_refuses_a_length_that_is_not_a_number():
    with pytest.raises(DataError, match="positive length"):
        plan_excerpts({"100": 1800.0}, 10, float("nan"))


def test_export_record_keeps_the_name_given_and_refuses_odd_numbers_and_clashes(tmp_path):
    runner = CliRunner()
    done = runner.invoke(main, ["export-record", "119", "--output", str(tmp_path / "U.NPY"), "--seconds", "10",
                                "--annotations", str(tmp_path / "beats.json")])
    assert done.exit_code == 0, done.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["U.NPY", "beats.json"]
    assert np.load(tmp_path / "U.NPY").shape == (3600,) and json.loads((tmp_path / "beats.json").read_text())["is_v"]
    for arguments in (["--seconds", "nan"], ["--start-s", "inf"], ["--annotations", str(tmp_path / "x.npy")]):
        refused = runner.invoke(main, ["export-record", "119", "--output", str(tmp_path / "x.npy"), *arguments])
        assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    (tmp_path / "a-file").write_text("")
    refused = runner.invoke(main, ["export-record", "119", "--output", str(tmp_path / "a-file" / "x.npy")])
    assert refused.exit_code == 2 and "a-file is not a folder" in refused.output  # before the record is read
    assert sorted(path.name for path in tmp_path.iterdir()) == ["U.NPY", "a-file", "beats.json"]


def test_a_key_folder_holding_a_file_where_the_trust_store_goes_is_refused_before_any_key_is_written(tmp_path):
    (tmp_path / "trust-store").write_text("not a folder")
    with pytest.raises(KeyLocationError, match="trust store folder"):
        generate_keys(tmp_path, KeyPurpose.DEVELOPMENT)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["trust-store"]


def test_build_refuses_output_folders_it_cannot_make_before_any_stage(tmp_path):
    (tmp_path / "a-file").write_text("")
    refused = CliRunner().invoke(main, ["build", "breast-cancer", "--profile", "tiny", "--artifacts",
                                        str(tmp_path / "a-file" / "artifacts")])
    assert refused.exit_code == 2 and "--artifacts" in refused.output and "Traceback" not in refused.output


def test_a_model_with_integer_inputs_is_refused_before_any_stage_with_the_fix():
    import keras

    from pipeline.build.user_data import model_signature
    from pipeline.errors import UsageError

    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                              keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(UsageError, match="dtype int32") as refused:
        model_signature(model)
    assert "dtype='float32'" in refused.value.fix
    floats = keras.Sequential([keras.Input((6,), dtype="float32"), keras.layers.Embedding(10, 4),
                               keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    assert model_signature(floats).input_shapes == ((6,),)  # an Embedding takes float indices


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_a_model_with_float64_or_float16_inputs_is_refused_before_export(dtype):
    """They passed `inspect`, then `export` failed its parity check with 'Unexpected input data type' and a fix
    about re-exporting (found by an audit)."""
    import keras

    from pipeline.build.user_data import model_signature
    from pipeline.errors import UsageError

    model = keras.Sequential([keras.Input((6,), dtype=dtype), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(UsageError, match=f"dtype {dtype}") as refused:
        model_signature(model)
    assert "dtype='float32'" in refused.value.fix and "float32 inputs" in refused.value.expected
