"""What `paybot check` asks of each integration, and what it finds.

An integration that can prove its credentials implements `SelfChecking`: one call to the provider's cheapest
authenticated endpoint (SendGrid's scopes, Slack's `auth.test`, …), answered as findings. One without (a
webhook secret is proved only by the platform's first signed event) simply does not: `paybot check` says
there is nothing to call. The check service discovers the hook through the registries; the CLI names no
integration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class Finding:
    text: str
    mark: str = "ok"  # ok | off | PROBLEM

    @property
    def problem(self) -> bool:
        return self.mark == "PROBLEM"


def ok(text: str) -> Finding:
    return Finding(text)


def off(text: str) -> Finding:
    return Finding(text, "off")


def problem(text: str) -> Finding:
    return Finding(text, "PROBLEM")


@runtime_checkable
class SelfChecking(Protocol):
    async def check(self, settings: Settings) -> list[Finding]:
        """Call the provider once with the configured credentials and say what it answered. Raises only for the
        unexpected (the provider unreachable): the caller turns that into a problem naming the integration."""
        ...


def url_problems(settings: BaseSettings) -> list[Finding]:
    """Every `…_url` setting must be an absolute http(s) URL: a typo there fails only at the first payment."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if not name.endswith("_url") or not isinstance(value, str) or not value:
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            found.append(problem(f"{prefix}{name}".upper() + f" {value!r} is not an http(s) URL"))
    return found
