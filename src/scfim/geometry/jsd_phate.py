"""JSD-PHATE: metric MDS of Jensen–Shannon distances between rows of Pᵗ, and new points.

The distance between cells i and j is ``sqrt(JS(Pᵗ(i,·), Pᵗ(j,·)))`` on the probability
rows (Fasina et al. 2023, Appendix A.3; PHATE, Moon et al. 2019, with the JS distance in
place of the potential distance). The states of the diffusion operator (cells, distinct
cells or landmarks) are embedded by SMACOF from classical MDS. With landmark clusters every
cell is placed at the average of the landmark coordinates weighted by its one-step
transitions to them (PHATE's out-of-sample rule); with collapsed duplicates every copy sits
at its state.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .diffusion import DiffusionOperator
from .divergences import pairwise_js
from .mds import interpolate, metric_mds, place_points

__all__ = ["jsd_phate_embedding", "jsd_phate_place"]


def jsd_phate_embedding(
    op: DiffusionOperator, n_components: int = 2, *, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, float]:
    """Embed a diffusion operator's states and place its cells.

    Parameters
    ----------
    op
        The diffusion operator.
    n_components
        Embedding dimension (below the number of states).
    max_iter
        SMACOF iteration limit.

    Returns
    -------
    Y_cells, Y_states, stress1
        ``(n_obs, n_components)`` cell coordinates, ``(n_states, n_components)`` state
        coordinates and the normalised stress-1 of the fit.
    """
    D = pairwise_js(op.landmark_rows())  # the rows are freed once their divergences are in
    np.sqrt(D, out=D)
    Y_states, s1 = metric_mds(D, n_components, max_iter=max_iter)
    if op.duplicates_collapsed:
        Y = Y_states[op.landmark_labels]
    elif op.is_landmark:
        Y = interpolate(op.cell_to_landmark(), Y_states)
    else:
        Y = Y_states
    return Y, Y_states, s1


def jsd_phate_place(
    op: DiffusionOperator,
    first_step: sp.spmatrix,
    Y_states: np.ndarray,
    *,
    matches: np.ndarray | None = None,
    max_iter: int = 300,
) -> np.ndarray:
    """Coordinates of new points in a fitted JSD-PHATE embedding.

    With landmark clusters the fitted cells were placed by their one-step transitions to
    the landmarks, and new points are placed by the same rule. Otherwise (the states are
    the cells, or the distinct cells) a new point minimises its stress between its √JS
    distances to the states (its row of Pᵗ against theirs) and its distances to their
    fitted coordinates (:func:`~scfim.geometry.mds.place_points`), started from the
    transition-weighted average and from the state nearest in JS (the lower stress wins).
    A new point identical in the input to a fitted cell (``matches``) is that cell's state,
    as copies are in the fit, and gets its coordinates.

    Parameters
    ----------
    op
        The fitted diffusion operator.
    first_step
        ``(m, n_obs)`` one-step transitions from the new points to the fitted cells
        (:func:`~scfim.geometry.diffusion.extend_transitions`).
    Y_states
        ``(n_states, k)`` fitted state coordinates (:func:`jsd_phate_embedding`).
    matches
        ``(m,)`` fitted cell identical to each new point, -1 for none (from
        :func:`~scfim.geometry.diffusion.extend_transitions`).
    max_iter
        Iteration limit of the placement.

    Returns
    -------
    ``(m, k)`` coordinates.
    """
    T = sp.csr_matrix(first_step)
    Y_states = np.asarray(Y_states, dtype=np.float64)
    if Y_states.shape[0] != op.n_states:
        raise ValueError(
            f"Y_states has {Y_states.shape[0]} rows, the operator {op.n_states} states"
        )
    T_states = T @ op.membership() if op.is_landmark else T
    init = interpolate(T_states, Y_states)
    if op.is_landmark and not op.duplicates_collapsed:
        return init
    D = np.sqrt(pairwise_js(op.rows_from(T), op.landmark_rows()))
    # the single-point stress has local minima where JS saturates: start both from the
    # weighted average and from the state nearest in JS, keep the lower stress
    starts = (init, Y_states[np.argmin(D, axis=1)])
    fits = [place_points(D, Y_states, init=y0, max_iter=max_iter) for y0 in starts]
    stress = [_point_stress(D, Y, Y_states) for Y in fits]
    Y = np.where((stress[1] < stress[0])[:, None], fits[1], fits[0])
    if matches is not None:
        matches = np.asarray(matches)
        hit = matches >= 0
        state = matches[hit]
        if op.duplicates_collapsed:
            state = op.landmark_labels[state]
        Y[hit] = Y_states[state]
    return Y


def _point_stress(D: np.ndarray, Y: np.ndarray, Y_ref: np.ndarray) -> np.ndarray:
    E = np.sqrt(((Y[:, None, :] - Y_ref[None]) ** 2).sum(-1))
    return ((E - D) ** 2).sum(1)
