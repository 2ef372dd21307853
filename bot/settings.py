"""Typed settings, read once at start-up from the environment (and `.env`). Secrets are `SecretStr`: masked in
every repr and log line.

Core settings live here; each integration declares its own `<NAME>_…` settings next to its code (see
`bot.integrations.base.IntegrationSettings`), so adding one touches only its module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.audit import Keyring

ENV_FILE = ".env"
MIN_AUDIT_KEY = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./paybot.db"
    host: str = "127.0.0.1"
    port: int = 8080
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
    email_provider: Literal["sendgrid", "mailgun"] | None = None

    # inline: a webhook's event, payments, matches and outbox rows commit together before the answer (simplest);
    # deferred: the event alone is group-committed before the answer and its payments recorded just after (for
    # high volume, and platforms that want an answer within seconds).
    ingest_mode: Literal["inline", "deferred"] = "inline"
    max_body_bytes: int = Field(default=1_048_576, description="larger webhook bodies are refused with 413")
    worker_batch: int = 20
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: float = 60.0
    delivery_max_attempts: int = 8
    delivery_max_age_seconds: float = 86_400.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 900.0

    # The audit chain's key (HMAC-SHA256), kept outside the database; unset, the chain is plain SHA-256.
    audit_key: SecretStr | None = None
    audit_previous_keys: SecretStr | None = None  # comma-separated earlier keys, to verify what they chained
    audit_anchor_seconds: float = Field(default=3600.0, gt=0)  # how often the chain's head is published
    refusals_retention_days: float = Field(default=30.0, gt=0)  # refused-webhook summaries older than this go

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
