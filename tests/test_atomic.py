"""Atomic replacement: concurrent writers of one file never share a temporary file; a failure keeps the old file."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.core import atomic

TEXTS = [f"writer {i}\n" + "x" * 200_000 for i in range(8)]


def test_each_replacement_has_its_own_temporary_file(tmp_path):
    path = tmp_path / "out.txt"
    with atomic.replacing(path) as first, atomic.replacing(path) as second:
        assert first != second
        assert first.parent == second.parent == tmp_path


def test_threads_replacing_one_file_leave_one_whole_version_and_no_temporary_files(tmp_path):
    path = tmp_path / "out.txt"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda text: atomic.write_text(path, text), TEXTS * 8))
    assert path.read_text() in TEXTS
    assert os.listdir(tmp_path) == ["out.txt"]


def test_processes_replacing_one_file_leave_one_whole_version_and_no_temporary_files(tmp_path):
    path = tmp_path / "out.txt"
    with multiprocessing.get_context().Pool(4) as pool:
        pool.starmap(atomic.write_text, [(path, text) for text in TEXTS * 4])
    assert path.read_text() in TEXTS
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic.replacing(path) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_replaced_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    atomic.write_text(path, "text")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
