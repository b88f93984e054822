"""The contract every tool follows: one rule for error types, logging, storage, keys."""

import io
import re

import numpy as np
import pytest
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, branching, snapshot

import scfim
from scfim import _keys
from scfim._docs import doc_params
from scfim._progress import progress_bar
from scfim.tl._store import read_fim_ensemble, read_land, read_operator

# tool -> (call(adata, **kwargs), shared parameters it takes)
TOOLS = {
    "diffusion": (scfim.tl.diffusion, {"random_state", "copy"}),
    "jsd_phate": (scfim.tl.jsd_phate, {"copy"}),
    "neural_fim": (scfim.tl.neural_fim, {"random_state", "copy", "progress"}),
    "neural_fim_transform": (
        lambda a, **kw: scfim.tl.neural_fim_transform(a, a, **kw),
        {"copy"},
    ),
    "diffusion_curvature": (scfim.tl.diffusion_curvature, {"random_state", "copy"}),
    "geodesic": (
        lambda a, **kw: scfim.tl.geodesic(a, 0, 1, **kw),
        {"random_state", "copy", "progress"},
    ),
    "fisher_rao_distances": (
        scfim.tl.fisher_rao_distances,
        {"random_state", "copy", "progress"},
    ),
    "land": (scfim.tl.land, {"random_state", "copy", "progress"}),
    "parameter_fim": (scfim.tl.parameter_fim, {"random_state", "copy", "progress"}),
}

BAD = [
    ("key_added", {"key_added": ""}, ValueError),
    ("key_added", {"key_added": "a/b"}, ValueError),
    ("key_added", {"key_added": 3}, TypeError),
    ("key_added", {"key_added": None}, TypeError),
    ("random_state", {"random_state": "a"}, TypeError),
    ("random_state", {"random_state": 1.5}, TypeError),
    ("random_state", {"random_state": True}, TypeError),
    ("random_state", {"random_state": -1}, ValueError),
    ("random_state", {"random_state": np.random.default_rng(0)}, TypeError),
    ("copy", {"copy": "yes"}, TypeError),
    ("copy", {"copy": 1}, TypeError),
    ("progress", {"progress": "no"}, TypeError),
]

# one numeric option per tool given as a string (TypeError) and out of range (ValueError)
NUMERIC = {
    "diffusion": ("n_neighbors", "15", 0),
    "jsd_phate": ("n_components", "2", 0),
    "neural_fim": ("epochs", "5", 0),
    "diffusion_curvature": ("t", "3", 0),
    "geodesic": ("n_points", "10", 2),
    "fisher_rao_distances": ("n_points", "10", 2),
    "land": ("mean_step", "0.2", -1.0),
    "parameter_fim": ("alpha", "1", 2.0),
}


def _cases():
    for tool, (_, shared) in TOOLS.items():
        for param, kwargs, err in BAD:
            if param == "key_added" or param in shared:
                yield pytest.param(tool, kwargs, err, id=f"{tool}-{param}={kwargs[param]!r}")
    for tool, (name, as_str, out_of_range) in NUMERIC.items():
        yield pytest.param(tool, {name: as_str}, TypeError, id=f"{tool}-{name}-str")
        yield pytest.param(tool, {name: out_of_range}, ValueError, id=f"{tool}-{name}-range")
    yield pytest.param("diffusion", {"kernel": 3}, TypeError, id="diffusion-kernel-type")
    yield pytest.param("diffusion", {"kernel": "box"}, ValueError, id="diffusion-kernel-value")


