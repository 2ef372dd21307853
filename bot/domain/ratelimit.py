"""A token bucket on an injected clock: how often something may happen, with room for a burst."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class TokenBucket:
    rate: float   # tokens added per second
    burst: float  # the most it holds
    tokens: float
    at: datetime  # when `tokens` was counted

    @classmethod
    def full(cls, rate: float, burst: float, now: datetime) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: datetime) -> bool:
        """One token if there is one (refilled for the time since the last look)."""
        elapsed = max((now - self.at).total_seconds(), 0.0)
        self.tokens, self.at = min(self.burst, self.tokens + elapsed * self.rate), now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
