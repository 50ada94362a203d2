"""Tests of safe zip extraction."""

import hashlib
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from impex.exceptions import ArchiveError
from impex.services import archive
from impex.services.archive import ExtractedFile, extract_zip, is_zip

MIB = 1024 * 1024
LIMITS = {"max_entries": 10, "max_total_bytes": 10 * MIB, "max_file_bytes": 10 * MIB, "max_ratio": 100}


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write a deflated zip with the given entries."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def make_bomb(path: Path, *, megabytes: int) -> Path:
    """Write a zip holding one file of zeros, streamed so the test does not hold it in memory."""
    zeros = bytes(MIB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.csv", "w") as out:
        for _ in range(megabytes):
            out.write(zeros)
    return path


def lie_about_size(path: Path, *, size: int) -> None:
    """Patch the declared uncompressed size of the archive's only entry, in both headers."""
    data = bytearray(path.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def refusal(path: Path, dest: Path, **limits: int) -> str:
    """Return the message extract_zip refuses the archive with, checking that nothing was left behind."""
    with pytest.raises(ArchiveError) as excinfo:
        extract_zip(path, dest=dest, **{**LIMITS, **limits})
    assert not dest.exists() or not any(dest.iterdir())
    return str(excinfo.value)


def test_files_are_extracted_flattened_to_their_base_names(tmp_path):
    path = make_zip(
        tmp_path / "upload.zip",
        [("customers.tsv", b"customer_id\tname\n1\tAnn\n"), ("exports/2024/products.tsv", b"variant_id\n7\n")],
    )
    dest = tmp_path / "out"

    extracted = extract_zip(path, dest=dest, **LIMITS)

    assert extracted == [
        ExtractedFile(
            name="customers.tsv",
            path=dest / "customers.tsv",
            size=23,
            sha256=hashlib.sha256(b"customer_id\tname\n1\tAnn\n").hexdigest(),
        ),
        ExtractedFile(
            name="products.tsv",
            path=dest / "products.tsv",
            size=13,
            sha256=hashlib.sha256(b"variant_id\n7\n").hexdigest(),
        ),
    ]
    assert (dest / "customers.tsv").read_bytes() == b"customer_id\tname\n1\tAnn\n"
    assert sorted(child.name for child in dest.iterdir()) == ["customers.tsv", "products.tsv"]


def test_directories_and_macos_junk_are_skipped(tmp_path):
    path = make_zip(
        tmp_path / "upload.zip",
        [
            ("data/", b""),
            ("data/orders.csv", b"order_id\n1\n"),
            ("__MACOSX/data/._orders.csv", b"\x00\x05\x16\x07"),
            ("data/._orders.csv", b"\x00\x05\x16\x07"),
            ("data/.DS_Store", b"junk"),
        ],
    )

    extracted = extract_zip(path, dest=tmp_path / "out", **LIMITS)

    assert [item.name for item in extracted] == ["orders.csv"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../evil.csv", 'the entry "../evil.csv" has a path that leaves its folder ("..")'),
        ("data/../../evil.csv", "leaves its folder"),
        ("..\\evil.csv", "leaves its folder"),
        ("/abs.csv", 'the entry "/abs.csv" has an absolute path'),
        ("\\abs.csv", "has an absolute path"),
        ("C:/windows/evil.csv", "has an absolute path"),
    ],
)
def test_entries_that_leave_the_folder_are_refused_and_nothing_is_written(tmp_path, name, expected):
    path = make_zip(tmp_path / "upload.zip", [("good.csv", b"id\n1\n"), (name, b"id\n2\n")])

    assert expected in refusal(path, tmp_path / "out")
    assert not (tmp_path / "evil.csv").exists()


def test_symbolic_links_are_refused(tmp_path):
    link = zipfile.ZipInfo("link.csv")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "upload.zip", [(link, b"/etc/passwd")])

    assert refusal(path, tmp_path / "out") == 'the entry "link.csv" is a symbolic link'


def test_too_many_entries_are_refused(tmp_path):
    path = make_zip(tmp_path / "upload.zip", [(f"file{number}.csv", b"id\n") for number in range(11)])

    assert refusal(path, tmp_path / "out") == "the archive has 11 entries, more than the limit of 10"


def test_a_zip64_archive_of_too_many_entries_is_refused_before_its_directory_is_read(tmp_path):
    # Past 65,535 entries the end record says 0xFFFF and the count is in the ZIP64 end record: it is read from there,
    # so that a huge central directory is refused before ZipFile loads every entry (here it could not: it is broken).
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for number in range(0x10000 + 5):
            zf.writestr(zipfile.ZipInfo(str(number)), b"")
    data = bytearray(path.read_bytes())
    data[data.find(b"PK\x01\x02") : data.find(b"PK\x01\x02") + 4] = b"XX\x01\x02"
    path.write_bytes(bytes(data))

    assert refusal(path, tmp_path / "out", max_entries=1000) == (
        "the archive has 65,541 entries, more than the limit of 1,000"
    )


