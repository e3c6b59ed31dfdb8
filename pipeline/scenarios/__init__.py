"""The scenario registry: every healthcare task edgemed can build by name."""

from __future__ import annotations

from pipeline.errors import UnknownScenarioError
from pipeline.scenarios.base import DeviceContract, Scenario


def _registry() -> dict[str, Scenario]:
    from pipeline.scenarios.breast_cancer import BreastCancerScenario
    from pipeline.scenarios.ecg_arrhythmia.scenario import EcgArrhythmiaScenario
    from pipeline.scenarios.ecg_pvc.scenario import EcgPvcScenario
    from pipeline.scenarios.eeg_artifact.scenario import EegArtifactScenario
    from pipeline.scenarios.ppg_quality.scenario import PpgQualityScenario
    from pipeline.scenarios.vitals_anomaly.scenario import vitals_anomaly_scenarios

    scenarios: list[Scenario] = [EcgPvcScenario(), BreastCancerScenario(), EcgArrhythmiaScenario(),
                                 EegArtifactScenario(), PpgQualityScenario(), *vitals_anomaly_scenarios()]
    return {scenario.name: scenario for scenario in scenarios}


def scenario_names() -> list[str]:
    """Every registered scenario."""
    return list(_registry())


def default_scenario_names() -> list[str]:
    """The scenarios ``make build`` (``edgemed build`` without names) builds and ships."""
    return [name for name, scenario in _registry().items() if scenario.shipped_by_default]


def get_scenario(name: str) -> Scenario:
    registry = _registry()
    if name not in registry:
        raise UnknownScenarioError(
            f"unknown scenario '{name}'",
            expected=f"one of {', '.join(registry)}",
            fix="run 'edgemed scenarios' to list them, or build your own model with --model/--data",
        )
    return registry[name]


__all__ = ["DeviceContract", "Scenario", "default_scenario_names", "get_scenario", "scenario_names"]
