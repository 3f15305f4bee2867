"""Writing ``.h5ad`` files so that a full disk is a plain ``OSError``."""

from __future__ import annotations

import io
from pathlib import Path


def write(path: Path, adata) -> Path:
    """Write ``adata`` to ``path`` as ``AnnData.write_h5ad`` does, but through memory: HDF5 that fails to
    write a file (a full disk) leaves the process to crash at exit (SIGSEGV); a plain write of the image
    fails with an ``OSError`` and nothing else."""
    import anndata as ad
    import h5py

    adata.strings_to_categoricals()  # as AnnData.write_h5ad does
    image = io.BytesIO()
    with h5py.File(image, "w") as file:
        ad.io.write_elem(file, "/", adata)
    path.write_bytes(image.getbuffer())
    return path
