"""Out-of-sample transforms: new cells in the training basis, FIM fields and JSD-PHATE."""

import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData
from conftest import branching

import scfim

matplotlib.use("Agg")

FIT = {"n_components": 6, "hidden": (16,), "epochs": 3, "progress": False}
FIELDS = ("fim_log_volume", "fim_trace")


def _pbmc_split():
    import scanpy as sc

    a = sc.datasets.pbmc68k_reduced()
    return a[:300].copy(), a[300:400].copy()


def _counts(n: int = 400, n_genes: int = 40, seed: int = 0) -> AnnData:
    rng = np.random.default_rng(seed)
    X = branching(n // 3 + 1, 5, seed=seed)[:n]
    W = rng.normal(size=(5, n_genes))
    lam = np.exp(0.4 * X @ W / np.sqrt(5))
    a = AnnData(rng.poisson(lam).astype(np.float32))
    a.var_names = [f"g{i}" for i in range(n_genes)]
    a.obs_names = [f"c{i}" for i in range(n)]
    return a


def _fields_from_rep(train: AnnData, X: np.ndarray) -> dict:
    """FIM fields of the stored model on a given input (passed explicitly as ``use_rep``)."""
    ref = AnnData(np.zeros((len(X), 1), dtype=np.float32), obsm={"X_ref": np.asarray(X)})
    scfim.tl.neural_fim_transform(ref, model_from=train, use_rep="X_ref")
    return {k: ref.obs[k].to_numpy() for k in FIELDS}


# ---------------------------------------------------------------- input basis
def test_transform_on_the_readme_data_uses_the_shared_pca():
    """pbmc68k_reduced: varm['PCs'] holds NaN rows, so the PCA cannot be replayed, but the
    new cells carry X_pca of the very same PCA (same loadings): that is used."""
    train, new = _pbmc_split()
    assert np.isnan(train.varm["PCs"]).any()
    scfim.tl.diffusion(train)
    scfim.tl.neural_fim(train, **FIT)
    scfim.tl.neural_fim_transform(new, model_from=train)
    ref = _fields_from_rep(train, new.obsm["X_pca"])
    for k in FIELDS:
        np.testing.assert_allclose(new.obs[k], ref[k], rtol=1e-5)
    assert "X_pca" in new.uns["neural_fim"]["params"]["transform_rep"]


def test_transform_without_x_pca_names_what_to_pass():
    train, new = _pbmc_split()
    scfim.tl.diffusion(train)
    scfim.tl.neural_fim(train, **FIT)
    del new.obsm["X_pca"]
    with pytest.raises(ValueError, match=r"NaN.*use_rep") as err:
        scfim.tl.neural_fim_transform(new, model_from=train)
    assert "varm['PCs']" in str(err.value)
    assert "neural_fim" not in new.uns


def test_pca_on_all_cells_then_subset():
    """sc.pp.pca on all cells, then split: the training subset's mean is not the PCA mean,
    yet the PCA is replayable (its projected centre is recovered from the training cells)."""
    import scanpy as sc

    a = _counts()
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=8)
    train, new = a[:300].copy(), a[300:].copy()
    scfim.tl.diffusion(train)
    scfim.tl.neural_fim(train, **FIT)
    ref = _fields_from_rep(train, new.obsm["X_pca"])
    with_pca = new.copy()
    scfim.tl.neural_fim_transform(with_pca, model_from=train)
    for k in FIELDS:
        np.testing.assert_allclose(with_pca.obs[k], ref[k], rtol=1e-5)
    # without obsm['X_pca'] (and a gene order of its own): projected, same result
    bare = AnnData(new.X[:, ::-1].copy())
    bare.var_names = new.var_names[::-1]
    scfim.tl.neural_fim_transform(bare, model_from=train)
    assert "projected" in bare.uns["neural_fim"]["params"]["transform_rep"]
    for k in FIELDS:
        np.testing.assert_allclose(bare.obs[k], ref[k], rtol=1e-4, atol=1e-6)


