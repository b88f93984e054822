import anndata as ad
import numpy as np
import pytest
from conftest import branching

from scfim import cli


def test_run_writes_h5ad_and_figures(tmp_path):
    a = ad.AnnData(branching(80, 6, 2).astype(np.float32))
    a.obs["arm"] = np.repeat(["a", "b", "c"], 80)
    src = tmp_path / "cells.h5ad"
    a.write_h5ad(src)
    out = tmp_path / "out"
    assert cli.main(["run", str(src), "--out", str(out), "--color", "arm"]) == 0
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
    assert cli.main(["run", str(src), "--out", str(out), "--no-curvature"]) == 0
    res = ad.read_h5ad(out / "c.h5ad")
    assert "diffusion_curvature" not in res.obs
    assert (out / "c_geometry.png").stat().st_size > 10_000


def test_run_missing_file(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.h5ad"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_command_is_an_error():
    with pytest.raises(SystemExit):
        cli.main([])
