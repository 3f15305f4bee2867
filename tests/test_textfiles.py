"""The shared text-file helpers: compression told by the first bytes, whatever the name."""

from __future__ import annotations

import gzip
import zipfile

import pytest

from bench.core.errors import DataError
from bench.core.textfiles import compression, existing, one_line, open_text


def test_compression_is_told_by_the_first_bytes_not_the_name(tmp_path):
    gz, zipped, plain, empty_zip = (tmp_path / name for name in ("table.txt", "a.gz", "b.zip", "c.txt"))
    gz.write_bytes(gzip.compress(b"x\ty\n"))
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("member.txt", "x")
    plain.write_text("x\ty\n")
    zipfile.ZipFile(empty_zip, "w").close()
    assert [compression(p) for p in (gz, zipped, plain, empty_zip)] == ["gzip", "zip", None, "zip"]
    with open_text(gz) as handle:
        assert handle.read() == "x\ty\n"


def test_errors_are_one_line():
    assert one_line(ValueError("a\n  b\tc"), limit=3) == "a b"
    with pytest.raises(DataError, match="absent.txt does not exist; check the path"):
        existing("absent.txt", "table", DataError)