def test_x_pca_of_another_pca_is_not_taken_for_the_training_basis():
    """New cells with their own PCA: X_pca is in another basis, so the cells are projected on
    the training loadings instead."""
    import scanpy as sc

    a = _counts()
    sc.pp.pca(a, n_comps=8)
    train = a[:300].copy()
    new = a[300:].copy()
    sc.pp.pca(new, n_comps=8)  # a different PCA of its own
    scfim.tl.diffusion(train)
    scfim.tl.neural_fim(train, **FIT)
    scfim.tl.neural_fim_transform(new, model_from=train)
    assert "projected" in new.uns["neural_fim"]["params"]["transform_rep"]
    ref = _fields_from_rep(train, a.obsm["X_pca"][300:])
    for k in FIELDS:
        np.testing.assert_allclose(new.obs[k], ref[k], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- JSD-PHATE of new cells
def _split(n_landmarks):
    X = branching(100, 6, seed=4)
    rng = np.random.default_rng(0)
    hold = rng.choice(len(X), 60, replace=False)
    keep = np.setdiff1d(np.arange(len(X)), hold)
    train = AnnData(X[keep].astype(np.float32))
    new = AnnData(X[hold].astype(np.float32))
    scfim.tl.diffusion(train, n_neighbors=10, t=8, n_landmarks=n_landmarks)
    scfim.tl.jsd_phate(train)
    return train, new


@pytest.mark.parametrize("n_landmarks", [None, 80])
def test_jsd_phate_transform_reproduces_the_training_cells(n_landmarks):
    """Fitted cells passed as new cells: on their own coordinates; jittered by 1e-3 (their
    neighbourhoods and bandwidths then change a little): within a few % of the extent
    (measured: median 0.17 %, 90th percentile 0.43 %, max 1.6 % exact; 0.12 / 0.38 / 0.9 %
    with landmarks)."""
    train, _ = _split(n_landmarks)
    Y = train.obsm["X_jsd_phate"].astype(float)
    extent = np.ptp(Y, axis=0).max()
    again = AnnData(train.X.copy())
    scfim.tl.jsd_phate_transform(again, model_from=train)
    err = np.linalg.norm(again.obsm["X_jsd_phate"] - Y, axis=1)
    assert err.max() < 1e-4 * extent, err.max() / extent
    X = np.asarray(train.X, dtype=np.float64)
    jitter = AnnData(X + 1e-3 * np.random.default_rng(0).normal(size=X.shape))
    scfim.tl.jsd_phate_transform(jitter, model_from=train)
    err = np.linalg.norm(jitter.obsm["X_jsd_phate"] - Y, axis=1) / extent
    assert np.median(err) < 0.01 and np.quantile(err, 0.9) < 0.02 and err.max() < 0.05


@pytest.mark.parametrize("n_landmarks", [None, 80])
def test_new_cells_land_near_their_nearest_training_cells(n_landmarks):
    from scipy.spatial import cKDTree

    train, new = _split(n_landmarks)
    scfim.tl.jsd_phate_transform(new, model_from=train)
    Y, Yn = train.obsm["X_jsd_phate"].astype(float), new.obsm["X_jsd_phate"].astype(float)
    assert Yn.shape == (new.n_obs, 2) and np.isfinite(Yn).all()
    _, nn = cKDTree(np.asarray(train.X)).query(np.asarray(new.X), k=5)
    extent = np.ptp(Y, axis=0).max()
    near = np.linalg.norm(Yn - Y[nn].mean(1), axis=1)
    assert np.median(near) < 0.03 * extent and near.max() < 0.15 * extent
    # versus a random training cell: far closer
    rand = np.linalg.norm(Yn - Y[np.random.default_rng(1).integers(0, len(Y), len(Yn))], axis=1)
    assert np.median(near) < 0.2 * np.median(rand)
    ax = scfim.pl.embedding(new, "X_jsd_phate")
    assert ax is not None


def test_jsd_phate_transform_gaussian_kernel_and_bad_input():
    X = branching(60, 5, seed=2)
    train = AnnData(X[:150].astype(np.float32))
    scfim.tl.diffusion(train, kernel="gaussian", sigma=0.5, n_neighbors=10, t=5)
    scfim.tl.jsd_phate(train)
    again = AnnData(train.X.copy())
    scfim.tl.jsd_phate_transform(again, model_from=train)
    Y = train.obsm["X_jsd_phate"]
    assert np.abs(again.obsm["X_jsd_phate"] - Y).max() < 1e-4 * np.ptp(Y, axis=0).max()
    bad = AnnData(sp.csr_matrix(X[:5, :3]))
    with pytest.raises(ValueError, match="genes"):
        scfim.tl.jsd_phate_transform(bad, model_from=train)
    assert "X_jsd_phate" not in bad.obsm
    no_embedding = AnnData(X[:150].astype(np.float32))
    scfim.tl.diffusion(no_embedding, t=5)
    with pytest.raises(KeyError, match="jsd_phate"):
        scfim.tl.jsd_phate_transform(AnnData(X[150:].astype(np.float32)), model_from=no_embedding)
