"""Processes: whether one still runs, and ending this one cleanly on a termination signal."""

from __future__ import annotations

import os
import signal


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def exit_on_termination() -> None:
    """Make SIGTERM and SIGHUP raise ``SystemExit(128 + signal)``, as SIGINT raises ``KeyboardInterrupt``, so
    that ``finally`` blocks run: worker processes are ended, temporary folders removed, and a run being
    logged is closed (``kill``, a closed terminal, and a scheduler's stop would otherwise leave them)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit)


def _exit(signum: int, frame) -> None:
    raise SystemExit(128 + signum)
