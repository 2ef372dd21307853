"""Typed settings, read once at start-up from the environment (and `.env`). Secrets are `SecretStr`: masked in
every repr and log line.

Core settings live here; each integration declares its own `<NAME>_…` settings next to its code (see
`bot.integrations.base.IntegrationSettings`), so adding one touches only its module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_FILE = ".env"


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
    read_timeout_seconds: float = Field(default=30.0, gt=0, description="a request's headers, and then its body, "
                                        "must arrive within this; an idle connection is closed after it")
    worker_batch: int = 20
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: float = 60.0
    delivery_max_attempts: int = 8
    delivery_max_age_seconds: float = 86_400.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 900.0
