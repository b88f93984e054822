"""Out-of-core per-cell FIM: chunked evaluation of dask-backed inputs (optional dask)."""

import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
from anndata import AnnData

import scfim
from scfim.models.chunked import is_dask_array, map_cells

needs_dask = pytest.mark.skipif(
    find_spec("dask") is None or find_spec("distributed") is None,
    reason="dask is optional: pip install 'scfim[dask]'",
)

PER_CELL = ["fim_volume", "fim_log_volume", "fim_trace", "fim_log_volume_std", "fim_trace_std"]


@pytest.fixture(scope="module")
def fitted():
    """A small 2-member ensemble trained on Y-shaped data (input representation X)."""
    from conftest import branching

    ad = AnnData(branching(n_per_branch=80, n_dim=10).astype(np.float32))
    scfim.tl.diffusion(ad, n_neighbors=10)
    scfim.tl.neural_fim(ad, n_components=8, hidden=(16, 16), epochs=4, n_ensemble=2, verbose=False)
    return ad


def _new_cells(n: int = 5000, seed: int = 1) -> np.ndarray:
    from conftest import branching

    X = branching(n_per_branch=n // 3 + 1, n_dim=10, seed=seed)[:n]
    return X.astype(np.float32)


def _assert_same_fields(lazy: AnnData, ref: AnnData) -> None:
    """Cell by cell (same order), every field written by neural_fim_transform."""
    for k in PER_CELL:
        np.testing.assert_allclose(lazy.obs[k].to_numpy(), ref.obs[k].to_numpy(), rtol=1e-12)
    for k in ("X_neural_fim", "fim_eigenvalues"):
        np.testing.assert_allclose(np.asarray(lazy.obsm[k]), ref.obsm[k], rtol=1e-12, atol=0)


def _reference(fitted: AnnData, X: np.ndarray) -> AnnData:
    ref = AnnData(obsm={"X_in": X}, obs={"i": np.arange(len(X))})
    scfim.tl.neural_fim_transform(ref, fitted, use_rep="X_in")
    return ref


# ---------------------------------------------------------------------- map_cells
def test_in_memory_input_is_one_call():
    calls = []

    def fn(b):
        calls.append(b.shape[0])
        return {"s": b.sum(1)}

    X = np.arange(12.0).reshape(6, 2)
    out = map_cells(fn, X)
    assert calls == [6] and not is_dask_array(X)
    np.testing.assert_array_equal(out["s"], X.sum(1))
    with pytest.raises(ValueError, match="dask input"):
        map_cells(fn, X, store="unused.zarr")


@needs_dask
def test_dask_input_is_processed_chunk_by_chunk(tmp_path):
    import dask.array as da

    seen = []

    def fn(b):
        seen.append(b.shape[0])
        return {"s": b.sum(1), "sq": (b**2).astype(np.float32)}

    X = np.random.default_rng(0).normal(size=(1000, 3))
    Xd = da.from_array(X, chunks=(300, 2))  # irregular rows after splitting, split features
    out = map_cells(fn, Xd, chunk_size=128)
    assert max(seen) <= 128 and sum(seen[1:]) == 1000  # seen[0] is the one-cell probe
    np.testing.assert_array_equal(out["s"], X.sum(1))
    np.testing.assert_array_equal(out["sq"], (X**2).astype(np.float32))
    stored = map_cells(fn, Xd, store=tmp_path / "out.zarr")
    assert is_dask_array(stored["sq"]) and stored["sq"].dtype == np.float32
    np.testing.assert_array_equal(stored["sq"].compute(), (X**2).astype(np.float32))


@needs_dask
def test_map_cells_rejects_non_per_cell_functions():
    import dask.array as da

    Xd = da.ones((100, 2), chunks=(50, 2))
    with pytest.raises(ValueError, match="rows"):
        map_cells(lambda b: {"s": b[:1].sum(1)}, Xd)


def test_core_imports_and_transforms_without_dask(fitted, tmp_path):
    fitted.write_h5ad(tmp_path / "fit.h5ad")
    code = f"""
import sys
sys.modules["dask"] = None  # any import of dask now fails
import anndata, numpy as np, scfim
fit = anndata.read_h5ad({str(tmp_path / "fit.h5ad")!r})
new = anndata.AnnData(obsm={{"X_in": np.asarray(fit.X)}})
scfim.tl.neural_fim_transform(new, fit, use_rep="X_in")
assert np.allclose(new.obs["fim_trace"], fit.obs["fim_trace"], rtol=1e-5)
assert "dask" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}}
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
