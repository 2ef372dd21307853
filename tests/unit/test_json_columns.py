"""JSON columns are written and read by orjson, and by json wherever orjson declines: the values that come back are
the ones json would have given, and what json refuses is still refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bot.storage.engine import json_text, json_value


@pytest.mark.parametrize("value", [
    {"amount": "12.50", "lines": [1, 2.5, None, True], "payer": "José Ñúñez 💳", "nested": {"b": 1, "a": [{}]}},
    {"big": 2 ** 70},          # beyond 64 bits: json writes it
    {1: "a", "2": "b"},        # a key that is not a string: json writes it as one
    "plain", 0, None, [],
])
def test_what_is_written_reads_back_as_json_reads_it(value):
    assert json_value(json_text(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", [{"at": datetime(2026, 12, 2, tzinfo=UTC)}, {"set": {1, 2}}])
def test_what_json_refuses_is_refused(value):
    with pytest.raises(TypeError):
        json_text(value)


def test_a_dataclass_is_refused_as_json_refuses_it():
    @dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        json_text({"p": Point(1)})


def test_text_written_by_json_reads_back():
    assert json_value('{"a": 1, "b": [1.5, "x"], "c": 123456789012345678901234567890}') == {
        "a": 1, "b": [1.5, "x"], "c": 123456789012345678901234567890}


def test_an_integer_beyond_64_bits_reads_back_whole():
    """orjson would read it as a float: 2**70 would come back as 1.1805916207174113e+21."""
    for number in (2 ** 64, 2 ** 70, -(2 ** 63) - 1, 10 ** 30):
        assert json_value(json_text({"n": number})) == {"n": number}
