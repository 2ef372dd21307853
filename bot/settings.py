"""Typed settings, read once at start-up from the environment (and `.env`). Secrets are `SecretStr`: masked in
every repr and log line.

Core settings live here; each integration declares its own `<NAME>_…` settings next to its code (see
`bot.integrations.base.IntegrationSettings`), so adding one touches only its module.
"""

from __future__ import annotations

import logging
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.audit import Keyring
from bot.domain.business import Business
from bot.storage.engine import normalise_url

ENV_FILE = ".env"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_AUDIT_KEY = 16


class Settings(BaseSettings):
    # env_ignore_empty: `NAME=` (as .env.example has it) means unset, i.e. the default, never "".
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", frozen=True, env_ignore_empty=True)

    database_url: str = "sqlite+aiosqlite:///./paybot.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"

    finance_slack_channel: str | None = None
    finance_teams_conversation: str | None = None
    escalation_slack_channel: str | None = None
    finance_slack_users: str = ""
    finance_slack_usergroup: str | None = None
    escalation_oncall_slack_users: str = ""  # comma-separated Slack user ids mentioned on an escalation
    escalation_oncall_slack_usergroup: str | None = None  # a user group (S…) mentioned on an escalation
    escalation_reescalate_seconds: float = 1800.0  # unacknowledged this long: post it again
    escalation_max_rounds: int = 4  # posts per escalation, the first included
    finance_teams_users: str = ""  # comma-separated AAD object ids of the staff allowed Teams commands/buttons
    escalation_teams_conversation: str | None = None  # Teams conversation id escalations are posted to
    escalation_oncall_teams_users: str = ""  # comma-separated AAD object ids mentioned on a Teams escalation
    email_provider: Literal["sendgrid", "mailgun"] | None = None

    # inline: a webhook's event, payments, matches and outbox rows commit together before the answer (simplest);
    # deferred: the event alone is group-committed before the answer and its payments recorded just after (for
    # high volume, and platforms that want an answer within seconds).
    ingest_mode: Literal["inline", "deferred"] = "deferred"  # benchmarks/README.md: why
    max_body_bytes: int = Field(default=1_048_576, description="larger webhook bodies are refused with 413")
    # Events stored before they can be verified (PayPal IPN; `bot.services.verifier`): anyone can send them.
    unverified_max_pending: int = Field(default=1000, ge=1)  # per source; past it, 503 and nothing stored
    unverified_max_rate: float = Field(default=2.0, gt=0)  # kept per second per source and process, past a burst
    unverified_retention_hours: float = Field(default=24.0, gt=0)  # then a forged/unverifiable body is purged
    verify_concurrency: int = Field(default=8, ge=1)  # verification calls at once, per process
    verify_max_attempts: int = Field(default=8, ge=1)  # then the event is given up on (`unverifiable`)
    verify_retry_base_seconds: float = Field(default=30.0, gt=0)  # first wait after a failed attempt; doubles
    read_timeout_seconds: float = Field(default=30.0, gt=0, description="a request's headers, and then its body, "
                                        "must arrive within this; an idle connection is closed after it")
    worker_batch: int = Field(default=200, ge=1)  # outbox rows claimed at once, sent side by side
    worker_concurrency: int = Field(default=100, ge=1)  # provider calls in flight at once, per worker
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: float = 60.0
    # 12 sends begun span about 47 minutes at the default backoff (2 s doubling to 15 min): a provider outage of
    # half an hour is ridden out, and at 30 % independent faults 12 failures in a row are 1 in 1.9 million (8
    # were 1 in 15,000: the soak's one dead letter in two 10,000-payment runs).
    delivery_max_attempts: int = 12
    delivery_max_age_seconds: float = 86_400.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 900.0

    # The audit chain's key (HMAC-SHA256), kept outside the database; unset, the chain is plain SHA-256.
    audit_key: SecretStr | None = None
    audit_previous_keys: SecretStr | None = None  # comma-separated earlier keys, to verify what they chained
    audit_anchor_seconds: float = Field(default=3600.0, gt=0)  # how often the chain's head is published
    refusals_retention_days: float = Field(default=30.0, gt=0)  # refused-webhook summaries older than this go

    # Thin notifications resolved after the answer (QuickBooks, Xero, …; `bot.services.verifier`) and the catch-up
    # sweep of platforms that can list what changed (`bot.services.sweeper`).
    resolve_max_attempts: int = Field(default=12, ge=1)  # then the notification is given up on (finance card)
    resolve_retry_base_seconds: float = Field(default=30.0, gt=0)  # first wait after a failed read; doubles
    sweep_interval_seconds: float = Field(default=900.0, gt=0)  # how often each connected platform is swept
    sweep_lookback_hours: float = Field(default=72.0, gt=0)  # the first sweep of a platform looks back this far

    @field_validator("audit_key", "audit_previous_keys")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # `AUDIT_KEY=` as in .env.example: unset
        if any(len(k.strip()) < MIN_AUDIT_KEY for k in value.get_secret_value().split(",")):
            raise ValueError(f"each key needs at least {MIN_AUDIT_KEY} characters (e.g. `openssl rand -hex 32`)")
        return value

    def audit_keyring(self) -> Keyring:
        """The key new audit entries are chained with (None: unkeyed) and the earlier ones."""
        previous = self.audit_previous_keys.get_secret_value().split(",") if self.audit_previous_keys else []
        return Keyring.of(self.audit_key.get_secret_value().strip() if self.audit_key else None,
                          [k.strip() for k in previous])

    # Who the messages come from: signed on every customer message, on every channel.
    business_name: str | None = None
    business_address: str | None = None
    business_phone: str | None = None
    business_reply_to: str | None = None  # the email address a customer's reply goes to
    business_logo_url: str | None = None
    business_locale: str = "en-US"  # finance cards: money and dates shown one way, whatever the customer reads
    business_timezone: str = "UTC"  # IANA name: finance cards, and customers without a time zone
    templates_dir: str | None = None  # the operator's wording: templates here replace the built-in ones by name

    @field_validator("business_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        try:
            Locale.parse(value.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            raise ValueError(f"{value!r} is not a locale (e.g. en-US, es-MX)") from None
        return value

    @field_validator("business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Chicago)") from None
        return value

    @property
    def business(self) -> Business:
        return Business(name=self.business_name, address=self.business_address, phone=self.business_phone,
                        reply_to=self.business_reply_to, logo_url=self.business_logo_url,
                        locale=self.business_locale, timezone=self.business_timezone)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_url(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS or not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level


def setting_errors(exc: ValidationError, prefix: str = "") -> str:
    """A settings class's validation errors as one line naming each variable: `PORT: …; LOG_LEVEL: …`."""
    return "; ".join(
        f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors())
