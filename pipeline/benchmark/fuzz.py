"""``python -m pipeline.benchmark.fuzz``: the device runtime against bad inputs and mutated manifests.

Inputs: ``--cases`` cases drawn round-robin over ``fuzz_inputs.KINDS`` run in this process through
``runtime.__main__.main`` (no subprocess), each under a wall-clock timeout (``signal.setitimer``) and
``tracemalloc``. Counted: tracebacks (an exception other than ``SystemExit`` escaping ``main``, or a
traceback printed without ``-v``), hangs (timeouts), exit-0 answers on invalid samples (a ``REFUSE``
case that exits 0, or a ``FLAG`` case with a judged row), usage/refusal exit codes, and the peak
Python heap per case against the input's size.

Manifests: ``--mutations`` single edits of a signed bundle's ``manifest.json`` (values retyped,
numbers changed, strings edited, lists reordered or cut, keys dropped or added). Signed (the
signature kept): every one must be refused. Unsigned (``TrustPolicy.development()``, the
``--allow-unsigned`` path): the manifest's own checks must refuse every mutation outside
``HARMLESS_ROOTS`` — documentary fields the runtime never acts on; accepted ones elsewhere are listed.

Writes ``benchmarks/results/fuzz.json`` (or ``--output``), flagged ``"synthetic": true`` with ``FUZZ_DATA``
(``data``): every input is a generated fuzz case, no patient data. Building the two tiny bundles takes ~15 s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import logging
import math
import resource
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.benchmark.fuzz_inputs import KINDS, Expect, FuzzBundles, FuzzCase, make_case
from runtime.__main__ import main as device_main
from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("benchmarks/results/fuzz.json")
FUZZ_DATA = ("SYNTHETIC: every input is a generated fuzz case (pipeline/benchmark/fuzz_inputs.py: malformed files, "
             "bad options, a plain synthetic ECG-like signal, made-up tabular rows) and every manifest a mutated copy, "
             "run against two tiny bundles built here (ecg-arrhythmia, itself trained on synthetic ECG, and "
             "breast-cancer); no patient data, no accuracy figure")
CASE_TIMEOUT_S = 20.0  # a case still running after this is a hang
MEMORY_BASE_BYTES = 256 * 1024**2  # heap a run may use whatever its input (bundle, session, buffers)
MEMORY_PER_INPUT_BYTE = 64  # plus this many bytes per input byte (a float64 copy of text, windows, events)
# Manifest roots the runtime never acts on: documentation of how the bundle was made. A mutation there is
# harmless by construction (a signed bundle still refuses it: the signature covers every byte).
HARMLESS_ROOTS = frozenset({"description", "training", "tool_versions", "lineage", "created_at", "variants",
                            "export", "selection", "data"})
# Free-text leaves elsewhere that the runtime only displays (never parses or computes with).
HARMLESS_LEAVES = frozenset({("preprocessing", "runtime"), ("preprocessing", "in_graph"), ("output", "semantics"),
                             ("scenario",)})


def is_harmless(path: tuple) -> bool:
    """Whether a manifest path is documentation only: its root in HARMLESS_ROOTS, or a HARMLESS_LEAVES text."""
    return str(path[0]) in HARMLESS_ROOTS or tuple(path) in HARMLESS_LEAVES

ACTED_ON_SHARE = 0.8  # share of manifest mutations aimed at fields the runtime acts on (the rest: anywhere)


class CaseTimeout(BaseException):
    """The case ran past its timeout."""


@dataclass
class CaseOutcome:
    kind: str
    expect: str
    exit_code: int | None
    traceback: bool
    hang: bool
    silent_answer: bool
    peak_bytes: int
    input_bytes: int
    seconds: float
    control_failed: bool = False  # a VALID control that did not exit 0 or left a row unjudged


def _alarm(signum, frame) -> None:
    raise CaseTimeout


def _silent_answer(case: FuzzCase, exit_code: int | None, stdout: str) -> bool:
    """Whether an invalid case got an answer: exit 0 on REFUSE, or any judged row on FLAG."""
    if case.expect is Expect.REFUSE:
        return exit_code == 0
    if case.expect is Expect.FLAG and exit_code == 0:
        events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        return not events or any(event.get("judged", True) for event in events)
    return False


def _control_failed(case: FuzzCase, exit_code: int | None, stdout: str) -> bool:
    """Whether a VALID control failed to reach the model: an exit other than 0, or a row it did not judge (its
    rows are drawn inside the bundle's domain, so every one must get an answer)."""
    if case.expect is not Expect.VALID:
        return False
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()] if exit_code == 0 else []
    return exit_code != 0 or any(event.get("judged") is False for event in events)