@pytest.fixture
def bare() -> AnnData:
    """Cells without any tool's prerequisites: arguments must be checked first."""
    a = AnnData(branching(20, 4).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    return a


@pytest.mark.parametrize("tool, kwargs, err", list(_cases()))
def test_one_rule_for_error_types(bare, tool, kwargs, err):
    """TypeError for a wrong type, ValueError for a wrong value, before anything is read."""
    call, _ = TOOLS[tool]
    snap = snapshot(bare)
    with pytest.raises(err):
        call(bare, **kwargs)
    assert_unchanged(bare, snap)


def test_missing_prerequisite_is_a_key_error(bare):
    for tool in ("jsd_phate", "neural_fim", "neural_fim_transform", "geodesic", "land"):
        call, _ = TOOLS[tool]
        kw = {"metric": "neural_fim"} if tool == "land" else {}
        with pytest.raises(KeyError):
            call(bare, **kw)
    with pytest.raises(KeyError):
        scfim.tl.diffusion(bare, use_rep="X_missing")


# ---------------------------------------------------------------------- logging
def test_tools_log_what_they_added_at_default_verbosity(small_adata, capsys):
    assert scfim.settings.verbosity == 2
    scfim.tl.diffusion(small_adata, t=5)
    scfim.tl.jsd_phate(small_adata)
    out = capsys.readouterr().out
    assert "computing the diffusion operator" in out
    assert "'diffusion_transitions' (adata.obsp)" in out
    assert "'X_jsd_phate' (adata.obsm)" in out and "'jsd_phate' (adata.uns)" in out
    assert " s)" in out  # elapsed time


def test_verbosity_silences_info_and_logfile_redirects(small_adata, capsys):
    old = scfim.settings.verbosity
    try:
        scfim.settings.verbosity = "warning"
        scfim.tl.diffusion(small_adata, t=5)
        assert capsys.readouterr().out == ""
        buf = io.StringIO()
        scfim.settings.verbosity = 2
        scfim.settings.logfile = buf
        scfim.tl.diffusion(small_adata, t=5, key_added="d2")
        assert "'d2_transitions' (adata.obsp)" in buf.getvalue()
        assert capsys.readouterr().out == ""
        with pytest.raises(ValueError):
            scfim.settings.verbosity = "loud"
        with pytest.raises(TypeError):
            scfim.settings.verbosity = 2.5
    finally:
        scfim.settings.verbosity = old
        scfim.settings.logfile = None


def test_progress_bar_respects_the_flag():
    assert progress_bar(range(3), progress=False).disable
    assert list(progress_bar(range(3), progress=False)) == [0, 1, 2]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_is_drawn_on_a_terminal_only():
    """Written to a file (a redirected script, a batch log) a bar would interleave its
    carriage returns with the log lines: it is disabled there, drawn on a terminal."""
    log, terminal = io.StringIO(), _Terminal()
    with progress_bar(total=3, file=log) as bar:
        assert bar.disable
        bar.update(3)
    assert log.getvalue() == ""
    with progress_bar(total=3, file=terminal) as bar:
        assert not bar.disable
        bar.update(3)
    assert "0/3" in terminal.getvalue()
    with progress_bar(total=3, file=terminal, progress=False) as bar:
        assert bar.disable


# ---------------------------------------------------------------------- keys and storage
def test_jsd_phate_key_added_drives_obsm_and_uns(small_adata):
    scfim.tl.diffusion(small_adata, t=5)
    scfim.tl.jsd_phate(small_adata)
    scfim.tl.jsd_phate(small_adata, key_added="emb")
    assert _keys.jsd_phate_keys("emb") == {"embedding": ("obsm", "X_emb"), "uns": ("uns", "emb")}
    np.testing.assert_array_equal(small_adata.obsm["X_emb"], small_adata.obsm["X_jsd_phate"])
    assert small_adata.uns["emb"]["stress"] == small_adata.uns["jsd_phate"]["stress"]


def test_stored_operator_and_fim_ensemble_round_trip(small_adata, tmp_path):
    a = small_adata
    scfim.tl.diffusion(a, t=5)
    scfim.tl.neural_fim(a, n_components=6, hidden=(8,), epochs=2, n_ensemble=2, progress=False)
    a.write_h5ad(tmp_path / "a.h5ad")
    b = read_h5ad(tmp_path / "a.h5ad")
    opa, opb = read_operator(a), read_operator(b)
    assert (opa.transitions != opb.transitions).nnz == 0 and opa.t == opb.t
    np.testing.assert_array_equal(opa.rows(np.arange(5)), opb.rows(np.arange(5)))
    models, info = read_fim_ensemble(b)
    assert len(models) == 2 and "params" in info
    X = np.asarray(a.X, dtype=np.float64)
    np.testing.assert_allclose(models[0].transform(X), a.obsm["X_neural_fim"], rtol=1e-5)
    assert models[0].network is not None


def test_land_mixture_round_trips_through_h5ad(tmp_path):
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, np.pi, 30)
    X = np.column_stack([np.cos(theta), np.sin(theta)]) + 0.05 * rng.normal(size=(30, 2))
    a = AnnData(X.astype(np.float32))
    scfim.tl.land(a, use_rep="X", max_iter=1, n_samples=20, n_steps=4, progress=False)
    a.write_h5ad(tmp_path / "l.h5ad")
    model = read_land(read_h5ad(tmp_path / "l.h5ad"))
    np.testing.assert_array_equal(model.means_, a.uns["land"]["means"])
    np.testing.assert_array_equal(model.weights_, a.uns["land"]["weights"])
    # the rebuilt metric is the stored one: the per-cell log-likelihood is reproduced up to
    # the tolerance of the Log maps (solved here from a cold start, in the fit warm-started)
    ll = model.score_samples(np.asarray(a.X, dtype=np.float64))
    np.testing.assert_allclose(ll, a.obs["land_log_likelihood"], rtol=1e-2, atol=2e-2)


def test_pl_reads_no_private_tl_module():
    import pathlib

    root = pathlib.Path(scfim.__file__).parent / "pl"
    for f in root.glob("*.py"):
        assert "tl._" not in f.read_text(), f


def test_doc_fragments_are_filled():
    @doc_params()
    def f():
        """Do.

        Parameters
        ----------
        {copy}
        other
            {not_a_fragment}
        """

    assert "Return a modified copy" in f.__doc__ and "{not_a_fragment}" in f.__doc__
    left = re.compile(r"^\s*\{(copy|use_rep|key_added|progress|random_state)\}\s*$", re.M)
    for name in scfim.tl.__all__:
        assert not left.search(getattr(scfim.tl, name).__doc__), name
