import codecs

import pytest

from bot.services.csv_files import FileError, decode, delimiter, table

TEXT = "id,name\nC1,José Núñez\n"


@pytest.mark.parametrize("data", [
    TEXT.encode(), codecs.BOM_UTF8 + TEXT.encode(), TEXT.encode("cp1252"),
    codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    TEXT.encode("utf-16-le"), TEXT.encode("utf-16-be"),
], ids=["utf-8", "utf-8-bom", "cp1252", "utf-16-le-bom", "utf-16-be-bom", "utf-16-le", "utf-16-be"])
def test_decode_reads_every_encoding_excel_writes(data):
    assert decode(data) == TEXT


def test_decode_refuses_binary():
    with pytest.raises(FileError, match="line 1"):
        decode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x81\x8d")


@pytest.mark.parametrize(("header", "separator"), [
    ("id,name,email", ","), ("id;name;email", ";"), ("id\tname\temail", "\t"), ("favourite;colour", ","),
])
def test_the_separator_is_the_one_that_finds_known_columns(header, separator):
    assert delimiter(header, {"id", "name", "email"}) == separator


def test_rows_keep_only_the_files_columns_and_name_their_line():
    rows = table("ID ; Name\r\nC1;Jane\r\n;;\r\n\r\nC2\r\nC3;Bob;extra\r\n", {"id", "name"})
    assert rows.columns == ("id", "name")
    assert [(r.line, r.cells, r.problem) for r in rows.rows] == [
        (2, {"id": "C1", "name": "Jane"}, None),
        (5, {"id": "C2", "name": ""}, None),
        (6, {}, "3 cells, the header has 2"),
    ]


def test_a_column_twice_is_a_file_error():
    with pytest.raises(FileError, match="column id appears twice"):
        table("id,name,id\n", {"id", "name"})
