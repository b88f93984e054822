"""Small-size version of ``benchmarks/bench_fim_validity.py`` (a) and (d), default settings.

Two independent fits of ``tl.neural_fim`` (default five-member ensembles; seeds 0 and 5, so
that no member is shared) on a small toy tree must agree cell by cell, and each must put
the branch points above the tips. The thresholds are the measured values at this size
with a margin (see the comments); the benchmark measures the full-size numbers.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import scfim


@pytest.fixture(scope="module")
def two_fits():
    ad = scfim.datasets.tree(n_obs=600, n_dim=20, n_branches=4, random_state=0)
    scfim.tl.diffusion(ad, use_rep="X", random_state=0)
    fits = []
    for seed in (0, 5):
        a = ad.copy()
        scfim.tl.neural_fim(a, epochs=40, random_state=seed, progress=False)
        fits.append(a)
    return fits


def test_per_cell_fim_is_reproducible_across_training_seeds(two_fits):
    a, b = two_fits
    assert a.uns["neural_fim"]["intrinsic_dim"] == b.uns["neural_fim"]["intrinsic_dim"] == 1
    # aligned, cell by cell (never sorted)
    r_lv = np.corrcoef(a.obs["fim_log_volume"], b.obs["fim_log_volume"])[0, 1]
    r_tr = np.corrcoef(a.obs["fim_trace"], b.obs["fim_trace"])[0, 1]
    # measured 0.987 (log-volume) and 0.989 (trace) with the earlier three-member default;
    # the thresholds are the targets of the full-size benchmark
    assert r_lv >= 0.95, r_lv
    assert r_tr >= 0.90, r_tr


def test_branch_points_above_tips_for_every_seed(two_fits):
    for ad in two_fits:
        bp = ad.obs["is_branch_point"].to_numpy()
        sel = bp | ad.obs["is_branch_tip"].to_numpy()
        for field in ("fim_log_volume", "fim_trace"):
            auc = roc_auc_score(bp[sel], ad.obs[field].to_numpy()[sel])
            assert auc >= 0.95, (field, auc)  # measured 0.977–1.0
