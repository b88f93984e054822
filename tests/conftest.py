import numpy as np
import pytest
import torch
from anndata import AnnData

torch.set_num_threads(2)


def branching(n_per_branch: int = 150, n_dim: int = 10, seed: int = 0) -> np.ndarray:
    """A small Y-shaped point cloud: three noisy line segments from a common point."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(3, n_dim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    s = rng.uniform(0, 1, size=(3, n_per_branch))
    X = np.concatenate([s[b][:, None] * dirs[b] * 5 for b in range(3)])
    return X + 0.05 * rng.normal(size=X.shape)


@pytest.fixture
def small_adata() -> AnnData:
    X = branching()
    ad = AnnData(X.astype(np.float32))
    ad.obs_names = [f"c{i}" for i in range(ad.n_obs)]
    return ad


def snapshot(adata: AnnData) -> dict:
    """Everything a failed call must leave untouched."""
    return {
        "obs": adata.obs.copy(),
        "obsm": {k: np.array(v, copy=True) for k, v in adata.obsm.items()},
        "obsp": sorted(adata.obsp.keys()),
        "uns": sorted(adata.uns.keys()),
        "X": None if adata.X is None else (adata.X.copy()),
    }


def assert_unchanged(adata: AnnData, snap: dict) -> None:
    assert adata.obs.equals(snap["obs"])
    assert sorted(adata.obsm.keys()) == sorted(snap["obsm"].keys())
    for k, v in snap["obsm"].items():
        np.testing.assert_array_equal(np.asarray(adata.obsm[k]), v)
    assert sorted(adata.obsp.keys()) == snap["obsp"]
    assert sorted(adata.uns.keys()) == snap["uns"]
