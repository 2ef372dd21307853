"""The package type-checks (mypy, configured in pyproject.toml): the next integration copies typed patterns."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_finds_no_errors(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", "/tmp/paybot-mypy"])
    assert status == 0, out + err
