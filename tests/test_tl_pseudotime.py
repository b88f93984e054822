import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from conftest import assert_unchanged, snapshot
from scipy.stats import spearmanr

import scfim


@pytest.fixture(scope="module")
def sphere():
    rng = np.random.default_rng(0)
    U = rng.normal(size=(400, 3))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    a = AnnData(U.astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.obs["half"] = pd.Categorical(np.where(U[:, 2] > 0, "north", "south"))
    scfim.tl.diffusion(a, use_rep="X", random_state=0)
    scfim.tl.neural_fim(a, epochs=100, hidden=(64, 64), random_state=0, progress=False)
    return a, U


def test_pseudotime_follows_great_circle_distances(sphere):
    a, U = sphere
    a = a.copy()
    scfim.tl.fisher_rao_pseudotime(a, root="c0")
    pt = a.obs["fisher_rao_pseudotime"].to_numpy()
    truth = np.arccos(np.clip(U @ U[0], -1, 1))
    assert pt[0] == 0 and np.all(pt[1:] > 0)
    assert spearmanr(pt, truth).statistic > 0.95  # cell by cell (measured 0.988)
    assert list(a.obs["fisher_rao_pseudotime_root"].unique()) == ["c0"]
    assert list(a.uns["fisher_rao_pseudotime"]["roots"]) == ["c0"]


def test_roots_by_position_group_and_iroot(sphere):
    a, U = sphere
    a = a.copy()
    scfim.tl.fisher_rao_pseudotime(a, root=[0, "c5"], key_added="two")
    one = scfim.tl.fisher_rao_pseudotime(a, root=5, key_added="one", copy=True)
    both = a.obs["two"].to_numpy()
    assert np.all(both <= one.obs["one"].to_numpy() + 1e-12)
    assert set(a.obs["two_root"].unique()) == {"c0", "c5"}
    scfim.tl.fisher_rao_pseudotime(a, root={"half": "north"}, key_added="grp")
    north = U[:, 2] > 0
    assert np.all(a.obs["grp"].to_numpy()[north] == 0)
    assert np.all(a.obs["grp"].to_numpy()[~north] > 0)
    a.uns["iroot"] = 5
    scfim.tl.fisher_rao_pseudotime(a, key_added="ir")
    np.testing.assert_allclose(a.obs["ir"].to_numpy(), one.obs["one"].to_numpy())


def test_root_as_boolean_mask_equals_the_group(sphere):
    a = sphere[0].copy()
    north = (a.obs["half"] == "north").to_numpy()
    scfim.tl.fisher_rao_pseudotime(a, root=north, key_added="mask")
    scfim.tl.fisher_rao_pseudotime(a, root={"half": "north"}, key_added="grp")
    np.testing.assert_array_equal(a.obs["mask"].to_numpy(), a.obs["grp"].to_numpy())
    scfim.tl.fisher_rao_pseudotime(a, root=a.obs["half"] == "north", key_added="series")
    np.testing.assert_array_equal(a.obs["series"].to_numpy(), a.obs["grp"].to_numpy())


def test_group_name_given_as_a_cell_names_the_group_form(sphere):
    a = sphere[0].copy()
    with pytest.raises(KeyError, match=r"root=\{'half': 'north'\}"):
        scfim.tl.fisher_rao_pseudotime(a, root="north")


def test_subset_after_diffusion_is_a_clear_error(sphere):
    sub = sphere[0][:100].copy()  # obsp is subset with the cells, uns["diffusion"] is not
    snap = snapshot(sub)
    with pytest.raises(ValueError, match="rerun `scfim.tl.diffusion`"):
        scfim.tl.jsd_phate(sub)
    assert_unchanged(sub, snap)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"root": "nope"}, KeyError),
        ({"root": np.zeros(400, dtype=bool)}, ValueError),  # selects no cell
        ({"root": np.ones(10, dtype=bool)}, ValueError),  # not one entry per cell
        ({"root": 10_000}, IndexError),
        ({"root": 0.5}, TypeError),
        ({}, KeyError),  # no uns["iroot"]
        ({"root": {"missing": "a"}}, KeyError),
        ({"root": {"half": "east"}}, ValueError),
        ({"root": 0, "fim_key": "missing"}, KeyError),
        ({"root": 0, "density_weight": -1.0}, ValueError),
        ({"root": 0, "density_weight": "a"}, TypeError),
        ({"root": 0, "n_neighbors": 0}, ValueError),
        ({"root": 0, "n_landmarks": "3"}, TypeError),
        ({"root": 0, "key_added": ""}, ValueError),
        ({"root": 0, "random_state": "a"}, TypeError),
        ({"root": 0, "progress": "yes"}, TypeError),
    ],
)
def test_bad_input_leaves_adata_unchanged(sphere, kwargs, exc):
    a = sphere[0].copy()
    snap = snapshot(a)
    with pytest.raises(exc):
        scfim.tl.fisher_rao_pseudotime(a, **kwargs)
    assert_unchanged(a, snap)
