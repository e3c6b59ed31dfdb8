"""The dashboard's held open minute blocks (``dashboard.components.open_blocks``): asked again within the refresh
period, a block is served as held; after it (or ``expire``), brought up to date from what is held; unused blocks
and the oldest beyond the limit are let go."""

from __future__ import annotations

import pandas as pd

from dashboard.components.open_blocks import OpenMinuteBlocks
from dashboard.data.windows import OpenMinutes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reading(log: list[OpenMinutes | None], rows: int = 1):
    def refresh(held: OpenMinutes | None) -> OpenMinutes:
        log.append(held)
        count = (0 if held is None else len(held.frame)) + rows
        return OpenMinutes(pd.DataFrame({"records": range(count)}), frozenset(), "2026-01-01T00:00:00.000000Z")

    return refresh


def test_a_block_is_served_as_held_within_the_period_and_brought_up_to_date_after_it() -> None:
    clock, log = Clock(), []
    blocks = OpenMinuteBlocks(ttl_s=20, clock=clock)
    first = blocks.frame("minute", reading(log))
    assert log == [None] and len(first) == 1  # read whole
    clock.now += 19
    assert blocks.frame("minute", reading(log)) is first and len(log) == 1  # within the period: as held
    clock.now += 2
    second = blocks.frame("minute", reading(log))
    assert log[1] is not None and log[1].frame is first and len(second) == 2  # up to date from what was held
    blocks.expire()
    assert len(blocks.frame("minute", reading(log))) == 3 and len(log) == 3  # due at once after expire
    assert len(blocks.frame("minute", reading(log))) == 3 and len(log) == 3


def test_unused_blocks_and_the_oldest_beyond_the_limit_are_let_go() -> None:
    clock, log = Clock(), []
    blocks = OpenMinuteBlocks(ttl_s=20, keep_s=300, limit=2, clock=clock)
    for key in ("a", "b", "c"):
        blocks.frame(key, reading(log))
    assert len(blocks) == 2  # "a", the oldest, let go
    blocks.frame("a", reading(log))
    assert log[-1] is None  # read whole again
    clock.now += 301
    blocks.frame("d", reading(log))
    assert len(blocks) == 1  # "b"/"c"/"a" unused for longer than keep_s
