"""Tiny real builds shared by the end-to-end and CLI tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.build.builder import BuildOutcome, build_scenario
from pipeline.build.context import StageContext
from pipeline.config import Profile
from pipeline.scenarios import get_scenario


def tiny_build(name: str, root: Path) -> BuildOutcome:
    scenario = get_scenario(name)
    config = scenario.build_config(Profile.TINY, seed=0)
    return build_scenario(scenario, config, StageContext(root / "artifacts"), root / "bundles")


@pytest.fixture(scope="session")
def breast_cancer_build(tmp_path_factory) -> tuple[Path, BuildOutcome]:
    root = tmp_path_factory.mktemp("breast")
    return root, tiny_build("breast-cancer", root)


@pytest.fixture(scope="session")
def ecg_build(tmp_path_factory) -> tuple[Path, BuildOutcome]:
    """The ecg-arrhythmia scenario at the tiny profile: a model trained on SYNTHETIC beats (its manifest says so) —
    for the pipeline's mechanics, never for a figure about real ECG."""
    root = tmp_path_factory.mktemp("ecg")
    return root, tiny_build("ecg-arrhythmia", root)


@pytest.fixture(scope="session")
def ecg_pvc_build(tmp_path_factory) -> tuple[Path, BuildOutcome]:
    """The real-data PVC scenario at the tiny profile: one minute of five MIT-BIH records (about 15 s)."""
    root = tmp_path_factory.mktemp("ecg-pvc")
    return root, tiny_build("ecg-pvc", root)
