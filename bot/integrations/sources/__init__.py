"""The payment-source registry: every module here, listed once by its webhook path name."""

from __future__ import annotations

from bot.integrations.base import registry
from bot.integrations.sources.base import SourceFactory
from bot.integrations.sources.stripe import StripeSource



SOURCES: dict[str, SourceFactory] = registry(
    StripeSource,
)
