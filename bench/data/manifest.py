"""Dataset manifests: one TOML file per dataset or resource in the catalog's ``datasets/``.

A manifest says where a dataset comes from (files with URLs and sha256), how to read it (format and
keys), and what it is (license, citation, description). Schema::

    name = "norman_subset"
    kind = "dataset"                  # "dataset" (perturbation data) or "resource" (e.g. Gene Ontology)
    format = "perturbench"            # perturbench | gears | scperturb | h5ad | synthetic | ncbi_gene
    description = "..."
    license = "..."
    citation = "..."
    homepage = "..."                  # optional

    [keys]                            # optional, read by the loader of ``format``
    perturbation = "condition"        # obs column holding the perturbation label
    control = "control"               # its value for control cells
    cell_type = "cell_type"           # obs column of the cell type (absent: one cell type)
    gene_symbols = "gene_name"        # var column of gene symbols (absent: var_names)
    subset = { key = "dataset", value = "norman19" }   # keep only these cells

    [[files]]
    name = "perturbench_devel.h5ad"   # the file's name in the data store
    url = "https://..."               # optional: no URL means `bench data import` only
    sha256 = "..."                    # optional: absent means not known (recorded at fetch time)
    size = 1142678                    # optional, bytes
    archive_member = "x/y.h5ad"       # optional: the file is this member of the zip/tar.gz at url
    role = "data"                     # which file this is, for formats that read several
    mutable = false                   # true: the URL's content changes over time (NCBI daily files)

    [simulator]                       # format = "synthetic" only: keyword arguments of the simulator
    n_cells = 3000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import paths
from bench.core.did_you_mean import unknown
from bench.core.errors import DataError

FORMATS = ("perturbench", "gears", "scperturb", "h5ad", "synthetic", "ncbi_gene")
KINDS = ("dataset", "resource")


@dataclass(frozen=True)
class ManifestFile:
    name: str
    url: str = ""
    sha256: str = ""
    size: int | None = None
    archive_member: str = ""
    role: str = "data"
    mutable: bool = False


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    kind: str
    format: str
    description: str
    license: str
    citation: str
    homepage: str = ""
    keys: dict = field(default_factory=dict)
    files: tuple[ManifestFile, ...] = ()
    simulator: dict = field(default_factory=dict)
    path: Path | None = None

    def file(self, role: str = "data") -> ManifestFile:
        for entry in self.files:
            if entry.role == role:
                return entry
        if not self.files:
            raise DataError(f"manifest '{self.name}' has no file with role '{role}'; add one to {self.path}")
        roles = [entry.role for entry in self.files]
        raise DataError(f"manifest '{self.name}' has no file with role '{role}': its files are "
                        + ", ".join(f"--role {r} ({entry.name})" for r, entry in zip(roles, self.files))
                        + "; say which one this is")


def _require(table: dict, key: str, where: Path) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: missing or empty '{key}'; every manifest needs it")
    return value


def read_manifest(path: Path) -> DatasetManifest:
    """Parse and check one manifest file."""
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"cannot read dataset manifest {path}: {exc}") from None
    name = _require(table, "name", path)
    if name != path.stem:
        raise DataError(f"{path}: name '{name}' must match the file name '{path.stem}'")
    kind = table.get("kind", "dataset")
    if kind not in KINDS:
        raise DataError(f"{path}: kind '{kind}' is not one of {', '.join(KINDS)}")
    fmt = _require(table, "format", path)
    if fmt not in FORMATS:
        raise DataError(f"{path}: format '{fmt}' is not one of {', '.join(FORMATS)}")
    files = []
    for entry in table.get("files", []):
        extra = set(entry) - set(ManifestFile.__dataclass_fields__)
        if extra:
            raise DataError(f"{path}: unknown file field(s) {', '.join(sorted(extra))}")
        files.append(ManifestFile(**entry))
    if fmt != "synthetic" and not files:
        raise DataError(f"{path}: a '{fmt}' manifest needs at least one [[files]] entry")
    return DatasetManifest(
        name=name,
        kind=kind,
        format=fmt,
        description=_require(table, "description", path),
        license=_require(table, "license", path),
        citation=_require(table, "citation", path),
        homepage=table.get("homepage", ""),
        keys=dict(table.get("keys", {})),
        files=tuple(files),
        simulator=dict(table.get("simulator", {})),
        path=path,
    )


def all_manifests(directory: Path | None = None) -> dict[str, DatasetManifest]:
    """Every manifest under ``directory`` (default: the catalog's ``datasets/``), by name."""
    directory = directory or paths.datasets_dir()
    return {m.name: m for m in (read_manifest(p) for p in sorted(directory.glob("*.toml")))}


def find_manifest(name: str, directory: Path | None = None) -> DatasetManifest:
    manifests = all_manifests(directory)
    if name not in manifests:
        raise DataError(unknown("dataset", name, manifests, "see `bench data list`"))
    return manifests[name]
