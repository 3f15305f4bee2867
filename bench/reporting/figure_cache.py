"""Leaderboard figures kept in the cache by what they are drawn from, so that a leaderboard whose runs did not
change copies its PNGs instead of drawing them again (drawing is most of ``bench leaderboard``'s time).

The key is a hash of the figure's inputs (``canonical``), of the drawing code (``plots``, ``plot_styles``), of
matplotlib's version and of the model families the colours follow: the same key always means the same
bytes, since drawing is deterministic. A cached file that cannot be copied is drawn again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.core.registry import all_cards, family

FOLDER = "figures"


@functools.cache
def _drawing_code() -> bytes:
    import matplotlib

    from bench.reporting import plot_styles, plots

    sources = b"".join(Path(module.__file__).read_bytes() for module in (plots, plot_styles))
    return sources + matplotlib.__version__.encode()


def canonical(value: object) -> object:
    """``value`` as nested tuples of strings, numbers and None whose ``repr`` is the same whenever the value is:
    mappings and sets in sorted order (a dict read from the cache and one computed hold their items in
    different orders), arrays by the hash of their bytes, floats exactly. (Not pickle: its bytes depend on
    which equal strings are one object.)"""
    if isinstance(value, pd.DataFrame):
        if len(set(value.dtypes)) == 1 and value.dtypes.iloc[0].kind in "biufc":  # one block: hashed at once
            columns = (canonical(value.columns), canonical(value.to_numpy()))
        else:
            columns = tuple((str(c), str(value[c].dtype), canonical(value[c].to_numpy())) for c in value.columns)
        return ("DataFrame", canonical(value.index), columns)
    if isinstance(value, pd.Series | pd.Index):
        index = canonical(value.index) if isinstance(value, pd.Series) else None  # a RangeIndex is an Index
        return ("Series" if index else "Index", str(value.dtype), canonical(value.to_numpy()), index)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return ("array", value.dtype.str, value.shape, hashlib.sha256(np.ascontiguousarray(value)).hexdigest())
        return ("array", value.dtype.str, value.shape, tuple(canonical(v) for v in value.ravel().tolist()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple((f.name, canonical(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((canonical(k), canonical(v)) for k, v in value.items()), key=repr)))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted((canonical(v) for v in value), key=repr)))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(canonical(v) for v in value))
    if isinstance(value, float | np.floating):
        return ("float", float(value).hex())
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def key(inputs: tuple) -> str:
    cards = all_cards()
    families = sorted((name, family(name, cards)) for name in cards)
    digest = hashlib.sha256(_drawing_code())
    digest.update(repr(canonical((inputs, families))).encode())
    return digest.hexdigest()


def drawn(path: Path, inputs: tuple, draw: Callable[[Path], Path]) -> Path:
    """``path`` holding the figure ``draw(path)`` writes for ``inputs``: copied from the cache when drawn before."""
    cached = paths.cache_dir() / FOLDER / f"{key(inputs)}.png"
    if cached.exists():
        try:
            with atomic.replacing(path) as temporary:
                shutil.copyfile(cached, temporary)
            return path
        except OSError:
            pass
    draw(path)
    with atomic.replacing(cached) as temporary:
        shutil.copyfile(path, temporary)
    return path
