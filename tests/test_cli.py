import argparse

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import branching

import scfim
from scfim import cli


def test_run_writes_h5ad_and_figures(tmp_path):
    a = ad.AnnData(branching(80, 6, 2).astype(np.float32))
    a.obs["arm"] = np.repeat(["a", "b", "c"], 80)
    src = tmp_path / "cells.h5ad"
    a.write_h5ad(src)
    out = tmp_path / "out"
    fast = ["--epochs", "30", "--n-ensemble", "2"]  # the wiring, not the training
    assert cli.main(["run", str(src), "--out", str(out), "--color", "arm", *fast]) == 0
    res = ad.read_h5ad(out / "cells.h5ad")
    for key in ("X_jsd_phate", "X_neural_fim", "fim_eigenvalues"):
        assert key in res.obsm
    assert np.isfinite(res.obs["fim_log_volume"]).all()
    assert (out / "cells_jsd_phate.png").stat().st_size > 10_000
    assert (out / "cells_fim.png").stat().st_size > 10_000
    assert (out / "cells_geometry.png").stat().st_size > 10_000
    assert np.isfinite(res.obs["diffusion_curvature"]).all()
    assert np.asarray(res.uns["geodesic"]["paths"]).shape[0] == 1
    assert float(np.ravel(res.uns["geodesic"]["lengths"])[0]) > 0


def test_run_without_curvature(tmp_path):
    a = ad.AnnData(branching(60, 6, 3).astype(np.float32))
    src = tmp_path / "c.h5ad"
    a.write_h5ad(src)
    out = tmp_path / "out"
    fast = ["--epochs", "30", "--n-ensemble", "1"]
    assert cli.main(["run", str(src), "--out", str(out), "--no-curvature", *fast]) == 0
    res = ad.read_h5ad(out / "c.h5ad")
    assert "diffusion_curvature" not in res.obs
    assert (out / "c_geometry.png").stat().st_size > 10_000


