"""Which source made a run: the git commit of the harness's package folder (``bench/``) and whether its
working tree differs from that commit (then a hash of the difference, so two runs from the same edits can
be told from runs of other edits). Only ``bench/`` counts: it holds the code and the catalog that make the
numbers; tests and the README do not.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from bench.core import paths

UNKNOWN = "unknown"  # not a git checkout (an installed package), or git is missing


def _git(*args: str, folder: Path) -> bytes | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.cache
def describe(folder: Path = paths.PACKAGE) -> dict[str, str]:
    """Tags ``git_commit``, ``git_dirty`` (``true``/``false``) and, when dirty, ``git_diff_sha256``: the
    sha256 of the tracked files' diff against the commit and of the untracked files (names and contents)."""
    commit = _git("rev-parse", "HEAD", folder=folder)
    if commit is None:
        return {"git_commit": UNKNOWN, "git_dirty": UNKNOWN}
    changed = _git("status", "--porcelain", "--", ".", folder=folder)
    state = {"git_commit": commit.decode().strip(), "git_dirty": "true" if changed else "false"}
    if changed:
        digest = hashlib.sha256(_git("diff", "HEAD", "--binary", "--", ".", folder=folder) or b"")
        untracked = (_git("ls-files", "--others", "--exclude-standard", "-z", "--", ".", folder=folder) or b"")
        for name in sorted(filter(None, untracked.split(b"\0"))):
            digest.update(name + b"\0" + (folder / name.decode()).read_bytes())
        state["git_diff_sha256"] = digest.hexdigest()
    return state


def is_dirty(folder: Path = paths.PACKAGE) -> bool:
    return describe(folder)["git_dirty"] == "true"
