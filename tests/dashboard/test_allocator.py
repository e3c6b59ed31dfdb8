"""The dashboard process allocates Arrow buffers with the C library's malloc unless the operator chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dashboard.data.allocator import VARIABLE

PROBE = ("import pyarrow as pa; from dashboard.data.allocator import use_system_allocator; "
         "before = pa.default_memory_pool().backend_name; after = use_system_allocator(); "
         "assert after == pa.default_memory_pool().backend_name; print(before, after)")


def _probe(environment: dict[str, str]) -> list[str]:
    finished = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                              env=environment, check=False)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.split()


def test_the_dashboard_switches_arrow_to_the_system_allocator() -> None:
    environment = {key: value for key, value in os.environ.items() if key != VARIABLE}
    assert _probe(environment)[1] == "system"


@pytest.mark.parametrize("backend", ["jemalloc", "mimalloc"])
def test_an_operators_choice_of_allocator_is_kept(backend: str) -> None:
    import pyarrow as pa

    if backend not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {backend}")
    assert _probe({**os.environ, VARIABLE: backend}) == [backend, backend]


def test_a_page_reads_its_telemetry_on_the_system_allocator(dashboard_fixture, use_settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa

    from dashboard.components import telemetry
    from tests.dashboard.apptest_pages import run_page

    monkeypatch.delenv(VARIABLE, raising=False)
    use_settings(dashboard_fixture.settings)
    telemetry.reader.clear()
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool() if "mimalloc" in pa.supported_memory_backends()
                       else pa.jemalloc_memory_pool())
    try:
        run_page("fleet")
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(previous)