def test_run_missing_file(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.h5ad"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_command_is_an_error():
    with pytest.raises(SystemExit):
        cli.main([])


# --- argument checks happen before any computation, errors without tracebacks ---------


@pytest.fixture
def cells_file(tmp_path):
    a = ad.AnnData(branching(30, 5, 4).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.obs["arm"] = pd.Categorical(np.repeat(["a", "b", "c"], 30))
    src = tmp_path / "cells.h5ad"
    a.write_h5ad(src)
    return src


@pytest.fixture
def no_pipeline(monkeypatch):
    """Fail the test if the pipeline starts: validation must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("the pipeline ran before the arguments were checked")

    monkeypatch.setattr(scfim.tl, "diffusion", boom)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--color", "celltype"], "--color 'celltype' is neither an obs column nor a gene"),
        (["--use-rep", "X_umap"], "--use-rep 'X_umap' is not in obsm"),
        (["--n-neighbors", "500"], "--n-neighbors 500 must be below the 90 cells"),
        (["--start", "c0"], "--start and --end go together"),
        (["--start", "c0", "--end", "zz"], "cell(s) 'zz' not in obs_names"),
        (["--start-group", "a", "--end-group", "b"], "need --groupby (or --color)"),
        (["--color", "arm", "--start-group", "a", "--end-group", "q"], "group 'q' not in"),
        (["--groupby", "nope", "--start-group", "a", "--end-group", "b"], "not an obs column"),
        (["--start", "c0", "--end", "c1", "--start-group", "a"], "either as cells"),
    ],
)
def test_run_checks_arguments_first(cells_file, tmp_path, capsys, no_pipeline, extra, message):
    out = tmp_path / "out"
    assert cli.main(["run", str(cells_file), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written


def test_run_lists_obs_columns_in_color_error(cells_file, capsys, no_pipeline):
    assert cli.main(["run", str(cells_file), "--color", "celltype"]) == 2
    assert "obs columns: arm" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n-neighbors", "1"], "must be at least 2"),
        (["--t", "zero"], "expected 'auto' or a positive integer"),
        (["--t", "0"], "must be 'auto' or at least 1"),
        (["--epochs", "x"], "expected an integer"),
        (["--n-components", "1"], "must be at least 2"),
    ],
)
def test_run_rejects_bad_values_with_usage(cells_file, capsys, no_pipeline, extra, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(cells_file), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_run_never_overwrites_its_input(cells_file, capsys, no_pipeline):
    before = cells_file.read_bytes()
    assert cli.main(["run", str(cells_file), "--out", str(cells_file.parent)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input file" in err and "Traceback" not in err
    assert cells_file.read_bytes() == before


def test_run_unreadable_file(tmp_path, capsys, no_pipeline):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not an h5ad file")
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err


def test_tool_errors_are_reported_without_traceback(tmp_path, capsys):
    a = ad.AnnData(np.ones((40, 3), dtype=np.float32))  # constant data: tl.diffusion refuses
    src = tmp_path / "flat.h5ad"
    a.write_h5ad(src)
    assert cli.main(["run", str(src), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "scfim run: error:" in err and "Traceback" not in err
    assert "--traceback" in err


def test_help_documents_every_argument_without_rst(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"scfim {name} {action.option_strings or action.dest} has no help"
        text = p.format_help()
        assert "``" not in text and ":func:" not in text
    for name in ("run", "demo"):
        text = sub.choices[name].format_help()
        for flag in ("--n-neighbors", "--t", "--n-components", "--epochs", "--random-state"):
            assert flag in text
    assert "``" not in parser.format_help()
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("scfim ")


def test_run_with_parameters_and_group_ends(cells_file, tmp_path):
    out = tmp_path / "out"
    argv = [
        "run",
        str(cells_file),
        "--out",
        str(out),
        "--color",
        "arm",
        "--start-group",
        "a",
        "--end-group",
        "c",
        "--n-neighbors",
        "8",
        "--t",
        "5",
        "--n-components",
        "3",
        "--epochs",
        "3",
        "--n-ensemble",
        "2",
        "--random-state",
        "1",
        "--no-curvature",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    res = ad.read_h5ad(out / "cells.h5ad")
    assert res.uns["diffusion"]["params"]["n_neighbors"] == 8
    assert int(res.uns["diffusion"]["t"]) == 5
    assert res.obsm["X_jsd_phate"].shape == (90, 3)
    assert np.asarray(res.uns["neural_fim"]["val_loss"]["0"]).size <= 3
    assert len(res.uns["neural_fim"]["val_loss"]) == 2
    start, end = (
        str(np.ravel(res.uns["geodesic"]["start"])[0]),
        str(np.ravel(res.uns["geodesic"]["end"])[0]),
    )
    assert res.obs.loc[start, "arm"] == "a" and res.obs.loc[end, "arm"] == "c"
    # by name
    assert (
        cli.main(
            [
                "run",
                str(cells_file),
                "--out",
                str(out),
                "--start",
                "c3",
                "--end",
                "c80",
                "--epochs",
                "2",
                "--n-ensemble",
                "1",
                "--no-curvature",
                "--quiet",
            ]
        )
        == 0
    )
    res = ad.read_h5ad(out / "cells.h5ad")
    assert list(np.ravel(res.uns["geodesic"]["start"])) == ["c3"]
    assert list(np.ravel(res.uns["geodesic"]["end"])) == ["c80"]


def test_demo_builds_its_own_graph_on_pbmc_without_a_warning(tmp_path, monkeypatch):
    """pbmc68k_reduced ships a 10-NN graph; the demo's 30-NN diffusion must not warn."""
    import warnings

    calls = {}

    def record(adata, out, name, *, options, **kwargs):
        calls[name] = (adata, options)

    monkeypatch.setattr(cli, "run_pipeline", record)
    assert cli.main(["demo", "--out", str(tmp_path), "--n-tree", "60"]) == 0
    pbmc, options = calls["pbmc68k_reduced"]
    assert options.neighbors_key is None and calls["tree"][1].neighbors_key == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scfim.tl.diffusion(pbmc, neighbors_key=options.neighbors_key, n_neighbors=15)
    assert pbmc.uns["diffusion"]["params"]["neighbors_key"] is None
    assert options.n_neighbors is None  # tl.diffusion's default


def test_help_names_the_default_k_of_tl_diffusion(capsys):
    from scfim.tl.diffusion import DEFAULT_N_NEIGHBORS

    assert cli.build_parser().parse_args(["demo"]).n_neighbors is None
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: scfim.tl.diffusion's, {DEFAULT_N_NEIGHBORS}," in text


def test_pipeline_defaults_are_the_api_defaults(capsys):
    """Without --epochs/--n-ensemble the CLI trains what scfim.tl.neural_fim trains."""
    import inspect

    args = cli.build_parser().parse_args(["demo"])
    opt = cli._options(args)
    assert opt.epochs is None and opt.n_ensemble is None
    api = inspect.signature(scfim.tl.neural_fim).parameters
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {api['epochs'].default}, as scfim.tl.neural_fim" in text
    assert f"default: {api['n_ensemble'].default}, as scfim.tl.neural_fim" in text


HEAVY = ("torch", "scanpy", "anndata", "matplotlib", "sklearn")


def _modules_after(code: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running ``code``."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split("\n")[-2].split())


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["demo", "--help"]])
def test_help_and_version_answer_without_the_heavy_imports(argv):
    """`scfim --help` / `--version` no longer import PyTorch, scanpy, AnnData, matplotlib."""
    code = (
        "import contextlib, io\nfrom scfim.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})"
    )
    assert not _modules_after(code) & set(HEAVY)


def test_import_scfim_is_light_and_loads_submodules_on_use():
    assert not _modules_after("import scfim") & set(HEAVY)
    # scfim.pl reads and draws: matplotlib is imported when a plot is drawn
    assert "matplotlib" not in _modules_after("import scfim.pl")
    loaded = _modules_after("import scfim\nscfim.tl.diffusion")
    assert "torch" in loaded  # attribute access imports the submodule
    assert {"datasets", "pl", "tl", "settings"} <= set(dir(scfim))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scfim.nope  # noqa: B018


def test_help_defaults_read_without_importing_torch_equal_the_signature():
    import inspect

    api = inspect.signature(scfim.tl.neural_fim).parameters
    for name in ("epochs", "n_ensemble"):
        assert cli._api_default(name) == api[name].default


def test_python_dash_m_scfim_is_the_command_line():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "scfim", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(scfim.__version__)
