"""Session-wide fixtures for the exporters tests: toy data and one model/export per family."""

from __future__ import annotations

import pytest

from tests.exporters.toy_models import ModelZoo, Splits, make_signals, make_tabular


@pytest.fixture(scope="session")
def tabular() -> Splits:
    return make_tabular()


@pytest.fixture(scope="session")
def signals() -> Splits:
    return make_signals()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory, tabular: Splits, signals: Splits) -> ModelZoo:
    return ModelZoo(tmp_path_factory.mktemp("zoo"), tabular, signals)


@pytest.fixture(scope="session")
def trained_mlp(zoo: ModelZoo) -> object:
    return zoo.model("mlp")


@pytest.fixture(scope="session")
def trained_conv(zoo: ModelZoo) -> object:
    return zoo.model("conv1d_zscore")
