"""Plotting conventions: ax/show/save/return_fig like sc.pl, readable colours and legends.

The AnnData objects carry hand-made results (pl only reads), so these tests run in
well under a second each.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

import scfim
from scfim.pl._utils import contrasting_colour, robust_limits

N = 120
RED_PALETTE = ["#d62728", "#dc143c", "#b22222", "#ff0000"]  # crimson among reds


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def figdir(tmp_path):
    """sc.settings.figdir pointed at a temporary folder (a property: no monkeypatch)."""
    old = sc.settings.figdir
    sc.settings.figdir = tmp_path / "figs"
    yield tmp_path / "figs"
    sc.settings.figdir = old


@pytest.fixture
def fake() -> AnnData:
    """Cells with the fields the pl functions read, filled by hand."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 3))
    a = AnnData(X.astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(N)]
    a.obsm["X_jsd_phate"] = X[:, :2] * 2.0
    a.obs["group"] = pd.Categorical(np.repeat(["a", "b", "c", "d"], N // 4))
    a.uns["group_colors"] = RED_PALETTE
    trace = rng.gamma(2.0, 1.0, size=N)
    trace[7] = 1e4  # one extreme cell
    a.obs["fim_trace"] = trace
    a.obs["fim_log_volume"] = rng.normal(size=N)
    a.obs["diffusion_curvature"] = rng.normal(scale=0.1, size=N)
    ev = np.sort(rng.gamma(2.0, 1.0, size=(N, 6)), axis=1)[:, ::-1]
    a.obsm["fim_eigenvalues"] = ev
    a.uns["diffusion"] = {"entropy": np.linspace(5, 1, 20), "t": 6}
    s, e = X[0], X[N - 1]
    path = s + np.linspace(0, 1, 16)[:, None] * (e - s)
    a.uns["geodesic"] = {
        "paths": path[None],
        "params": {"use_rep": "X"},
        "start": np.asarray(["c0"]),
        "end": np.asarray([f"c{N - 1}"]),
    }
    return a


CALLS = {
    "embedding": lambda a, **kw: scfim.pl.embedding(a, "X_jsd_phate", color="fim_trace", **kw),
    "diffusion_entropy": lambda a, **kw: scfim.pl.diffusion_entropy(a, **kw),
    "eigenspectrum": lambda a, **kw: scfim.pl.eigenspectrum(a, groupby="group", **kw),
    "geodesic": lambda a, **kw: scfim.pl.geodesic(a, "X_jsd_phate", color="group", **kw),
    "curvature": lambda a, **kw: scfim.pl.curvature(a, "X_jsd_phate", **kw),
}
WRITEKEY = {
    "embedding": "jsd_phate",
    "diffusion_entropy": "diffusion_entropy",
    "eigenspectrum": "eigenspectrum",
    "geodesic": "geodesic",
    "curvature": "diffusion_curvature",
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_plot_takes_ax_show_save_return_fig(fake, name, tmp_path, figdir, monkeypatch):
    call = CALLS[name]
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    # ax: draws into the given Axes and returns them
    fig, ax = plt.subplots()
    assert call(fake, ax=ax) is ax
    assert ax.has_data()
    # return_fig: the Figure that holds the Axes
    fig2, ax2 = plt.subplots()
    assert call(fake, ax=ax2, return_fig=True) is fig2
    assert isinstance(call(fake, return_fig=True), Figure)
    # show=True returns None, as in scanpy (and does not raise)
    assert call(fake, show=True) is None
    # save: an exact path, True and a scanpy-style suffix under sc.settings.figdir
    target = tmp_path / f"{name}.png"
    assert isinstance(call(fake, save=target), Axes)
    assert target.stat().st_size > 1000
    call(fake, save=True)
    call(fake, save="_suffix.pdf")
    saved = sorted(p.name for p in figdir.iterdir())
    assert len(saved) == 2
    assert any(p.endswith("_suffix.pdf") for p in saved)
    assert f"{WRITEKEY[name]}.{sc.settings.file_format_figs}" in saved
    with pytest.raises(TypeError, match="save"):
        call(fake, save=3)


def test_embedding_show_true_does_not_clash(fake, monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    assert scfim.pl.embedding(fake, "X_jsd_phate", color="group", show=True) is None
    assert shown == [1]


def _path_pixels(png: Path, colour) -> int:
    img = mpimg.imread(png)[..., :3]
    return int((np.linalg.norm(img - np.asarray(to_rgb(colour)), axis=-1) < 0.08).sum())


def test_geodesic_save_holds_the_path(fake, tmp_path, figdir):
    ax = scfim.pl.geodesic(
        fake, "X_jsd_phate", color="group", path_color="#ff00ff", save="_path.png"
    )
    colour = ax.lines[0].get_color()
    assert to_rgb(colour) == (1.0, 0.0, 1.0)
    png = figdir / "geodesic_path.png"
    assert png.exists()
    # the saved figure contains the path (drawn before the file was written) ...
    with_path = _path_pixels(png, colour)
    # ... and a figure of the cells alone does not have that colour
    scfim.pl.embedding(fake, "X_jsd_phate", color="group", save=tmp_path / "cells.png")
    assert with_path > 50
    assert _path_pixels(tmp_path / "cells.png", colour) < with_path / 10


def test_geodesic_contrasts_with_palette_and_has_legend(fake):
    ax = scfim.pl.geodesic(fake, "X_jsd_phate", color="group")
    colour = np.asarray(to_rgb(ax.lines[0].get_color()))
    pal = np.array([to_rgb(c) for c in fake.uns["group_colors"]])
    assert np.min(np.linalg.norm(pal - colour, axis=1)) > 0.5
    legends = [c for c in ax.get_children() if isinstance(c, matplotlib.legend.Legend)]
    texts = [[t.get_text() for t in lg.get_texts()] for lg in legends]
    assert ["start: c0 (a)", f"end: c{N - 1} (d)"] in texts
    # scanpy's categorical legend is kept (as the Axes' legend, so layouts make room for it)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"a", "b", "c", "d"}


def test_contrasting_colour_avoids_every_palette_colour():
    assert contrasting_colour(RED_PALETTE) == "black"
    dark = ["black", "#111111", "#202020"]
    choice = np.asarray(to_rgb(contrasting_colour(dark)))
    assert np.min(np.linalg.norm(np.array([to_rgb(c) for c in dark]) - choice, axis=1)) > 0.8


def test_embedding_robust_limits_and_labelled_colorbar(fake):
    ax = scfim.pl.embedding(fake, "X_jsd_phate", color="fim_trace")
    coll = ax.collections[0]
    v = fake.obs["fim_trace"].to_numpy()
    # one extreme cell (1e4) does not stretch the colour map over all others
    assert coll.norm.vmax == pytest.approx(np.percentile(v, 99))
    assert coll.norm.vmax < 100
    assert coll.colorbar.ax.get_ylabel() == "FIM trace (tr g)"
    ax = scfim.pl.embedding(fake, "X_jsd_phate", color="fim_log_volume", vmin=None, vmax=None)
    assert ax.collections[0].norm.vmax == pytest.approx(fake.obs["fim_log_volume"].max())
    assert ax.collections[0].colorbar.ax.get_ylabel() == "log relative FIM volume (0 = median cell)"
    ax = scfim.pl.embedding(fake, "X_jsd_phate", color="fim_trace", colorbar_label="tr g")
    assert ax.collections[0].colorbar.ax.get_ylabel() == "tr g"


def test_curvature_colorbar_names_the_quantity(fake):
    ax = scfim.pl.curvature(fake, "X_jsd_phate")
    assert ax.collections[0].colorbar.ax.get_ylabel() == "diffusion curvature (signed)"


def test_curvature_of_one_sign_fills_the_colour_bar(fake):
    """All-negative curvature: white stays at 0, the colour bar spans [min, 0] only."""
    a = fake.copy()
    c = -np.abs(a.obs["diffusion_curvature"].to_numpy()) - 1e-3
    a.obs["diffusion_curvature"] = c
    ax = scfim.pl.curvature(a, "X_jsd_phate")
    sc = ax.collections[0]
    vmax = max(abs(np.percentile(c, 1)), abs(np.percentile(c, 99)))
    assert sc.norm.vmin == pytest.approx(-vmax) and sc.norm.vmax == pytest.approx(vmax)
    assert sc.colorbar.ax.get_ylim() == pytest.approx((-vmax, 0.0))
    assert sc.colorbar.extend == "min"  # the cells beyond the 1st percentile
    ax = scfim.pl.curvature(a, "X_jsd_phate", vmax=2 * np.abs(c).max())
    assert ax.collections[0].colorbar.extend == "neither"


def test_eigenspectrum_integer_ticks_title_legend(fake):
    ax = scfim.pl.eigenspectrum(fake, groupby="group")
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 6]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_title() == "FIM eigenspectrum by group"
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "group (cells)"
    assert [t.get_text() for t in legend.get_texts()] == ["a (30)", "b (30)", "c (30)", "d (30)"]
    # lines take the stored categorical colours (the same as in the embedding plots)
    assert [to_rgb(line.get_color()) for line in ax.lines] == [to_rgb(c) for c in RED_PALETTE]
    # the legend sits outside the Axes, so it hides no line
    bbox = legend.get_window_extent()
    assert bbox.x0 >= ax.get_window_extent().x1 - 1


def test_robust_limits():
    v = np.r_[np.arange(100.0), 1e9, np.nan]
    lo, hi = robust_limits(v)
    assert lo == pytest.approx(np.percentile(v[np.isfinite(v)], 1))
    assert hi < 1e9
    assert robust_limits(np.full(5, np.nan)) == (None, None)
    assert robust_limits(np.ones(4)) == (1.0, 1.0)


def test_land_means_placed_when_fitted_on_leading_pcs():
    """tl.land(n_pcs=...) stores means in the first n_pcs columns of use_rep."""
    rng = np.random.default_rng(0)
    a = AnnData(rng.normal(size=(60, 3)).astype(np.float32))
    a.obsm["X_pca"] = rng.normal(size=(60, 12))
    a.obsm["X_jsd_phate"] = a.obsm["X_pca"][:, :2] * 3.0
    a.obs["land_log_likelihood"] = rng.normal(size=60)
    means = a.obsm["X_pca"][[0, 30], :4]  # two means at cells 0 and 30, 4 leading PCs
    a.uns["land"] = {"means": means, "params": {"use_rep": "X_pca", "n_pcs": 4}}
    ax = scfim.pl.land(a, "X_jsd_phate")
    placed = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(placed, a.obsm["X_jsd_phate"][[0, 30]], atol=1e-6)


def test_eigenspectrum_rejects_continuous_groupby(fake):
    a = fake.copy()
    a.obs["score"] = np.linspace(0, 1, a.n_obs)
    a.obs["count"] = np.arange(a.n_obs)
    for col in ("score", "count"):
        with pytest.raises(ValueError, match="categorical"):
            scfim.pl.eigenspectrum(a, groupby=col)
    a.obs["few"] = np.arange(a.n_obs) % 3  # integers with few values are groups
    ax = scfim.pl.eigenspectrum(a, groupby="few")
    assert len(ax.lines) == 3


def test_parameter_landscape_says_when_the_best_point_is_on_the_edge(fake):
    a = fake.copy()
    scfim.tl.parameter_fim(a, t_values=[1, 2], sigma_values=[0.5, 1.0], progress=False)
    edge = bool(a.uns["parameter_fim"]["best"]["on_boundary"])
    assert edge  # a 2 × 2 grid has only edge points
    ax = scfim.pl.parameter_landscape(a)
    assert "edge of the grid" in ax.get_legend().get_texts()[0].get_text()
    a.uns["parameter_fim"]["best"]["on_boundary"] = False
    ax = scfim.pl.parameter_landscape(a)
    assert ax.get_legend().get_texts()[0].get_text() == "largest volume"


def test_embedding_names_a_missing_colour(fake):
    with pytest.raises(KeyError, match="neither an obs column nor a gene.*group"):
        scfim.pl.embedding(fake, "X_jsd_phate", color="nope")
    a = fake.copy()
    a.raw = a
    a = a[:, :2].copy()  # a gene only in .raw is still a valid colour
    scfim.pl.embedding(a, "X_jsd_phate", color=str(fake.var_names[2]))


# --- scanpy conventions shared by every panel ------------------------------------------


def _land_fake(fake):
    a = fake.copy()
    rng = np.random.default_rng(1)
    a.obs["land_log_likelihood"] = rng.normal(size=a.n_obs)
    a.obs["land_component"] = pd.Categorical(np.arange(a.n_obs) % 2)
    a.obs["land_log_failed"] = np.arange(a.n_obs) == 3
    a.uns["land"] = {"means": np.asarray(a.X[[0, 60]], dtype=float), "params": {"use_rep": "X"}}
    return a


def test_panels_share_the_look_of_embedding(fake):
    """Same cells, same look: no frame and scanpy's marker size in every scatter panel."""
    ref = scfim.pl.embedding(fake, "X_jsd_phate", color="fim_trace")
    size = ref.collections[0].get_sizes()[0]
    assert size == pytest.approx(120000 / fake.n_obs)  # scanpy's default
    panels = {
        "geodesic": scfim.pl.geodesic(fake, "X_jsd_phate", color="group"),
        "curvature": scfim.pl.curvature(fake, "X_jsd_phate"),
        "land": scfim.pl.land(_land_fake(fake), "X_jsd_phate"),
    }
    for name, ax in panels.items():
        assert not ax.axison, f"pl.{name} draws a frame where pl.embedding draws none"
        assert ax.collections[0].get_sizes()[0] == pytest.approx(size), name
    # frameon=True gives scanpy's framed look, axes named after the basis
    ref = scfim.pl.embedding(fake, "X_jsd_phate", color="fim_trace", frameon=True)
    ax = scfim.pl.curvature(fake, "X_jsd_phate", frameon=True)
    assert ax.axison and ax.get_xlabel() == ref.get_xlabel() == "X_jsd_phate1"


def test_parameter_landscape_embeddings_have_the_panel_look(fake):
    a = fake.copy()
    scfim.tl.parameter_fim(
        a, t_values=[1, 2], sigma_values=[0.5, 1.0], embeddings_at="best", progress=False
    )
    fig = scfim.pl.parameter_landscape(a, embeddings_at="best", color="group")
    eax = next(x for x in fig.axes if x.get_title().startswith("1:"))
    assert not eax.axison
    # categorical colours are the stored palette, as in the other panels
    got = {tuple(np.round(c[:3], 3)) for c in eax.collections[0].get_facecolors()}
    assert got <= {tuple(np.round(to_rgb(c), 3)) for c in RED_PALETTE}


def test_eigenspectrum_legend_loc_none_hides_the_legend(fake):
    """legend_loc=None means no legend, as in scanpy (was drawn inside the Axes)."""
    for loc in (None, "none"):
        assert scfim.pl.eigenspectrum(fake, groupby="group", legend_loc=loc).get_legend() is None
    assert scfim.pl.eigenspectrum(fake, groupby="group").get_legend() is not None


def test_title_on_every_plot(fake):
    assert scfim.pl.curvature(fake, "X_jsd_phate", title="x").get_title() == "x"
    assert scfim.pl.diffusion_entropy(fake, title="y").get_title() == "y"
    assert scfim.pl.land(_land_fake(fake), "X_jsd_phate", title="z").get_title() == "z"
    assert scfim.pl.curvature(fake, "X_jsd_phate", title="").get_title() == ""
    # the default title does not repeat the colour-bar label
    ax = scfim.pl.curvature(fake, "X_jsd_phate")
    assert ax.get_title() == "diffusion curvature"


def test_size_is_scanpys_name_and_s_still_works(fake):
    a = _land_fake(fake)
    for call in (
        lambda **kw: scfim.pl.land(a, "X_jsd_phate", **kw),
        lambda **kw: scfim.pl.curvature(fake, "X_jsd_phate", **kw),
    ):
        assert call(size=7.0).collections[0].get_sizes()[0] == 7.0
        assert call(s=9.0).collections[0].get_sizes()[0] == 9.0
        with pytest.raises(TypeError, match="once"):
            call(size=7.0, s=9.0)
        with pytest.raises(ValueError, match="positive"):
            call(size=-1)


def test_geodesic_with_several_colours_draws_one_panel_each(fake):
    axes = scfim.pl.geodesic(fake, "X_jsd_phate", color=["group", "fim_trace"])
    assert isinstance(axes, list) and len(axes) == 2
    assert axes[0].figure is axes[1].figure
    for ax in axes:
        assert len(ax.lines) == 1  # the path, in every panel
        np.testing.assert_allclose(
            ax.lines[0].get_xydata()[0], fake.obsm["X_jsd_phate"][0], atol=1e-6
        )
    assert [ax.get_title() for ax in axes] == ["group", "fim_trace"]
    fig = scfim.pl.geodesic(fake, "X_jsd_phate", color=["group", "fim_trace"], return_fig=True)
    assert isinstance(fig, Figure)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="one panel"):
        scfim.pl.geodesic(fake, "X_jsd_phate", color=["group", "fim_trace"], ax=ax)


def test_geodesic_ends_legend_is_outside_the_data(fake):
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    scfim.pl.geodesic(fake, "X_jsd_phate", color="group", ax=ax)
    fig.canvas.draw()
    ends = next(
        c
        for c in ax.get_children()
        if isinstance(c, matplotlib.legend.Legend) and c is not ax.get_legend()
    )
    box, data = ends.get_window_extent(), ax.get_window_extent()
    assert box.y1 <= data.y0 + 1  # under the Axes, not over the cells
    assert fig.get_window_extent().y0 <= box.y0  # and inside the figure (the layout made room)


def test_curvature_draws_unscored_cells_in_grey_underneath(fake):
    """tl.diffusion_curvature(cells=...) leaves NaN: those cells are context, in na_color."""
    a = fake.copy()
    c = a.obs["diffusion_curvature"].to_numpy().copy()
    c[20:] = np.nan
    a.obs["diffusion_curvature"] = c
    ax = scfim.pl.curvature(a, "X_jsd_phate")
    grey, scored = ax.collections[0], ax.collections[1]
    np.testing.assert_allclose(grey.get_offsets(), a.obsm["X_jsd_phate"][20:])
    assert to_rgb(grey.get_facecolors()[0]) == to_rgb("lightgray")
    assert len(scored.get_offsets()) == 20 and np.isfinite(scored.get_array()).all()
    assert scored.colorbar is not None
    ax = scfim.pl.curvature(a, "X_jsd_phate", na_color="black")
    assert to_rgb(ax.collections[0].get_facecolors()[0]) == (0.0, 0.0, 0.0)


def test_land_legend_names_the_means_and_failed_cells(fake):
    a = _land_fake(fake)
    texts = [t.get_text() for t in scfim.pl.land(a, "X_jsd_phate").get_legend().get_texts()]
    assert texts == ["Log map failed", "component means (2)"]
    ax = scfim.pl.land(a, "X_jsd_phate", color="component")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["0", "1", "Log map failed", "component means (2)"]
    assert scfim.pl.land(a, "X_jsd_phate", legend_loc=None).get_legend() is None
    assert scfim.pl.land(a, "X_jsd_phate", legend_loc="upper right").get_legend()._loc == 1


def test_geodesic_dashes_the_segments_off_the_cells(fake):
    """A straight chord between two cells leaves the data: dashed there, and said."""
    a = fake.copy()
    X = np.asarray(a.X, dtype=float)
    path = np.asarray(a.uns["geodesic"]["paths"])[0]
    nearest = np.linalg.norm(path[:, None] - X[None], axis=-1).min(1)
    spacing = nearest.max() / 3  # a spacing that puts the chord's middle off the cells
    a.uns["geodesic"]["nn_distance"] = spacing
    off = nearest > 2 * spacing
    assert off.any() and not off.all()  # the chord ends on cells and leaves them
    ax = scfim.pl.geodesic(a, "X_jsd_phate", color="group")
    styles = [line.get_linestyle() for line in ax.lines]
    assert "--" in styles and "-" in styles
    drawn = sum(len(line.get_xydata()) - 1 for line in ax.lines)
    assert drawn == len(path) - 1  # every segment once
    dashed = sum(len(line.get_xydata()) - 1 for line in ax.lines if line.get_linestyle() == "--")
    assert dashed == int((off[:-1] | off[1:]).sum())
    texts = {
        t.get_text()
        for c in ax.get_children()
        if isinstance(c, matplotlib.legend.Legend)
        for t in c.get_texts()
    }
    assert "off the cells (> 2× their spacing)" in texts
    # without off-data points (or without nn_distance) the path is one solid line
    assert [line.get_linestyle() for line in scfim.pl.geodesic(fake).lines] == ["-"]
