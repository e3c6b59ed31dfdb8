"""Which LiteRT variant the shipped model is compared with: the fastest one that passes the same gate.

A fast model that answers wrongly is no peer: LiteRT's full-int8 conversion can lose several points of
accuracy (on the ECG PVC model it calls far more false PVCs), so the head-to-head comparison takes the
fastest LiteRT variant that passes the build's own gate (``same_gate``) — and says so, naming any faster
variant that failed and why. With none passing, there is no peer, and the reason lists each variant's
verdict. ``choose_peer`` is a pure function of the candidates; ``scenario_peers`` gathers them per thread
count from a scenario's rows, head-to-head and judgements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pipeline.benchmark.head_to_head import candidate_name, entry_for

HEAD_TO_HEAD = "head-to-head"
PER_PROCESS = "per-process"


@dataclass(frozen=True)
class PeerCandidate:
    """One LiteRT variant: its verdict by the same gate and its batch-1 latency at one thread count."""

    name: str  # "litert int8"
    passed: bool | None  # None: not judged (no data, not made)
    latency_us: float | None  # median of window medians; None: not measured
    reason: str = ""  # the verdict (or why there is none) in words
    source: str | None = None  # "head-to-head" or "per-process": where latency_us comes from

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PeerChoice:
    """The peer the shipped model is compared with (None: no LiteRT variant passes), and why."""

    threads: int
    chosen: str | None
    reason: str
    candidates: tuple[PeerCandidate, ...]

    def to_dict(self) -> dict:
        return {"threads": self.threads, "chosen": self.chosen, "reason": self.reason,
                "candidates": [candidate.to_dict() for candidate in self.candidates]}


def _describe(candidate: PeerCandidate) -> str:
    latency = f"{candidate.latency_us:,.1f} µs" if candidate.latency_us is not None else "not timed"
    return f"{candidate.name} ({latency}): {candidate.reason or 'no verdict'}"


def choose_peer(candidates: Sequence[PeerCandidate], threads: int = 1) -> PeerChoice:
    """The fastest candidate that passed and was timed; faster ones that did not pass are named, not chosen."""
    passing = [item for item in candidates if item.passed is True and item.latency_us is not None]
    if not passing:
        why = "; ".join(_describe(item) for item in candidates) or "no LiteRT variant was made"
        return PeerChoice(threads, None, f"no LiteRT variant passes the gate: {why}", tuple(candidates))
    chosen = min(passing, key=lambda item: item.latency_us)
    reason = f"{chosen.name}: the fastest LiteRT variant that passes the gate ({chosen.latency_us:,.1f} µs)"
    faster = [item for item in candidates if item.passed is not True and item.latency_us is not None
              and item.latency_us < chosen.latency_us]
    if faster:
        reason += "; faster but not a peer: " + "; ".join(_describe(item) for item in faster)
    return PeerChoice(threads, chosen.name, reason, tuple(candidates))


def _latency(rows: list[dict], entry: dict | None, engine: str, variant: str, threads: int
             ) -> tuple[float | None, str | None]:
    name = candidate_name(engine, variant)
    if entry is not None and name in entry["models"]:
        return float(entry["models"][name]["median_of_windows_us"]), HEAD_TO_HEAD
    for row in rows:
        if (row["status"] == "ok" and row["engine"] == engine and row["variant"] == variant
                and row["threads"] == threads):
            return float(row["latency"]["median_of_windows_us"]), PER_PROCESS
    return None, None


def scenario_peers(rows: list[dict], head_to_head: list[dict] | None, judgements: dict[str, dict]
                   ) -> list[PeerChoice]:
    """The peer choice at every measured thread count. Latencies come from the head-to-head at that count (every
    model timed together, rotating rounds) when it timed the variant, else from its per-process row; a LiteRT
    variant the converter could not make is a candidate with no latency, its row's reason as its own."""
    variants = list(dict.fromkeys(row["variant"] for row in rows if row["engine"] == "litert"))
    if not variants:  # no LiteRT peers at all (--no-peers, a bare model file): no choice to make
        return []
    thread_counts = sorted({row["threads"] for row in rows if row["status"] == "ok" and row["threads"] is not None})
    choices = []
    for threads in thread_counts:
        entry = entry_for(head_to_head, threads)
        candidates = []
        for variant in variants:
            judged = judgements.get(candidate_name("litert", variant)) or {}
            latency, source = _latency(rows, entry, "litert", variant, threads)
            unavailable = next((row["reason"] for row in rows if row["engine"] == "litert"
                                and row["variant"] == variant and row["status"] != "ok"), None)
            candidates.append(PeerCandidate(candidate_name("litert", variant), judged.get("passed"), latency,
                                            unavailable or judged.get("reason", ""), source))
        choices.append(choose_peer(candidates, threads))
    return choices