def run_case(case: FuzzCase, timeout_s: float = CASE_TIMEOUT_S) -> CaseOutcome:
    """Run one case in this process; never raises (what escaped is counted as a traceback)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    exit_code, escaped, hang = None, False, False
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            exit_code = device_main(case.arguments)
    except SystemExit as error:
        exit_code = error.code if isinstance(error.code, int) else 2
    except CaseTimeout:
        hang = True
    except Exception:  # noqa: BLE001 - the benchmark counts anything that escapes the runtime
        escaped = True
        logger.warning("%s: exception escaped main:\n%s", case.kind, _format_exception())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    peak = max(0, tracemalloc.get_traced_memory()[1] - base)
    printed = "Traceback (most recent call last)" in stderr.getvalue()
    printed_events = stdout.getvalue()
    return CaseOutcome(case.kind, case.expect.value, exit_code, escaped or printed, hang,
                       _silent_answer(case, exit_code, printed_events), peak, case.input_bytes, seconds,
                       _control_failed(case, exit_code, printed_events))


def _format_exception() -> str:
    import traceback

    return traceback.format_exc(limit=6)


def build_bundles(folder: Path) -> FuzzBundles:
    """Tiny signed ECG and tabular bundles and a trust store, built with a fresh development key."""
    from pipeline.build.builder import build_scenario
    from pipeline.build.context import StageContext
    from pipeline.build.signing import PRIVATE_KEY_NAME, TRUST_STORE_FOLDER, SigningKey, generate_keys
    from pipeline.config import Profile
    from pipeline.scenarios import get_scenario
    from runtime.contract import KeyPurpose

    generate_keys(folder / "key", KeyPurpose.DEVELOPMENT)
    key = SigningKey.load(folder / "key" / PRIVATE_KEY_NAME)
    built = {}
    for name in ("ecg-arrhythmia", "breast-cancer"):
        scenario = get_scenario(name)
        outcome = build_scenario(scenario, scenario.build_config(Profile.TINY), StageContext(folder / "artifacts"),
                                 folder / "bundles", signing_key=key)
        built[name] = outcome.bundle_directory
    return FuzzBundles.of(built["ecg-arrhythmia"], built["breast-cancer"], folder / "key" / TRUST_STORE_FOLDER)


def fuzz_inputs(bundles: FuzzBundles, cases: int, seed: int = 0, timeout_s: float = CASE_TIMEOUT_S,
                kinds: tuple[str, ...] = tuple(KINDS)) -> list[CaseOutcome]:
    """``cases`` cases round-robin over ``kinds``, each in a fresh temporary folder."""
    rng = np.random.default_rng(seed)
    outcomes = []
    for index in range(cases):
        with tempfile.TemporaryDirectory(prefix="edgemed-fuzz-") as folder:
            case = make_case(kinds[index % len(kinds)], rng, Path(folder), bundles)
            outcomes.append(run_case(case, timeout_s))
    return outcomes


def memory_limit(input_bytes: int) -> int:
    return MEMORY_BASE_BYTES + MEMORY_PER_INPUT_BYTE * input_bytes


def summarise_inputs(outcomes: list[CaseOutcome]) -> dict[str, Any]:
    invalid = [outcome for outcome in outcomes if outcome.expect != Expect.VALID.value]
    controls = [outcome for outcome in outcomes if outcome.expect == Expect.VALID.value]
    per_kind: dict[str, Counter] = {}
    for outcome in outcomes:
        counts = per_kind.setdefault(outcome.kind, Counter())
        counts["cases"] += 1
        counts[f"exit_{outcome.exit_code}"] += 1
    return {
        "synthetic": True,  # generated fuzz cases (FUZZ_DATA)
        "cases": len(outcomes),
        "invalid_cases": len(invalid),
        "tracebacks": sum(outcome.traceback for outcome in outcomes),
        "hangs": sum(outcome.hang for outcome in outcomes),
        "exit_0_answers_on_invalid": sum(outcome.silent_answer for outcome in invalid),
        "valid_controls": len(controls),
        "valid_controls_failed": sum(outcome.control_failed for outcome in controls),
        "over_memory_bound": sum(outcome.peak_bytes > memory_limit(outcome.input_bytes) for outcome in outcomes),
        "peak_heap_bytes_max": max((outcome.peak_bytes for outcome in outcomes), default=0),
        "max_input_bytes": max((outcome.input_bytes for outcome in outcomes), default=0),
        "seconds_per_case_max": round(max((outcome.seconds for outcome in outcomes), default=0.0), 3),
        "seconds_per_case_mean": round(sum(outcome.seconds for outcome in outcomes) / max(1, len(outcomes)), 4),
        "per_kind": {kind: dict(sorted(counts.items())) for kind, counts in sorted(per_kind.items())},
    }


# -- manifests -----------------------------------------------------------------------------------------


def _leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _leaf_paths(child, (*prefix, index))
    return paths


def _mutated_value(value: Any, rng: np.random.Generator) -> Any:
    """A different value of the same or another type."""
    choices: list[Any] = [None, True, "x", 0, -1, 1e308, [], {}, "1,2,3"]
    if isinstance(value, bool):
        choices += [not value]
    elif isinstance(value, int | float):
        choices += [value + 1, -value, value * 10, value / 2 if value else 0.5, str(value), float("nan")]
    elif isinstance(value, str):
        choices += [value[::-1], value + "x", value.upper(), "", value[: len(value) // 2], 3]
    elif isinstance(value, list):
        choices += [value[::-1], value[1:], value + value[-1:], value[:-1]] if value else [[1]]
        if len(value) > 1:
            swapped = list(value)
            swapped[0], swapped[1] = swapped[1], swapped[0]
            choices.append(swapped)
    elif isinstance(value, dict):
        choices += [{**value, "unexpected": 1}] + [{k: v for k, v in value.items() if k != key} for key in value]
    for _ in range(8):
        candidate = choices[int(rng.integers(0, len(choices)))]
        if json.dumps(candidate, sort_keys=True) != json.dumps(value, sort_keys=True):
            return candidate
    return {"mutated": True}


def mutate_manifest(manifest: dict, rng: np.random.Generator) -> tuple[dict, tuple]:
    """A copy of ``manifest`` with one value changed, deleted or added, and the path changed."""
    mutated = copy.deepcopy(manifest)
    paths = _leaf_paths(manifest)
    acted_on = [path for path in paths if not is_harmless(path)]
    pool = acted_on if acted_on and rng.random() < ACTED_ON_SHARE else paths
    path = pool[int(rng.integers(0, len(pool)))]
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    operation = rng.random()
    if operation < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif operation < 0.2 and isinstance(parent, dict):
        parent[f"{path[-1]}_extra"] = 1
    else:
        parent[path[-1]] = _mutated_value(parent[path[-1]], rng)
    return mutated, path


def _at(document: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(document, dict | list):
            return "(deleted)"
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return "(deleted)"
    return document


def fuzz_manifests(bundle: Path, trust_store: Path, mutations: int, seed: int = 0) -> dict[str, Any]:
    """Mutated manifests of ``bundle`` loaded signed (must all refuse) and unsigned (semantic checks)."""
    from runtime.bundle import load_bundle
    from runtime.trust import SIGNATURE_NAME, TrustPolicy

    rng = np.random.default_rng(seed)
    trusted = dataclasses.replace(TrustPolicy.from_store(trust_store), version_state=None)
    original = json.loads((bundle / "manifest.json").read_text())
    counts: Counter = Counter()
    accepted_harmful: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="edgemed-manifest-fuzz-") as folder:
        signed, unsigned = Path(folder) / "signed", Path(folder) / "unsigned"
        shutil.copytree(bundle, signed)
        shutil.copytree(bundle, unsigned)
        (unsigned / SIGNATURE_NAME).unlink(missing_ok=True)
        quiet = logging.getLogger("runtime")
        level, quiet.level = quiet.level, logging.ERROR  # one UNSIGNED warning per load would flood the log
        try:
            for _ in range(mutations):
                mutated, path = mutate_manifest(original, rng)
                data = json.dumps(mutated, indent=1).encode()
                for name, target, policy in (("signed", signed, trusted), ("unsigned", unsigned,
                                                                          TrustPolicy.development())):
                    (target / "manifest.json").write_bytes(data)
                    try:
                        load_bundle(target, "cpu", 1, trust=policy)
                        outcome = "accepted"
                    except EdgemedError:
                        outcome = "refused"
                    except Exception:  # noqa: BLE001 - counted: only EdgemedError may escape
                        outcome = "crashed"
                    counts[f"{name}_{outcome}"] += 1
                    if name == "unsigned" and outcome == "accepted" and not is_harmless(path):
                        accepted_harmful[".".join(map(str, path[:4]))] += 1
                        logger.info("unsigned manifest accepted with %s = %r", path, _at(mutated, path))
                    if name == "unsigned" and outcome == "accepted" and is_harmless(path):
                        counts["unsigned_accepted_harmless"] += 1
        finally:
            quiet.level = level
    return {
        "mutations": mutations,
        "signed_refused": counts["signed_refused"],
        "signed_accepted": counts["signed_accepted"],
        "signed_crashed": counts["signed_crashed"],
        "unsigned_refused": counts["unsigned_refused"],
        "unsigned_accepted_harmless": counts["unsigned_accepted_harmless"],
        "unsigned_accepted_harmful": sum(accepted_harmful.values()),
        "unsigned_crashed": counts["unsigned_crashed"],
        "harmless_roots": sorted(HARMLESS_ROOTS),
        "harmless_leaves": sorted(".".join(leaf) for leaf in HARMLESS_LEAVES),
        "unsigned_accepted_harmful_paths": dict(accepted_harmful.most_common(40)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="fuzzed runtime inputs (default 10 000)")
    parser.add_argument("--mutations", type=int, default=1_000, help="manifest mutations (default 1 000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=CASE_TIMEOUT_S, help="per-case hang limit")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL, stream=io.StringIO())  # the runtime's logs are not the result
    logging.getLogger(__name__).setLevel(logging.WARNING)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edgemed-fuzz-bundles-") as folder:
        print("building tiny signed bundles ...", file=sys.stderr, flush=True)
        bundles = build_bundles(Path(folder))
        tracemalloc.start()
        outcomes = fuzz_inputs(bundles, arguments.cases, arguments.seed, arguments.timeout_s)
        tracemalloc.stop()
        manifests = fuzz_manifests(bundles.ecg, bundles.trust_store, arguments.mutations, arguments.seed)
    document = {
        "benchmark": "fuzz",
        "synthetic": True,
        "data": FUZZ_DATA,
        "seed": arguments.seed,
        "inputs": summarise_inputs(outcomes),
        "manifests": manifests,
        "memory_bound": f"{MEMORY_BASE_BYTES // 1024**2} MiB + {MEMORY_PER_INPUT_BYTE} × input bytes (Python heap, "
        "tracemalloc)",
        "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "case_timeout_s": arguments.timeout_s,
        "seconds": round(time.time() - started, 1),
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    inputs = document["inputs"]
    print(f"inputs (SYNTHETIC: generated fuzz cases): {inputs['cases']} cases, {inputs['tracebacks']} tracebacks, "
          f"{inputs['hangs']} hangs, {inputs['exit_0_answers_on_invalid']} exit-0 answers on invalid, "
          f"{inputs['over_memory_bound']} over the memory bound; manifests: {manifests['signed_accepted']} signed "
          f"accepted, {manifests['unsigned_accepted_harmful']} unsigned harmful accepted → {arguments.output}",
          file=sys.stderr)
    failed = inputs["tracebacks"] + inputs["hangs"] + inputs["exit_0_answers_on_invalid"] + manifests[
        "signed_accepted"] + manifests["signed_crashed"] + manifests["unsigned_crashed"]
    return 1 if failed or not math.isfinite(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
