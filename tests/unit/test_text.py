"""Outside text made safe for each surface (`bot/text.py`), and no way around it left in the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot import text
from bot.text import Mrkdwn, mrkdwn

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<!channel> <https://evil.example|Open this payment in Stripe> *bold* & <@U123>"


@pytest.mark.parametrize(("value", "slack"), [
    (HOSTILE, "&lt;!channel&gt; &lt;https://evil.example|Open this payment in Stripe&gt; *bold* &amp; &lt;@U123&gt;"),
    ("<#C0FINANCE> <!subteam^S1> <!here>", "&lt;#C0FINANCE&gt; &lt;!subteam^S1&gt; &lt;!here&gt;"),
    ("&lt;!channel&gt;", "&amp;lt;!channel&amp;gt;"),  # pre-escaped text cannot smuggle a `<` back in
    ("Ja\u202ene\x00 Doe\x1b[31m", "Jane Doe[31m"),     # bidi override, NUL, ESC removed
    (1042, "1042"),
])
def test_slack_escapes_every_way_to_ping_or_link(value: object, slack: str) -> None:
    assert text.slack(value) == slack


def test_mrkdwn_escapes_what_it_fills_in_and_keeps_what_paybot_wrote() -> None:
    answer = mrkdwn("*{}* paid, escalated by {}", HOSTILE, text.mention("U0FIN1"))
    assert answer == ("*&lt;!channel&gt; &lt;https://evil.example|Open this payment in Stripe&gt; *bold* &amp; "
                      "&lt;@U123&gt;* paid, escalated by <@U0FIN1>")
    assert text.lines([answer, "<!here>"]).endswith("\n&lt;!here&gt;")
    assert text.mention("U1> <!channel") == "U1&gt; &lt;!channel"  # not a user id: shown as text
    assert text.usergroup_mention("S0ONCALL") == "<!subteam^S0ONCALL>"
    assert isinstance(Mrkdwn("a") + "<b>", Mrkdwn) and Mrkdwn("a") + "<b>" == "a&lt;b&gt;"


def test_plain_and_line() -> None:
    assert text.plain("Jane\u200b\nDoe\t\x07") == "Jane\nDoe\t"
    assert text.line(" Payment for\r\nINV-1\u2066 \n") == "Payment for INV-1"


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"https://evil.example\",\"Open\")", "'=HYPERLINK(\"https://evil.example\",\"Open\")"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("-12.50", "-12.50"),    # a refund's amount stays a number
    ("+3", "+3"),
    ("-1e9", "'-1e9"),       # not the way paybot writes numbers: defused
    ("INV-1042", "INV-1042"),
    ('{"note": "=1"}', '{"note": "=1"}'),
    (7, 7),
    (None, None),
])
def test_csv_cell_defuses_formulas(value: object, cell: object) -> None:
    assert text.csv_cell(value) == cell


# --- no way around it -------------------------------------------------------------------------------------------

#: Where `Mrkdwn(...)` may be built from something other than `mrkdwn()`, and why.
TRUSTED = {
    "bot/text.py": "the module itself",
    "bot/messages.py": "Jinja's `finalize` escaped every value in the rendered template",
}
SOURCES = sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "cards").rglob("*.py")])


def _calls(path: Path, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_slack_text_is_built_only_from_literal_templates(path: Path) -> None:
    where = str(path.relative_to(ROOT))
    by_hand = [c for c in _calls(path, "Mrkdwn") if not (len(c.args) == 1 and isinstance(c.args[0], ast.Constant))]
    assert where in TRUSTED or not by_hand, f"{where} builds Mrkdwn(...) from a variable: use mrkdwn()"
    for call in _calls(path, "mrkdwn"):
        template = call.args[0] if call.args else None
        assert isinstance(template, ast.Constant) and isinstance(template.value, str), \
            f"{where}:{call.lineno}: mrkdwn() needs a literal template (values go in as arguments)"


def test_the_scan_sees_the_call_sites() -> None:
    users = {str(p.relative_to(ROOT)) for p in SOURCES if _calls(p, "mrkdwn")}
    assert users >= {"bot/services/staff/queries.py", "bot/services/staff/actions.py", "bot/handlers/slack.py",
                     "cards/slack.py"}
