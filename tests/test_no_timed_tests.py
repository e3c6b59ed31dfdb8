"""No test asserts a speed: speed and memory targets live in ``benchmarks/``, where a slow machine gives a figure, not
a red run. A test may bound a wait (a subprocess ``timeout=``, ``future.result(timeout=)``) so that a hang fails,
but no ``assert`` reads a clock."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = frozenset({"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "process_time", "time", "time_ns"})


def clock_asserts(source: str) -> list[int]:
    """Lines of the ``assert`` statements whose condition calls ``time.<clock>()``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assert):
            for inner in ast.walk(node.test):
                if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr in CLOCKS and isinstance(inner.func.value, ast.Name)
                        and inner.func.value.id == "time"):
                    found.append(node.lineno)
                    break
    return found


def test_no_assert_in_the_tests_reads_a_clock() -> None:
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}" for path in sorted(TESTS.rglob("*.py"))
                 for line in clock_asserts(path.read_text(encoding="utf-8"))]
    assert not offenders, "timed asserts (move the target to benchmarks/, bound a hang with a timeout): " + ", ".join(
        offenders)


def test_the_check_finds_a_timed_assert_and_passes_a_bounded_wait() -> None:
    timed = "import time\nstarted = time.monotonic()\nrun()\nassert time.monotonic() - started < 30\n"
    bounded = "import subprocess\nresult = subprocess.run(command, timeout=240)\nassert result.returncode == 0\n"
    assert clock_asserts(timed) == [4]
    assert clock_asserts(bounded) == []
