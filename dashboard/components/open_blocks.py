"""Open minute blocks kept between a page's refreshes and brought up to date with what the store received since.

A live page re-reads its open minute blocks (the last few minutes, not yet ``windows.SETTLE`` old) at every refresh.
Read whole, that is a thousand devices' minutes each time, decoded again; here each block is read whole once and
afterwards only for the rows the collector stored since (``dashboard.data.windows.refresh_minutes``), at most every
``ttl_s``. Shared by every session of the process; a block no page asked for in ``keep_s`` is let go (a block
stops being asked for here once it is complete: the pages then read it whole, once, into the long cache).
Nothing here imports Streamlit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import pandas as pd

from dashboard.data.windows import OpenMinutes

KEEP_S = 300.0  # an open block unused this long is dropped (its minutes are complete by then)
LIMIT = 256  # open blocks held at most (a few per window and device page)


class OpenMinuteBlocks:
    """The open minute blocks held, by key, with when each was last brought up to date and last asked for."""

    def __init__(self, ttl_s: float, keep_s: float = KEEP_S, limit: int = LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.keep_s, self.limit = ttl_s, keep_s, limit
        self._clock = clock
        self._held: OrderedDict[Hashable, tuple[OpenMinutes, float, float]] = OrderedDict()  # block, read, used
        self._lock = threading.Lock()

    def frame(self, key: Hashable, refresh: Callable[[OpenMinutes | None], OpenMinutes]) -> pd.DataFrame:
        """The block under ``key``: as held when brought up to date less than ``ttl_s`` ago, else ``refresh`` of
        what is held (None: nothing yet, read it whole). Reads run outside the lock: two sessions refreshing one
        block at once each get a whole, current block (the later one is kept)."""
        now = self._clock()
        with self._lock:
            self._forget(now)
            held = self._held.get(key)
            if held is not None and now - held[1] < self.ttl_s:
                self._held[key] = (held[0], held[1], now)
                self._held.move_to_end(key)
                return held[0].frame
        fresh = refresh(None if held is None else held[0])
        with self._lock:
            self._held[key] = (fresh, now, now)
            self._held.move_to_end(key)
            while len(self._held) > self.limit:
                self._held.popitem(last=False)
        return fresh.frame

    def expire(self) -> None:
        """Make every held block due: the next ask brings it up to date (what ``ttl_s`` passing does)."""
        with self._lock:
            for key, (block, _, used) in list(self._held.items()):
                self._held[key] = (block, float("-inf"), used)

    def __len__(self) -> int:
        return len(self._held)

    def _forget(self, now: float) -> None:
        for key in [key for key, (_, _, used) in self._held.items() if now - used > self.keep_s]:
            del self._held[key]
