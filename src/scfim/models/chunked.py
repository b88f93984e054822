"""Per-cell computations over row chunks of a cell matrix that may not fit in memory.

A per-cell function ``fn`` maps a block of cells ``(b, d)`` to a dict of per-cell arrays
(each ``(b, ...)``), e.g. the FIM summaries of a trained neural FIM. :func:`map_cells`
applies it to an in-memory array in one call, or to a `dask <https://www.dask.org>`_ array
(e.g. ``obsm``/``X`` of an AnnData read lazily from ``.zarr``/``.h5ad``) chunk by chunk:
the input is never materialised, every chunk is read once and feeds all outputs, and the
chunks run on whatever scheduler dask is configured with (threads, or a
``dask.distributed`` cluster). The results are collected in memory, or written chunk by
chunk to a zarr store and returned as dask arrays reading from it, so that memory is
bounded by a few chunks whatever the number of cells.

dask (``pip install "scfim[dask]"``) is optional: it is imported only when a dask array
comes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHUNK_CELLS", "is_dask_array", "map_cells"]

CellFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]

#: Default largest row chunk (cells) of a dask input: bigger chunks are split to this. A
#: multiple of the model's inner batch (2048) so that chunked and in-memory results
#: go through the same batches.
CHUNK_CELLS = 65536


def is_dask_array(x: Any) -> bool:
    """True for a ``dask.array.Array`` (checked without importing dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "chunks") and hasattr(x, "dask")


def _row_chunks(n: int, chunks: tuple[int, ...], chunk_size: int) -> tuple[int, ...]:
    """The input's row chunks, each split to at most ``chunk_size``, regular when possible.

    Zarr needs regular chunks (all equal but the last), so irregular input chunks are
    replaced by regular ones of the largest size that does not exceed ``chunk_size``.
    """
    size = min(chunk_size, max(chunks))
    regular = all(c == chunks[0] for c in chunks[:-1]) and chunks[-1] <= chunks[0]
    if regular and chunks[0] <= chunk_size:
        return chunks
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def map_cells(
    fn: CellFn,
    X,
    *,
    chunk_size: int = CHUNK_CELLS,
    store: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Apply a per-cell function to all cells, chunk by chunk for a dask array.

    Parameters
    ----------
    fn
        ``fn(block) -> {name: (b, ...) array}`` for a float block of ``b`` cells; it must be
        per-cell (row ``i`` of every output depends on row ``i`` of the input only) and
        picklable when dask runs on a distributed cluster.
    X
        ``(n, d)`` NumPy array (``fn`` is called once, on all of it) or dask array (``fn``
        is called on each row chunk; the feature axis is gathered into one chunk).
    chunk_size
        Largest row chunk of a dask input; larger chunks are split.
    store
        Dask input only: path of a zarr store (a directory, created or overwritten) that
        receives one array per output, written chunk by chunk in the same pass that
        computes them. The outputs are then returned as dask arrays reading from it.
        Without a store, the outputs are gathered into NumPy arrays.
    progress
        Dask input on a local scheduler: show a tqdm bar over the chunks.

    Returns
    -------
    dict
        The outputs of ``fn`` for all cells, in order: NumPy arrays, or (with ``store``)
        dask arrays backed by the zarr store.
    """
    if not is_dask_array(X):
        if store is not None:
            raise ValueError("store= is only used for a dask input; got an in-memory array")
        return dict(fn(X))
    import dask
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(f"expected a 2-D (cells × features) dask array, got shape {X.shape}")
    n = int(X.shape[0])
    if n < 1:
        raise ValueError("no cells to process (the input has 0 rows)")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("the dask array has unknown chunk sizes; call .compute_chunk_sizes()")
    X = X.rechunk({0: _row_chunks(n, X.chunks[0], int(chunk_size)), 1: -1})
    # output names, trailing shapes and dtypes from one cell
    probe = {k: np.asarray(v) for k, v in fn(np.asarray(X[:1].compute())).items()}
    blocks = X.to_delayed().ravel()
    results = [dask.delayed(_call_block, pure=True)(fn, b) for b in blocks]
    outputs = {}
    for name, ref in probe.items():
        parts = [
            da.from_delayed(r[name], shape=(c, *ref.shape[1:]), dtype=ref.dtype)
            for r, c in zip(results, X.chunks[0], strict=True)
        ]
        outputs[name] = da.concatenate(parts, axis=0)
    with _progress_bar(progress):
        if store is None:
            computed = dask.compute(*outputs.values())
            return dict(zip(outputs, computed, strict=True))
        import zarr

        path = str(store)
        zarr.open_group(path, mode="w")  # a fresh store: no stale arrays of an earlier run
        writes = [
            da.to_zarr(arr, path, component=name, overwrite=True, compute=False)
            for name, arr in outputs.items()
        ]
        dask.compute(*writes)
    return {name: da.from_zarr(path, component=name) for name in outputs}


def _call_block(fn: CellFn, block: np.ndarray) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v) for k, v in fn(np.asarray(block)).items()}
    for k, v in out.items():
        if v.shape[0] != block.shape[0]:
            raise ValueError(
                f"the per-cell function returned {v.shape[0]} rows of {k!r} for a chunk of "
                f"{block.shape[0]} cells"
            )
    return out


class _progress_bar:
    """Context manager: a tqdm bar over dask tasks (local schedulers), or nothing."""

    def __init__(self, on: bool):
        self.cb = None
        if on:
            from tqdm.dask import TqdmCallback

            self.cb = TqdmCallback(desc="cells (chunks)", leave=False)

    def __enter__(self):
        if self.cb is not None:
            self.cb.__enter__()
        return self

    def __exit__(self, *exc):
        if self.cb is not None:
            self.cb.__exit__(*exc)
        return False
