"""Splits: generation from a seed, validation against a dataset, freezing to JSON, and lookup.

A split assigns perturbation conditions to train / validation / test (or excludes them), holds out a
share of control cells as the starting cells of counterfactual predictions, and for ``seen`` holds
out a share of the cells of every condition instead. Controls are always training conditions.
Frozen files live in the catalog's ``splits/<dataset>/<split>-seed<k>.json`` (committed for real
datasets) or, for other datasets, in the cache; a run records the file's sha256. A committed file is never
regenerated: one that cannot be read is refused. A cached one that cannot be read is made again, with a warning.

Seeds are replicates only when their test sets differ, so seed k redraws (up to ``ATTEMPTS`` times) while
its test set equals one of an earlier seed's (seeds 0 … k−1, for k < ``DISTINCT_SEEDS``); where the data
allows no other test set, the file names the earlier seeds it repeats (``same_test_as``). Each split's
random stream is keyed by its seed and its name (``name_key``), never by its position in ``split_settings.SPLITS``:
adding a split setting changes no existing split.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np

from bench.core import atomic, paths
from bench.core.conditions import CONTROL, genes_of, perturbed_genes
from bench.core.errors import BenchWarning, SplitError
from bench.evaluation.split_data import SplitData
from bench.evaluation.split_rules import SUBGROUPS, assign, label
from bench.evaluation.split_settings import check_name

FORMAT_VERSION = 2  # 2: streams keyed by the split's name, test sets distinct across seeds (same_test_as)
ATTEMPTS = 100
DISTINCT_SEEDS = 100  # seeds from here on are drawn without comparing with every earlier seed (quadratic cost)
QUERY_CONTROL_FRACTION = 0.2
SEEN_TEST_FRACTION = 0.2
SEEN_VAL_FRACTION = 0.1


@dataclass
class Split:
    """A frozen assignment. ``test``/``val`` map condition -> subgroup; ``cells`` lists obs names."""

    dataset: str
    dataset_sha256: str
    name: str
    seed: int
    train: list[str]
    val: dict[str, str]
    test: dict[str, str]
    excluded: list[str] = field(default_factory=list)
    cells: dict[str, list[str]] = field(default_factory=dict)
    same_test_as: list[int] = field(default_factory=list)  # earlier seeds with this test set (none: distinct)
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @property
    def test_set(self) -> tuple[str, ...]:
        """What a seed tests: its test conditions, and for ``seen`` its held-out test cells."""
        return (*sorted(self.test), *self.cells.get("test", []))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "split file") -> Split:
        try:
            split = cls(**json.loads(text))
        except (ValueError, TypeError) as exc:  # ValueError: not JSON, or not UTF-8
            raise SplitError(f"{where} is not a valid split file ({exc})") from None
        if split.format != FORMAT_VERSION:
            raise SplitError(f"{where} has format {split.format}, this bench reads {FORMAT_VERSION}")
        return split


def _query_controls(adata: ad.AnnData, rng: np.random.Generator) -> list[str]:
    """A seeded share of each cell type's control cells, held out as prediction starting cells."""
    obs = adata.obs
    held = []
    for cell_type in sorted(obs["cell_type"].unique()):
        names = np.sort(obs.index[(obs["condition"] == CONTROL) & (obs["cell_type"] == cell_type)].to_numpy())
        if len(names) < 2:
            raise SplitError(f"cell type '{cell_type}' has {len(names)} control cell(s); a split needs at least 2")
        size = min(len(names) - 1, max(1, round(QUERY_CONTROL_FRACTION * len(names))))
        held += rng.choice(names, size=size, replace=False).tolist()
    return sorted(held)


