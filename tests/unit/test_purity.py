"""The domain core and the cards do no I/O: no web, database, SDK or network imports (checked on the AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"aiohttp", "sqlalchemy", "asyncpg", "aiosqlite", "slack_sdk", "slack_bolt", "botbuilder", "sendgrid",
             "twilio", "requests", "httpx", "socket", "urllib", "http", "asyncio", "os", "subprocess", "bot.storage",
             "bot.integrations", "bot.handlers", "bot.services"}
PURE = sorted([*(ROOT / "bot" / "domain").glob("*.py"), *(ROOT / "cards").rglob("*.py")])


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_io(path: Path) -> None:
    bad = {name for name in imported(path) for banned in FORBIDDEN if name == banned or name.startswith(banned + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_rule_sees_the_modules() -> None:
    assert {p.name for p in PURE} >= {"money.py", "matching.py", "fingerprint.py", "slack.py"}
