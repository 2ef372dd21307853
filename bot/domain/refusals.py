"""Refused webhooks, summarised in memory between flushes: a count per (source, reason class, remote).

A refusal is unauthenticated: whoever sends it must not decide how much paybot stores. So each refusal costs no
database write, only a counter here; the tally holds at most `max_keys` distinct keys, and refusals from further
remotes are counted together under `OTHERS`. A flush turns one window into one row per key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

OTHERS = "(others)"  # the overflow bucket's remote: past the cap, refusals are counted without their address
MAX_REMOTE = 64


@dataclass(frozen=True, slots=True)
class RefusalKey:
    source: str
    reason: str  # the class of refusal (SignatureInvalid, PayloadInvalid, PayloadTooLarge), never free text
    remote: str


@dataclass(slots=True)
class Count:
    count: int
    status: int
    example: str  # the first reason seen in the window: composed by paybot, already short (errors.short_reason)


@dataclass(frozen=True, slots=True)
class Summary:
    key: RefusalKey
    status: int
    count: int
    example: str
    window_start: datetime
    window_end: datetime


@dataclass
class RefusalTally:
    """Counts since `since`; `take` hands them over and starts the next window."""

    since: datetime
    max_keys: int = 5_000
    counts: dict[RefusalKey, Count] = field(default_factory=dict)

    def add(self, source: str, reason: str, remote: str | None, status: int, example: str) -> None:
        self._count(RefusalKey(source, reason, (remote or "unknown")[:MAX_REMOTE]), 1, status, example)

    def take(self, now: datetime) -> list[Summary]:
        window = [Summary(key, c.status, c.count, c.example, self.since, now) for key, c in self.counts.items()]
        self.counts, self.since = {}, now
        return window

    def give_back(self, summaries: list[Summary]) -> None:
        """Summaries whose flush failed: counted again in the current window, so nothing is lost."""
        for summary in summaries:
            self._count(summary.key, summary.count, summary.status, summary.example)
            self.since = min(self.since, summary.window_start)

    def _count(self, key: RefusalKey, n: int, status: int, example: str) -> None:
        if key not in self.counts and len(self.counts) >= self.max_keys:
            key = RefusalKey(key.source, key.reason, OTHERS)  # sources and reason classes are few: still bounded
        counted = self.counts.get(key)
        if counted is None:
            self.counts[key] = Count(n, status, example)
        else:
            counted.count += n
