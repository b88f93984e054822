"""Out-of-core per-cell FIM: chunked evaluation of dask-backed inputs (optional dask)."""

import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch
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
    scfim.tl.neural_fim(ad, n_components=8, hidden=(16, 16), epochs=4, n_ensemble=2, progress=False)
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


# ---------------------------------------------------------------------- tl adapter
@needs_dask
def test_dask_obsm_equals_in_memory_cell_by_cell(fitted):
    import dask.array as da

    X = _new_cells()
    ref = _reference(fitted, X)
    lazy = AnnData(obsm={"X_in": da.from_array(X, chunks=(2048, 10))}, obs={"i": np.arange(len(X))})
    scfim.tl.neural_fim_transform(lazy, fitted, use_rep="X_in", chunk_size=4096)
    _assert_same_fields(lazy, ref)
    assert is_dask_array(lazy.obsm["X_in"])  # the input is left lazy


@needs_dask
def test_dask_X_in_the_training_genes(fitted):
    import dask.array as da

    X = _new_cells(3000)
    new = AnnData(da.from_array(X[:, ::-1].copy(), chunks=(1000, 5)))
    new.var_names = fitted.var_names[::-1]  # genes matched by name
    scfim.tl.neural_fim_transform(new, fitted)
    _assert_same_fields(new, _reference(fitted, X))


@needs_dask
def test_lazy_zarr_and_h5ad_with_store(fitted, tmp_path):
    from anndata.experimental import read_elem_lazy

    X = _new_cells(4000)
    ref = _reference(fitted, X)
    on_disk = AnnData(obsm={"X_in": X})
    on_disk.write_zarr(tmp_path / "cells.zarr")
    on_disk.write_h5ad(tmp_path / "cells.h5ad")
    import h5py
    import zarr

    for name, group in [
        ("zarr", zarr.open_group(tmp_path / "cells.zarr", mode="r")),
        ("h5ad", h5py.File(tmp_path / "cells.h5ad", "r")),
    ]:
        lazy_X = read_elem_lazy(group["obsm/X_in"], chunks=(1000, 10))
        assert is_dask_array(lazy_X)
        lazy = AnnData(obsm={"X_in": lazy_X}, obs={"i": np.arange(len(X))})
        store = tmp_path / f"fim_{name}.zarr"
        scfim.tl.neural_fim_transform(lazy, fitted, use_rep="X_in", store=str(store))
        assert is_dask_array(lazy.obsm["fim_eigenvalues"])  # backed by the store
        assert (store / "eigenvalues").exists()
        _assert_same_fields(lazy, ref)


@needs_dask
def test_projection_of_dask_genes_on_stored_pca():
    import dask.array as da
    import scanpy as sc

    rng = np.random.default_rng(0)
    genes = rng.poisson(2.0, size=(300, 40)).astype(np.float32)
    ad = AnnData(genes)
    ad.var_names = [f"g{i}" for i in range(40)]
    sc.pp.pca(ad, n_comps=8)
    scfim.tl.diffusion(ad)
    scfim.tl.neural_fim(ad, n_components=6, hidden=(16,), epochs=3, progress=False)
    mem = AnnData(genes.copy())
    mem.var_names = ad.var_names
    scfim.tl.neural_fim_transform(mem, model_from=ad)
    lazy = AnnData(da.from_array(genes, chunks=(64, 40)))
    lazy.var_names = ad.var_names
    scfim.tl.neural_fim_transform(lazy, model_from=ad)
    for k in ("fim_trace", "fim_log_volume"):
        np.testing.assert_allclose(lazy.obs[k], mem.obs[k], rtol=1e-12)


@needs_dask
def test_nan_in_a_chunk_leaves_adata_unchanged(fitted):
    import dask.array as da

    X = _new_cells(1000)
    X[700, 3] = np.nan
    lazy = AnnData(obsm={"X_in": da.from_array(X, chunks=(250, 10))})
    with pytest.raises(ValueError, match="NaN"):
        scfim.tl.neural_fim_transform(lazy, fitted, use_rep="X_in")
    assert list(lazy.obsm) == ["X_in"] and lazy.obs.shape[1] == 0 and not lazy.uns
    with pytest.raises(ValueError, match="store"):
        scfim.tl.neural_fim_transform(
            AnnData(obsm={"X_in": np.ones((3, 10))}), fitted, use_rep="X_in", store="x.zarr"
        )


@needs_dask
def test_local_cluster_with_two_workers(fitted, tmp_path):
    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream

    X = _new_cells(3000)
    ref = _reference(fitted, X)
    AnnData(obsm={"X_in": X}).write_zarr(tmp_path / "cells.zarr")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        lazy = AnnData(obsm={"X_in": da.from_zarr(tmp_path / "cells.zarr", component="obsm/X_in")})
        lazy.obsm["X_in"] = lazy.obsm["X_in"].rechunk((500, 10))
        with get_task_stream(client) as stream:
            scfim.tl.neural_fim_transform(
                lazy, fitted, use_rep="X_in", store=str(tmp_path / "fim.zarr")
            )
        assert len(client.scheduler_info()["workers"]) == 2
        ran = [t for t in stream.data if "_call_block" in str(t["key"])]
        assert len(ran) == 6  # one task per chunk of 500 cells, on the cluster's workers
    _assert_same_fields(lazy, ref)


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


@needs_dask
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_dask_transform_on_cuda_matches_cpu(fitted):
    import dask.array as da

    X = _new_cells(3000)
    ref = _reference(fitted, X)
    lazy = AnnData(obsm={"X_in": da.from_array(X, chunks=(1024, 10))})
    scfim.tl.neural_fim_transform(lazy, fitted, use_rep="X_in", device="cuda")
    for k in ("fim_trace", "fim_log_volume"):  # float32 GEMMs differ between devices
        r = ref.obs[k].to_numpy()
        np.testing.assert_allclose(lazy.obs[k], r, rtol=1e-4, atol=1e-4 * np.abs(r).max())
