"""What every integration shares: its settings, read from `<NAME>_…` variables, and whether it is enabled."""

from __future__ import annotations

from typing import ClassVar, Protocol, TypeVar

from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.settings import ENV_FILE


class IntegrationSettings(BaseSettings):
    """Subclass per integration with `model_config = settings_config("STRIPE")` and its fields.

    `required` names the fields without which the integration is disabled.
    """

    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", frozen=True, env_ignore_empty=True)
    required: ClassVar[tuple[str, ...]] = ()

    def missing(self) -> list[str]:
        """The unset required settings, as environment variable names (blank counts as unset, see `given`)."""
        return [env_var(type(self), name) for name in self.required if not given(getattr(self, name))]


def given(value: object) -> bool:
    """Has a setting any content? A secret of only commas or spaces names no key: enabled, it would refuse every
    request without a word, so it counts as unset and the integration is disabled (and says so at start-up)."""
    if isinstance(value, SecretStr):
        return bool(secrets(value))
    if isinstance(value, str):
        return bool(value.strip())
    return bool(value)


def env_var(settings: type[BaseSettings], field: str) -> str:
    """The variable a field is read from: `<prefix><FIELD>`, unless the field names its own (`MAILGUN_FROM`,
    whose field is `from_`) as the first of its validation aliases."""
    alias = settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    if isinstance(alias, str):
        return alias.upper()
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()


def settings_config(name: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{name}_", env_file=ENV_FILE, extra="ignore", frozen=True,
                              env_ignore_empty=True)  # `NAME=` means unset, as for the core settings


def secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def secrets(value: SecretStr | None) -> list[str]:
    """A comma-separated secret setting (several keys during rotation) as a list."""
    return [part.strip() for part in secret(value).split(",") if part.strip()]


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


class Named(Protocol):
    name: str


N = TypeVar("N", bound=Named)


def registry(*factories: N) -> dict[str, N]:
    """Integrations by name; a name used twice is a programming error, caught at import."""
    names = [f.name for f in factories]
    if len(set(names)) != len(names):
        raise RuntimeError(f"duplicate integration names in {names}")
    return {f.name: f for f in factories}
