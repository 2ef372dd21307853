"""Log records are written safely: control characters escaped, customer emails and phone numbers redacted, and
library loggers held back under `LOG_LEVEL=DEBUG` (checked through `paybot`'s own `configure_logging`)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from bot.logs import SafeRecords, escape, redact


@pytest.mark.parametrize(("raw", "written"), [
    ("payer\n2026-12-01 00:00:00 INFO forged: all clear", "payer\\n2026-12-01 00:00:00 INFO forged: all clear"),
    ("a\rb\x00c\x1b[31md\x7f\x85\u2028e", "a\\rb\\x00c\\x1b[31md\\x7f\\x85\\u2028e"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("Ünïcödé and tabs\tstay readable", "Ünïcödé and tabs\\tstay readable"),
])
def test_control_characters_are_escaped(raw, written):
    assert escape(raw) == written


@pytest.mark.parametrize(("raw", "written"), [
    ("sent to jane.doe@example.com (payer)", "sent to j***@example.com (payer)"),
    ("sms to +12025550123, done", "sms to +12*******23, done"),
    ("already j***@example.com and +12*******23", "already j***@example.com and +12*******23"),
    ("invoice INV-1042 for $1,250.00 at 1795867200", "invoice INV-1042 for $1,250.00 at 1795867200"),
])
def test_emails_and_phone_numbers_are_redacted(raw, written):
    assert redact(raw) == written


def test_a_record_is_rewritten_once_with_its_traceback_indented():
    try:
        raise ValueError("bad\nFORGED LINE from jane@example.com")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "payer %s", ("jane@example.com\n",),
                                   sys.exc_info())
    assert SafeRecords().filter(record) and SafeRecords().filter(record)
    assert record.getMessage() == "payer j***@example.com\\n"
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert all(line.startswith("  ") for line in text.splitlines()[1:])
    assert "  FORGED LINE from j***@example.com" in text and "jane@" not in text


def test_paybot_logging_under_debug_escapes_redacts_and_holds_libraries_back(tmp_path):
    script = (
        "import logging\n"
        "from bot.cli import configure_logging\n"
        "configure_logging('DEBUG')\n"
        "logging.getLogger('slack_sdk.web.base_client').debug('Sending a request - body: {\"to\": \"a@b.example\"}')\n"
        "logging.getLogger('aiohttp.client').debug('POST to jane@example.com')\n"
        "logging.getLogger('sqlalchemy.engine.Engine').info('INSERT ... (\"jane@example.com\",)')\n"
        "logging.getLogger('bot.test').debug('payer %s', 'Jane <jane@example.com> +12025550123\\nFORGED')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"})
    written = done.stderr
    assert done.returncode == 0, written
    assert "body:" not in written and "POST to" not in written and "INSERT" not in written
    [line] = written.splitlines()
    assert line.endswith("DEBUG bot.test: payer Jane <j***@example.com> +12*******23\\nFORGED")
