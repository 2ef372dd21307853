"""`.env.example` lists every setting paybot reads, each with a comment, and nothing it does not read."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from bot.integrations.base import env_name
from bot.integrations.channels import CHANNELS
from bot.integrations.sources import SOURCES
from bot.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def settings_read() -> set[str]:
    names = {name.upper() for name in Settings.model_fields}
    for factory in (*SOURCES.values(), *CHANNELS.values()):
        prefix = factory.Settings.model_config.get("env_prefix") or f"{env_name(factory.name)}_"
        for field, info in factory.Settings.model_fields.items():
            alias = info.validation_alias  # a shared setting read under its own name (Twilio's PUBLIC_BASE_URL)
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
            names |= {c.upper() for c in choices if isinstance(c, str) and c.isupper()} or {f"{prefix}{field}".upper()}
    return names


def listed() -> dict[str, int]:
    lines = EXAMPLE.read_text().splitlines()
    return {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"#?\s*([A-Z][A-Z0-9_]+)=", line))}


def test_every_setting_is_listed_and_nothing_else():
    names = listed()
    assert sorted(settings_read() - set(names)) == []
    assert sorted(set(names) - settings_read()) == []


def test_every_setting_has_a_comment_above_it():
    lines = EXAMPLE.read_text().splitlines()
    for name, index in listed().items():
        above = lines[:index]
        while above and re.match(r"#?\s*[A-Z][A-Z0-9_]+=", above[-1]):
            above.pop()  # a group of related settings shares one comment
        assert above and above[-1].startswith("#"), f"{name} has no comment"