def _seen_split(adata: ad.AnnData, conditions: list[str], rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """Held-out test and validation cells of every condition with at least 3 cells (one stays in
    training, at least one goes to each of validation and test)."""
    obs = adata.obs
    test, val, cells = {}, {}, {"test": [], "val": []}
    for condition in conditions:
        names = np.sort(obs.index[obs["condition"] == condition].to_numpy())
        if len(names) < 3:
            continue
        n_held = min(len(names) - 1, max(2, round((SEEN_TEST_FRACTION + SEEN_VAL_FRACTION) * len(names))))
        n_test = min(n_held - 1, max(1, round(SEEN_TEST_FRACTION * len(names))))
        held = rng.choice(names, size=n_held, replace=False).tolist()
        test[condition], val[condition] = "seen", "seen"
        cells["test"] += held[:n_test]
        cells["val"] += held[n_test:]
    if not test:
        raise SplitError("split 'seen' cannot be made: no perturbation condition has 3 or more cells")
    return test, val, {key: sorted(names) for key, names in cells.items()}


def name_key(name: str) -> int:
    """A split setting's share of its random stream's seed, from its name alone."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def make(adata: ad.AnnData, name: str, seed: int, dataset: str, dataset_sha256: str) -> Split:
    """Generate a split of a canonical dataset, deterministically from ``seed``, with a test set distinct
    from every earlier seed's where the data allows it (module docstring)."""
    check_name(name)
    conditions = sorted(set(adata.obs["condition"].unique()) - {CONTROL})
    if not conditions:
        raise SplitError(f"dataset '{dataset}' has no perturbation conditions to split")
    earlier: dict[tuple[str, ...], list[int]] = {}
    for k in range(0 if seed < DISTINCT_SEEDS else seed, seed + 1):
        rng = np.random.default_rng([k, name_key(name)])
        draws = (_draw(adata, name, k, conditions, rng, dataset, dataset_sha256) for _ in range(ATTEMPTS))
        first = next(draws)
        split = first if first.test_set not in earlier else next(
            (draw for draw in draws if draw.test_set not in earlier), first)
        split.same_test_as = list(earlier.get(split.test_set, []))
        earlier.setdefault(split.test_set, []).append(k)
    return split


def _draw(adata: ad.AnnData, name: str, seed: int, conditions: list[str], rng: np.random.Generator,
          dataset: str, dataset_sha256: str) -> Split:
    """One draw of a split from ``rng``."""
    cells = {"query_control": _query_controls(adata, rng)}
    if name == "seen":
        test, val, held = _seen_split(adata, conditions, rng)
        return Split(dataset, dataset_sha256, name, seed, [CONTROL, *conditions], val, test, [], {**cells, **held})
    train, test, excluded = assign(name, conditions, rng)
    val, val_excluded = _carve_validation(name, train, test, rng)
    train = sorted(set(train) - set(val) - set(val_excluded))
    return Split(
        dataset, dataset_sha256, name, seed, [CONTROL, *train], val, test, sorted(excluded + val_excluded), cells
    )


def _carve_validation(
    name: str, train: list[str], test: dict[str, str], rng: np.random.Generator, attempts: int = 20
) -> tuple[dict[str, str], list[str]]:
    """Validation conditions carved from training by the same rule (GEARS' simulation rule when the
    setting's own rule finds nothing there), repaired so that every test condition keeps its subgroup;
    empty when no carve leaves a validation condition."""
    needed = perturbed_genes(test) & perturbed_genes(train)
    for rule in dict.fromkeys([name, "simulation"]):
        for _ in range(attempts):
            try:
                _, val, excluded = assign(rule, train, rng)
            except SplitError:
                break
            val, excluded = _keep_genes_seen(train, val, excluded, needed)
            if val:
                return val, excluded
    return {}, []


def _keep_genes_seen(
    train: list[str], val: dict[str, str], excluded: list[str], needed: set[str]
) -> tuple[dict[str, str], list[str]]:
    """Return carved conditions to training (singles first) until every ``needed`` gene is perturbed by
    a training condition again, then relabel validation by the final training set."""
    carved = set(val) | set(excluded)
    remaining = set(train) - carved
    for gene in sorted(needed):
        if gene not in perturbed_genes(remaining):
            back = min((c for c in carved if gene in genes_of(c)), key=lambda c: (len(genes_of(c)), c))
            remaining.add(back)
            carved.discard(back)
    seen = perturbed_genes(remaining)
    return {c: label(c, seen) for c in sorted(val) if c in carved}, sorted(c for c in excluded if c in carved)


def check(split: Split, adata: ad.AnnData) -> None:
    """Refuse a split that does not fit the dataset or breaks the split invariants."""
    where = f"split {split.dataset}/{split.name}-seed{split.seed}"
    present = set(adata.obs["condition"].unique())
    named = set(split.train) | set(split.val) | set(split.test) | set(split.excluded)
    if named - present:
        raise SplitError(f"{where} names condition {sorted(named - present)[0]!r}, absent from the dataset")
    if CONTROL not in split.train or CONTROL in split.test or CONTROL in split.val:
        raise SplitError(f"{where}: the control must be a training condition only")
    cell_level = split.name == "seen"
    if not cell_level and (set(split.train) & set(split.test) or set(split.train) & set(split.val)):
        raise SplitError(f"{where}: a test or validation condition is also a training condition")
    bad = set(split.test.values()) - set(SUBGROUPS)
    if bad:
        raise SplitError(f"{where}: unknown subgroup {sorted(bad)[0]!r}")
    missing = set(split.cells.get("query_control", [])) - set(adata.obs_names)
    for key in ("test", "val"):
        missing |= set(split.cells.get(key, [])) - set(adata.obs_names)
    if missing:
        raise SplitError(f"{where} names cell {sorted(missing)[0]!r}, absent from the dataset")


def frozen_path(dataset: str, name: str, seed: int, committed: bool) -> Path:
    base = paths.splits_dir() / dataset if committed else paths.cache_dir() / "splits" / dataset
    return base / f"{name}-seed{seed}.json"


def is_committed(path: Path) -> bool:
    """Whether ``path`` (from ``obtain``) is a split file committed with bench, not one made on this machine."""
    return path.parent.parent == paths.splits_dir()


def write(split: Split, path: Path) -> None:
    atomic.write_text(path, split.to_json())


def read(path: Path) -> Split:
    return Split.from_json(path.read_bytes(), where=str(path))


def _read_frozen(path: Path, committed: bool) -> Split | None:
    """The split in ``path``; a committed file that cannot be read is refused, a cached one is None (made again)."""
    try:
        return read(path)
    except SplitError as exc:
        if committed:
            raise SplitError(f"committed split {exc}; restore it (`git checkout` it, or reinstall bench): committed "
                             "splits are never regenerated") from None
        warnings.warn(f"cached split {exc}; recomputing it", BenchWarning)
        return None


# Split files this process has read and checked against a dataset, by path, the file's stat and the dataset: a
# command asks for one split several times (its DE genes, data ceiling, each model's run), and a file that
# changes is read again.
_CHECKED: dict[tuple, Split] = {}


def _checked_key(path: Path, found: os.stat_result, dataset_sha256: str, adata: ad.AnnData) -> tuple:
    return str(path), found.st_mtime_ns, found.st_size, found.st_ino, dataset_sha256, adata.n_obs


def obtain(adata: ad.AnnData, dataset: str, dataset_sha256: str, name: str, seed: int) -> tuple[Split, Path]:
    """The frozen split for (dataset, name, seed): the committed file, else the cached one, else a
    newly generated one written to the cache. A frozen file made for other data is refused. Each file is
    read once per process while it is unchanged (``_CHECKED``)."""
    check_name(name)
    for committed in (True, False):
        path = frozen_path(dataset, name, seed, committed)
        try:
            found = path.stat()
        except FileNotFoundError:
            continue
        key = _checked_key(path, found, dataset_sha256, adata)
        if key in _CHECKED:
            return _CHECKED[key], path
        split = _read_frozen(path, committed)
        if split is not None:
            if split.dataset_sha256 != dataset_sha256:
                raise SplitError(
                    f"{path} was frozen for dataset sha256 {split.dataset_sha256[:12]}, but the data has "
                    f"{dataset_sha256[:12]}; restore the original data"
                    + ("" if committed else " or delete the file to regenerate")
                )
            check(split, adata)
            _CHECKED[key] = split
            return split, path
    split = make(adata, name, seed, dataset, dataset_sha256)
    check(split, adata)
    path = frozen_path(dataset, name, seed, committed=False)
    write(split, path)
    _CHECKED[_checked_key(path, path.stat(), dataset_sha256, adata)] = split
    return split, path


def apply(split: Split, adata: ad.AnnData) -> SplitData:
    """The dataset's cells cut by ``split`` (views, no copies)."""
    return SplitData(split, adata)
