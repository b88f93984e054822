"""Rebuild the diffusion operator stored by :func:`scfim.tl.diffusion`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ..geometry.diffusion import DiffusionOperator
from ._utils import require_key

__all__ = ["operator_from_adata"]


def operator_from_adata(adata: AnnData, key: str = "diffusion") -> DiffusionOperator:
    """The :class:`~scfim.geometry.diffusion.DiffusionOperator` written by ``tl.diffusion``.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion` ran.
    key
        Its ``key_added``.
    """
    info = require_key(adata, key, "diffusion")
    tkey = str(info["transitions_key"])
    if tkey not in adata.obsp:
        raise KeyError(f"adata.obsp[{tkey!r}] is missing; rerun `scfim.tl.diffusion`")
    P = sp.csr_matrix(adata.obsp[tkey])
    labels = info.get("landmark_labels")
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    return DiffusionOperator(
        P, np.asarray(info["degrees"], dtype=np.float64), int(info["t"]), labels
    )