def test_a_zip_bomb_is_refused(tmp_path):
    path = make_bomb(tmp_path / "bomb.zip", megabytes=50)

    assert refusal(path, tmp_path / "out") == (
        'the entry "bomb.csv" is 52,428,800 bytes, more than the limit of 10,485,760'
    )
    assert "expands more than 100 times" in refusal(
        path, tmp_path / "out", max_file_bytes=100 * MIB, max_total_bytes=100 * MIB
    )


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    path = make_zip(tmp_path / "upload.zip", [("big.csv", bytes(range(256)) * 8192)])

    assert refusal(path, tmp_path / "out", max_file_bytes=MIB) == (
        'the entry "big.csv" is 2,097,152 bytes, more than the limit of 1,048,576'
    )


def test_files_adding_up_past_the_total_limit_are_refused(tmp_path):
    data = bytes(range(256)) * 2048
    path = make_zip(tmp_path / "upload.zip", [("a.csv", data), ("b.csv", data), ("c.csv", data)])

    assert "add up to more than the limit of 1,048,576 bytes" in refusal(path, tmp_path / "out", max_total_bytes=MIB)


def test_a_bomb_that_lies_about_its_size_is_refused_and_removed(tmp_path):
    path = make_bomb(tmp_path / "bomb.zip", megabytes=50)
    lie_about_size(path, size=1000)

    assert 'the entry "bomb.csv" cannot be read' in refusal(path, tmp_path / "out")


def test_sizes_are_enforced_while_streaming_when_the_declared_ones_pass(tmp_path, monkeypatch):
    # Stands in for any way the declared sizes could be trusted wrongly: only the byte count may stop the bomb.
    monkeypatch.setattr(archive, "_check_declared_size", lambda info, **limits: None)
    path = make_zip(tmp_path / "upload.zip", [("first.csv", b"id\n1\n")])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.csv", "w") as out:
        for _ in range(50):
            out.write(bytes(MIB))

    assert refusal(path, tmp_path / "out") == 'the entry "bomb.csv" expands more than 100 times (a zip bomb?)'
    assert refusal(path, tmp_path / "out", max_ratio=10_000, max_total_bytes=100 * MIB) == (
        'the entry "bomb.csv" expands past the limit of 10,485,760 bytes'
    )
    assert refusal(path, tmp_path / "out", max_ratio=10_000, max_file_bytes=100 * MIB) == (
        'the archive\'s files expand past the limit of 10,485,760 bytes (at the entry "bomb.csv")'
    )


def test_two_entries_with_the_same_base_name_are_refused(tmp_path):
    path = make_zip(tmp_path / "upload.zip", [("2024/orders.csv", b"id\n1\n"), ("2025/orders.csv", b"id\n2\n")])

    assert refusal(path, tmp_path / "out") == (
        'the entries "2024/orders.csv" and "2025/orders.csv" have the same file name "orders.csv"; rename one of them'
    )


def test_an_error_keeps_files_that_were_already_in_dest(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "orders.csv").write_bytes(b"mine")
    path = make_zip(tmp_path / "upload.zip", [("a.csv", b"id\n"), ("orders.csv", b"id\n")])

    with pytest.raises(ArchiveError, match='"orders.csv" already exists'):
        extract_zip(path, dest=dest, **LIMITS)

    assert sorted(child.name for child in dest.iterdir()) == ["orders.csv"]
    assert (dest / "orders.csv").read_bytes() == b"mine"


@pytest.mark.parametrize("data", [b"id,name\n1,Ann\n", b""])
def test_a_file_that_is_not_a_zip_is_refused(tmp_path, data):
    path = tmp_path / "upload.zip"
    path.write_bytes(data)

    assert not is_zip(path)
    assert refusal(path, tmp_path / "out").startswith("not a readable zip archive: ")


def test_a_truncated_zip_is_taken_for_a_zip_and_refused_as_damaged(tmp_path):
    whole = make_zip(tmp_path / "whole.zip", [("data.csv", b"id,name\n" * 1000)]).read_bytes()
    path = tmp_path / "upload.zip"
    path.write_bytes(whole[: len(whole) // 2])

    assert is_zip(path)
    assert refusal(path, tmp_path / "out").startswith("the zip archive is damaged or truncated")


def test_a_corrupt_entry_is_refused(tmp_path):
    path = make_zip(tmp_path / "upload.zip", [("data.csv", b"id,name\n" * 1000)])
    data = bytearray(path.read_bytes())
    data[40:60] = bytes(20)
    path.write_bytes(bytes(data))

    assert is_zip(path)
    assert 'the entry "data.csv" cannot be read' in refusal(path, tmp_path / "out")
