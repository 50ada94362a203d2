"""Tests of the CSV, TSV and XML readers and writers."""

import codecs
import io
import tracemalloc
from pathlib import Path

import pytest

from impex.exceptions import ConfigurationError, FileRejected
from impex.formats import readers
from impex.formats.readers import Layout, iter_records, scan, sniff_header
from impex.formats.writers import write_rows

CSV = Layout(format="csv")
TSV = Layout(format="tsv")
XML = Layout(format="xml")
TRICKY_ROWS = [
    ["A-1", "Smith, John", 'He said "hello"', "first line\nsecond line"],
    ["A-2", "日本語のテキスト", "Привет, мир", "emoji 🎉👍 and tab\there"],
    ["A-3", "", "carriage\rreturn", "crlf\r\ninside"],
    ["A-4", "  spaces kept  ", "&<>'\"", ""],
]
COLUMNS = ["id", "name", "note", "text"]


def write_bytes(tmp_path: Path, data: bytes, *, name: str = "data.csv") -> Path:
    """Write raw bytes to a file in tmp_path."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_file(tmp_path: Path, *, layout: Layout, columns: list[str], rows: list[list[str]], name: str) -> Path:
    """Write rows with write_rows into a file in tmp_path."""
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as stream:
        assert write_rows(stream, layout=layout, columns=columns, rows=rows) == len(rows)
    return path


def read_all(path: Path, *, layout: Layout) -> tuple[list[str], list[readers.Record]]:
    """Scan a file, then read all its records."""
    result = scan(path, layout=layout)
    records = list(iter_records(path, layout=layout, header=result.header))
    assert result.record_count == len(records)
    return result.header, records


def rejection(path: Path, *, layout: Layout, **kwargs: object) -> str:
    """Return the message scan refuses the file with."""
    with pytest.raises(FileRejected) as excinfo:
        scan(path, layout=layout, **kwargs)
    return str(excinfo.value)


@pytest.mark.parametrize(("layout", "name"), [(CSV, "data.csv"), (TSV, "data.tsv"), (XML, "data.xml")])
def test_round_trip_keeps_delimiters_quotes_line_breaks_and_unicode(tmp_path, layout, name):
    path = write_file(tmp_path, layout=layout, columns=COLUMNS, rows=TRICKY_ROWS, name=name)

    header, records = read_all(path, layout=layout)

    assert header == COLUMNS
    assert [record.values for record in records] == [dict(zip(COLUMNS, row, strict=True)) for row in TRICKY_ROWS]
    assert all(record.error is None for record in records)


def test_tsv_uses_tabs(tmp_path):
    path = write_file(tmp_path, layout=TSV, columns=["a", "b"], rows=[["1", "x,y"]], name="data.tsv")

    assert path.read_text() == "a\tb\n1\tx,y\n"


def test_csv_row_numbers_count_the_header_as_row_one(tmp_path):
    path = write_bytes(tmp_path, b"id,name\n1,a\n2,b\n")

    _, records = read_all(path, layout=CSV)

    assert [(record.index, record.row) for record in records] == [(0, 2), (1, 3)]


def test_utf8_bom_is_accepted_and_stripped(tmp_path):
    path = write_bytes(tmp_path, "\ufeffid,name\n1,Zoë\n".encode())

    header, records = read_all(path, layout=CSV)

    assert header == ["id", "name"]
    assert records[0].values == {"id": "1", "name": "Zoë"}


def test_cp1252_file_is_rejected_naming_utf8_and_the_byte(tmp_path):
    path = write_bytes(tmp_path, "id,name\n1,ok\n2,Café\n".encode("cp1252"))

    message = rejection(path, layout=CSV)

    assert "not valid UTF-8 at byte 18 (line 3)" in message
    assert "save the file as UTF-8" in message


def test_a_bad_byte_far_into_the_file_is_found(tmp_path):
    path = write_bytes(tmp_path, b"id,name\n" + b"1,abc\n" * 50_000 + b"2,\xff\n")

    assert "at byte 300,010 (line 50002)" in rejection(path, layout=CSV)


def test_the_descriptors_encoding_is_used(tmp_path):
    path = write_bytes(tmp_path, "id,name\n1,Café\n".encode("cp1252"))
    layout = Layout(format="csv", encoding="cp1252")

    _, records = read_all(path, layout=layout)

    assert records[0].values == {"id": "1", "name": "Café"}


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_file_is_rejected(tmp_path, data):
    path = write_bytes(tmp_path, data)

    assert rejection(path, layout=CSV) == "the file is empty: a header row is expected"


def test_header_only_file_is_valid_with_no_records(tmp_path):
    path = write_bytes(tmp_path, b"id,name\n")

    assert scan(path, layout=CSV) == readers.ScanResult(header=["id", "name"], record_count=0)


def test_duplicated_header_name_is_rejected(tmp_path):
    path = write_bytes(tmp_path, b"id,name,id\n1,a,2\n")

    assert rejection(path, layout=CSV) == 'the header has the column "id" twice (columns 1 and 3)'


def test_empty_header_name_is_rejected(tmp_path):
    path = write_bytes(tmp_path, b"id,,name\n1,2,3\n")

    assert rejection(path, layout=CSV) == "column 2 of the header has no name"


def test_header_names_are_not_checked_against_the_descriptor(tmp_path):
    path = write_bytes(tmp_path, b"whatever,Other\n1,2\n")

    assert scan(path, layout=Layout(format="csv", columns=("id", "name"))).header == ["whatever", "Other"]


def test_unterminated_quote_is_rejected_with_its_row(tmp_path):
    path = write_bytes(tmp_path, b'id,name\n1,fine\n2,"never closed\n3,more\n')

    message = rejection(path, layout=CSV)

    assert message.startswith("unterminated quote in row 3 (line 3)")


def test_text_after_a_closing_quote_is_rejected(tmp_path):
    path = write_bytes(tmp_path, b'id,name\n1,"a"b\n')

    assert rejection(path, layout=CSV).startswith("bad quoting in row 2 (line 2)")


def test_rows_with_too_many_or_too_few_cells_are_row_errors(tmp_path):
    path = write_bytes(tmp_path, b"id,name,qty\n1,a,1\n2,b,2,extra\n3,c,3\n4,d\n5,e,5\n")

    _, records = read_all(path, layout=CSV)

    assert [(record.row, record.error) for record in records if record.error] == [
        (3, "row has 4 cells, the header has 3"),
        (5, "row has 2 cells, the header has 3"),
    ]
    assert [record.values["id"] for record in records if record.values] == ["1", "3", "5"]


def test_blank_lines_are_not_records(tmp_path):
    path = write_bytes(tmp_path, b"id,name\r\n1,a\r\n\r\n2,b\r\n\r\n\r\n")

    _, records = read_all(path, layout=CSV)

    assert [record.values for record in records] == [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]


def test_headerless_file_uses_the_layouts_columns(tmp_path):
    path = write_bytes(tmp_path, b"1,a\n2,b\n")
    layout = Layout(format="csv", has_header=False, columns=("id", "name"))

    header, records = read_all(path, layout=layout)

    assert header == ["id", "name"]
    assert [(record.row, record.values) for record in records] == [
        (1, {"id": "1", "name": "a"}),
        (2, {"id": "2", "name": "b"}),
    ]


def test_start_and_stop_select_a_slice_of_records(tmp_path):
    rows = [[str(number), f"name {number}"] for number in range(10)]
    path = write_file(tmp_path, layout=CSV, columns=["id", "name"], rows=rows, name="data.csv")

    records = list(iter_records(path, layout=CSV, header=["id", "name"], start=3, stop=6))

    assert [(record.index, record.row, record.values["id"]) for record in records] == [
        (3, 5, "3"),
        (4, 6, "4"),
        (5, 7, "5"),
    ]
    assert [record.index for record in iter_records(path, layout=CSV, header=["id", "name"], start=8)] == [8, 9]


def test_file_over_max_bytes_is_rejected(tmp_path):
    path = write_bytes(tmp_path, b"id\n" + b"1\n" * 100)

    assert rejection(path, layout=CSV, max_bytes=100) == "the file is 203 bytes, more than the limit of 100 bytes"


def test_cell_over_the_size_limit_is_rejected(tmp_path):
    line = b"x" * 1023 + b"\n"
    path = write_bytes(tmp_path, b'id,note\n1,"' + line * (readers.MAX_CELL_CHARS // len(line) + 1) + b'"\n')

    assert "is longer than 10,485,760 characters" in rejection(path, layout=CSV)


def test_xml_cell_over_the_size_limit_is_rejected(tmp_path):
    text = b"x" * (readers.MAX_CELL_CHARS + 1)
    path = write_bytes(tmp_path, b"<records><record><note>" + text + b"</note></record></records>", name="data.xml")

    assert "record 1: the element <note> holds more than 10,485,760 characters" in rejection(path, layout=XML)


def test_line_over_the_size_limit_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 1000)
    path = write_bytes(tmp_path, b"id,note\n1," + b"x" * 2000 + b"\n")

    assert rejection(path, layout=CSV) == "line 2 is longer than 1,000 characters"


def test_sniff_header_reads_the_first_row(tmp_path):
    path = write_bytes(tmp_path, b'\xef\xbb\xbfid,name\n1,a\n2,"broken\n')

    assert sniff_header(path, layout=CSV) == ["id", "name"]


def test_layout_refuses_an_unknown_format_or_encoding():
    with pytest.raises(ConfigurationError):
        Layout(format="xlsx")
    with pytest.raises(ConfigurationError):
        Layout(format="csv", encoding="no-such-codec")


def test_xml_is_read_as_records_of_column_elements(tmp_path):
    path = write_bytes(
        tmp_path,
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<records>\n"
        b"  <record>\n    <id>1</id>\n    <name>Ann &amp; Bob</name>\n  </record>\n"
        b"  <record><id>2</id><note/><name></name></record>\n"
        b"  <record><id>3</id><note> spaced </note></record>\n"
        b"</records>\n",
        name="data.xml",
    )

    header, records = read_all(path, layout=XML)

    assert header == ["id", "name", "note"]
    assert [(record.row, record.values) for record in records] == [
        (1, {"id": "1", "name": "Ann & Bob"}),
        (2, {"id": "2", "note": "", "name": ""}),
        (3, {"id": "3", "note": " spaced "}),
    ]
    assert sniff_header(path, layout=XML) == ["id", "name"]


def test_xml_root_and_record_names_come_from_the_layout(tmp_path):
    layout = Layout(format="xml", xml_root="customers", xml_record="customer")
    path = write_file(tmp_path, layout=layout, columns=["id"], rows=[["7"]], name="data.xml")

    assert path.read_text().splitlines()[1:] == ["<customers>", "  <customer><id>7</id></customer>", "</customers>"]
    assert read_all(path, layout=layout)[1][0].values == {"id": "7"}


def test_xml_repeated_column_element_is_a_row_error(tmp_path):
    path = write_bytes(tmp_path, b"<records><record><id>1</id><id>2</id></record><record><id>3</id></record></records>")

    _, records = read_all(path, layout=XML)

    assert [(record.values, record.error) for record in records] == [
        (None, "the element <id> appears more than once"),
        ({"id": "3"}, None),
    ]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<records><record><id>&lol3;</id></record></records>
"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE records [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<records><record><id>&xxe;</id></record></records>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE records SYSTEM "http://example.com/evil.dtd">
<records><record><id>1</id></record></records>
"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE, EXTERNAL_DTD])
def test_xml_entities_and_dtds_are_rejected(tmp_path, document):
    path = write_bytes(tmp_path, document, name="data.xml")

    message = rejection(path, layout=XML)

    assert message.startswith("XML entity declarations are not allowed")
    assert "line 2" in message
    with pytest.raises(FileRejected):
        sniff_header(path, layout=XML)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<records><record><id>1</b></record></records>", "unreadable XML: mismatched tag (line 1, column 25)"),
        (b"<records><record><id>1</id></record>", "unreadable XML: no element found (line 1, column 37)"),
        (b"  \n", "unreadable XML: no element found (line 2, column 1)"),
        (b"", "the file is empty: an XML document with a <records> root is expected"),
        (b"<rows><record/></rows>", "the root element is <rows>, expected <records> (line 1, column 1)"),
        (
            b"<records>\n<row><id>1</id></row></records>",
            "<records> may only hold <record> elements, found <row> (line 2, column 1)",
        ),
        (
            b"<records><record><id><b>1</b></id></record></records>",
            "record 1: the element <id> holds the element <b> (line 1, column 22); a column element may only hold text",
        ),
        (b"<records><record>loose<id>1</id></record></records>", "text 'loose' outside a column element"),
        (b"<records><record><id>caf\xe9</id></record></records>", "not valid UTF-8 at byte 24 (line 1)"),
    ],
)
def test_bad_xml_is_rejected(tmp_path, document, expected):
    path = write_bytes(tmp_path, document, name="data.xml")

    assert rejection(path, layout=XML).startswith(expected)


def test_xml_writer_refuses_characters_xml_cannot_hold():
    with pytest.raises(ValueError, match="U\\+0001"):
        write_rows(io.StringIO(), layout=XML, columns=["id"], rows=[["a\x01"]])
    with pytest.raises(ValueError, match="element name"):
        write_rows(io.StringIO(), layout=XML, columns=["unit price"], rows=[])


def test_xml_writer_leaves_out_rows_it_cannot_carry_and_writes_the_rest(tmp_path):
    rows = [["A-1", "ok"], ["A-2", "bad\x00"], ["A-3", "fine"], ["A-4\x1f", "\ufffe"]]
    left_out = []
    path = tmp_path / "data.xml"

    with open(path, "w", encoding="utf-8") as stream:
        written = write_rows(stream, layout=XML, columns=["id", "name"], rows=rows, left_out=left_out.append)

    assert written == 2
    assert [(u.number, list(u.cells), u.faults) for u in left_out] == [
        (2, ["A-2", "bad\x00"], [("name", "\x00")]),
        (4, ["A-4\x1f", "\ufffe"], [("id", "\x1f"), ("name", "\ufffe")]),
    ]
    result = scan(path, layout=XML)
    records = iter_records(path, layout=XML, header=result.header)
    assert [r.values for r in records] == [{"id": "A-1", "name": "ok"}, {"id": "A-3", "name": "fine"}]


def test_csv_writer_writes_control_characters_as_is():
    stream = io.StringIO()

    write_rows(stream, layout=CSV, columns=["id", "note"], rows=[["A-1", "a\x00b\x1fc"]], left_out=[].append)

    assert stream.getvalue() == "id,note\nA-1,a\x00b\x1fc\n"


def test_writer_refuses_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        write_rows(io.StringIO(), layout=CSV, columns=["a", "b"], rows=[["x"]])


def test_headerless_writer_writes_no_header():
    stream = io.StringIO()

    write_rows(stream, layout=Layout(format="csv", has_header=False), columns=["a", "b"], rows=[["1", ""]])

    assert stream.getvalue() == "1,\n"


def test_large_xml_file_is_scanned_with_flat_memory(tmp_path):
    rows = ([f"C{number}", f"Name {number} & Co", "12.50"] for number in range(200_000))
    path = tmp_path / "big.xml"
    with open(path, "w", encoding="utf-8") as stream:
        write_rows(stream, layout=XML, columns=["id", "name", "amount"], rows=rows)

    tracemalloc.start()
    try:
        result = scan(path, layout=XML)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.record_count == 200_000
    # The file is about 18 MB: reading it whole (or building a tree of it) would go far past this.
    assert path.stat().st_size > 15 * 1024 * 1024
    assert peak < 2 * 1024 * 1024
    records = list(iter_records(path, layout=XML, header=result.header, start=199_999))
    assert [record.values for record in records] == [{"id": "C199999", "name": "Name 199999 & Co", "amount": "12.50"}]


def test_large_csv_file_is_scanned_and_read_with_flat_memory(tmp_path):
    rows = ([f"C{number}", f"Name, {number}", "12.50"] for number in range(400_000))
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as stream:
        write_rows(stream, layout=CSV, columns=["id", "name", "amount"], rows=rows)

    tracemalloc.start()
    try:
        result = scan(path, layout=CSV, chunk_rows=1000, visit=lambda index, cells: None)
        records = list(iter_records(path, layout=CSV, header=result.header, start=399_999))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.record_count == 400_000
    assert [record.values for record in records] == [{"id": "C399999", "name": "Name, 399999", "amount": "12.50"}]
    # The file is about 11 MB: reading it whole would go far past this.
    assert path.stat().st_size > 10 * 1024 * 1024
    assert peak < 1024 * 1024


def test_scan_notes_where_chunks_start_so_a_worker_reads_from_there(tmp_path):
    path = tmp_path / "chunks.csv"
    path.write_bytes(codecs.BOM_UTF8 + 'id,name\r\n1,Ann\r\n2,"Bé\r\nline"\r\n\r\n3,Zoë\r\n4,Dan\r\n5,Eve\r\n'.encode())

    result = scan(path, layout=CSV, chunk_rows=2)

    assert (result.record_count, len(result.offsets)) == (5, 3)
    for start, offset in zip((0, 2, 4), result.offsets, strict=True):
        fresh = [r.values for r in iter_records(path, layout=CSV, header=result.header, start=start, stop=start + 2)]
        seeked = [
            r.values
            for r in iter_records(
                path, layout=CSV, header=result.header, start=start, stop=start + 2, start_byte=offset
            )
        ]
        assert seeked == fresh
        assert [
            r.index
            for r in iter_records(
                path, layout=CSV, header=result.header, start=start, stop=start + 2, start_byte=offset
            )
        ] == list(range(start, min(start + 2, 5)))
    assert fresh == [{"id": "5", "name": "Eve"}]
