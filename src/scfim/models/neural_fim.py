"""Neural FIM: an MLP onto the probability simplex and its Fisher information metric.

The network ``φ: R^d → Δ^{m-1}`` (softmax output, ``m = n_components``) is trained so that
the Jensen–Shannon *distance* between its outputs matches the Jensen–Shannon distance
between the rows of the diffusion operator ``Pᵗ`` (Fasina et al., ICML 2023, Eq. 6)::

    L = mean over pairs (x, y) of ( √JS(φ(x), φ(y)) − √JS(Pᵗ(x,·), Pᵗ(y,·)) )²

Each point ``x`` is then a categorical distribution ``φ(x)`` and carries the Fisher
information metric of that statistical model,

    g(x) = Σ_k φ_k(x) ∇log φ_k(x) ∇log φ_k(x)ᵀ = J_φᵀ diag(1/φ) J_φ        (d × d).

**Fisher information, not Eq. 5.** The paper's Eq. 5 writes ``Σ_k J_k J_kᵀ φ_k`` (the
Jacobian of φ weighted by φ), which is not the Fisher information of φ; the issue asks
for the true Fisher information (Eq. 2 applied to the categorical distribution φ(x)), and
this is what is computed here. It is the pull-back of the Fisher–Rao metric of the simplex
and the metric whose second-order expansion is the JS divergence the network is trained on
(``JS(φ(x), φ(x + dx)) ≈ ⅛ dxᵀ g(x) dx``), so lengths measured with it are consistent
with the training objective.

**Computation.** For a softmax output with logits ``z(x)``, ``∇log φ = (I − 1φᵀ) J_z``, so
``g = J_zᵀ (diag φ − φφᵀ) J_z = AᵀA`` with ``A = diag(√φ)(I − 1φᵀ) J_z`` (``m × d``). The
non-zero eigenvalues of ``g`` are those of the small ``m × m`` Gram matrix ``AAᵀ``, which
is what is diagonalised (in float64); no ``d × d`` matrix is formed unless asked for with
:meth:`NeuralFIM.fim`. ``√φᵀ A = 0``, so the rank of ``g`` is at most ``min(d, m − 1)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._threads import torch_threads

__all__ = [
    "NeuralFIM",
    "fit_ensemble",
    "FIMSummary",
    "fim_summary",
    "build_mlp",
    "neighbors_from_transitions",
    "intrinsic_dimension",
    "leading_log_volume",
    "check_device",
]

RowsFn = Callable[[np.ndarray], np.ndarray]

#: Eigenvalues of g below ``EIG_RTOL × λ_max`` (per cell) are clamped to it in the log-volume.
#: 1e-10 is a singular-value ratio of 1e-5, still well above the float32 round-off of the
#: Jacobian (~1e-7 relative), so the clamped eigenvalues are accurate to about 1 %.
EIG_RTOL = 1e-10


#: Hidden-layer activations: module and derivative (for the analytic Jacobian / JVP).
ACTIVATIONS = {
    "relu": (nn.ReLU, lambda pre: (pre > 0).to(pre.dtype)),
    "silu": (nn.SiLU, lambda pre: torch.sigmoid(pre) * (1 + pre * (1 - torch.sigmoid(pre)))),
    "softplus": (nn.Softplus, torch.sigmoid),
}


def build_mlp(
    n_features: int, hidden: Sequence[int], n_components: int, activation: str = "relu"
) -> nn.Sequential:
    """``Linear → activation`` for every hidden layer, then a ``Linear`` to the logits.

    The softmax is applied by :class:`_SimplexNet`; the returned network maps to logits.
    ``activation`` is ``"relu"``, ``"silu"`` or ``"softplus"``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation][0]()]
        width = int(h)
    layers.append(nn.Linear(width, n_components))
    return nn.Sequential(*layers)


class _SimplexNet(nn.Module):
    """Standardise the input, MLP to logits; ``forward`` returns logits."""

    def __init__(
        self, n_features: int, hidden: Sequence[int], n_components: int, activation: str = "relu"
    ):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.activation = activation
        self.mlp = build_mlp(n_features, hidden, n_components, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((x - self.mean) / self.scale)

    def forward_jvp(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``z(x)`` and the directional derivative ``J_z(x) v`` (differentiable)."""
        act, dact = ACTIVATIONS[self.activation][0](), ACTIVATIONS[self.activation][1]
        h, dh = (x - self.mean) / self.scale, v / self.scale
        lins = [mod for mod in self.mlp if isinstance(mod, nn.Linear)]
        for lin in lins[:-1]:
            pre = lin(h)
            dh = dact(pre) * (dh @ lin.weight.T)
            h = act(pre)
        return lins[-1](h), dh @ lins[-1].weight.T


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that can be used here, or a clear error.

    Nothing falls back to the CPU silently: a CUDA (or MPS) device that this machine does not
    have raises, naming what is available.

    Raises
    ------
    ValueError
        For a string that is not a torch device, a device type other than ``"cpu"``,
        ``"cuda"`` and ``"mps"``, or a device that is not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a valid torch device ('cpu', 'cuda')") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} requested but CUDA is not available (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are available"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={str(device)!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device={str(device)!r}: only 'cpu', 'cuda' and 'mps' are supported")
    return dev


class FIMSummary(dict):
    """Per-cell summaries of the FIM: ``trace``, ``log_volume``, ``eigenvalues`` (arrays)."""


def _gram_eigs(logits: torch.Tensor, J: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace and ascending eigenvalues of the ``m × m`` Gram form ``AAᵀ`` (float64).

    ``AAᵀ = C K Cᵀ`` with ``K = J_z J_zᵀ`` and ``C = diag(√φ)(I − 1φᵀ)``: only ``K`` touches
    the ``d`` axis. The centring is a rank-one update, ``(I − 1φᵀ) K (I − φ1ᵀ) = K − k1ᵀ −
    1kᵀ + (φᵀk) 11ᵀ`` with ``k = Kφ``, so the rest costs ``O(m²)`` per cell instead of two
    ``m × m`` matrix products. The non-zero eigenvalues are those of ``g = AᵀA``, whatever
    ``d`` is. Everything stays on the device of the inputs.
    """
    phi = torch.softmax(logits.double(), dim=-1)  # (B, m)
    J = J.double()
    K = J @ J.transpose(1, 2)  # (B, m, m)
    k = (K @ phi[:, :, None])[..., 0]  # Kφ
    c = (phi * k).sum(-1)  # φᵀKφ
    s = phi.sqrt()
    G = (K - k[:, :, None] - k[:, None, :] + c[:, None, None]) * s[:, :, None] * s[:, None, :]
    G = 0.5 * (G + G.transpose(1, 2))
    trace = torch.diagonal(G, dim1=1, dim2=2).sum(-1)
    return trace, torch.linalg.eigvalsh(G)


def fim_summary(
    eigenvalues: np.ndarray,
    trace: np.ndarray,
    rank: int,
    rtol: float = EIG_RTOL,
    n_dims: int | None = None,
) -> FIMSummary:
    """Trace, log-volume and the top ``rank`` eigenvalues (descending) of g.

    ``log_volume = ½ Σ_{i ≤ k} log max(λ_i, rtol · λ_1)`` over the ``k = n_dims`` leading
    eigenvalues: the log of the Riemannian volume element of the metric on its k leading
    directions. With k the intrinsic dimension of the data (:func:`intrinsic_dimension`)
    this is the volume element of the data manifold; the eigenvalues beyond it are
    directions the operator hardly distinguishes, whose values are set by how the network
    extrapolates and change from one training run to the next. ``n_dims=None`` takes all
    ``r = rank = min(d, m − 1)`` eigenvalues (the pseudo-determinant of g; ``rank g ≤ r``
    always, so the eigenvalues beyond r are structurally zero and left out). Eigenvalues
    below the relative tolerance ``rtol · λ_1`` (per cell) are *clamped* to it rather than
    dropped: every cell then sums the same number of terms, so the log-volume is
    continuous in x and comparable between cells. A cell with ``λ_1 = 0`` gets ``-inf``.
    """
    # descending, the top `rank`; np.clip of the view is one new contiguous array
    lam = np.ascontiguousarray(np.clip(eigenvalues[:, ::-1][:, :rank], 0.0, None))
    log_volume = leading_log_volume(lam, rank if n_dims is None else n_dims, rtol)
    return FIMSummary(trace=trace, log_volume=log_volume, eigenvalues=lam)


def leading_log_volume(eigenvalues: np.ndarray, n_dims: int, rtol: float = EIG_RTOL) -> np.ndarray:
    """``½ Σ_{i ≤ k} log max(λ_i, rtol · λ_1)`` from descending eigenvalues ``(..., r)``."""
    lam = np.asarray(eigenvalues)
    k = max(1, min(int(n_dims), lam.shape[-1]))
    with np.errstate(divide="ignore"):
        return 0.5 * np.log(np.maximum(lam[..., :k], rtol * lam[..., :1])).sum(-1)


#: Leading eigenvalues that :func:`intrinsic_dimension` reads by default.
INTRINSIC_MAX_DIM = 10


def intrinsic_dimension(eigenvalues: np.ndarray, max_dim: int = INTRINSIC_MAX_DIM) -> int:
    """Number of directions the metric resolves: its participation ratio, median over cells.

    For every cell, the participation ratio of the eigenvalues of g,
    ``PR = (Σ λ_i)² / Σ λ_i²`` (the effective number of non-negligible eigenvalues: k for k
    equal eigenvalues and zeros), is computed over the ``max_dim`` leading eigenvalues; k
    is the median over cells, rounded. A metric learned on a curve has one dominant
    eigenvalue (k = 1; cells at branch points, where several directions meet, have larger
    ratios but are few), on a surface two, and so on. The remaining eigenvalues are
    directions in which the diffusion operator barely distinguishes cells. The largest
    gap of the log-spectrum was tried first and rejected: on the toy tree it flipped
    between 1 and 2 with the training length, the ratio λ₂/λ₁ (≈ 0.03–0.08) being small but
    its logarithm comparable to the later gaps.

    Parameters
    ----------
    eigenvalues
        ``(n, r)`` eigenvalues per cell (``FIMSummary["eigenvalues"]``), or a list of such
        arrays (the members of an ensemble), pooled as if concatenated without forming the
        concatenation.
    max_dim
        Largest dimension considered.

    Returns
    -------
    int
        k, between 1 and ``min(max_dim, r)``.
    """
    parts = [eigenvalues] if isinstance(eigenvalues, np.ndarray) else list(eigenvalues)
    ratios, width = [], 1
    for part in parts:
        part = np.asarray(part)
        width = max(width, min(max_dim, part.shape[1]))
        for s in range(0, part.shape[0], 65536):  # bounded temporaries for many cells
            lam = np.clip(np.asarray(part[s : s + 65536, :max_dim], dtype=np.float64), 0.0, None)
            lam = lam[lam.max(1) > 0]
            lam = lam / lam.max(1, keepdims=True)
            ratios.append(lam.sum(1) ** 2 / (lam * lam).sum(1))
    pr = np.concatenate(ratios) if ratios else np.empty(0)
    if pr.size == 0:
        return 1
    return int(np.clip(np.rint(np.median(pr)), 1, width))


class NeuralFIM:
    """Neural network ``φ: R^d → simplex`` trained on JS distances between rows of ``Pᵗ``.

    Parameters
    ----------
    n_components
        ``m``, the size of the output simplex (number of softmax outputs), ≥ 2.
    hidden
        Widths of the hidden layers.
    activation
        Activation after every hidden layer: ``"relu"``, ``"silu"`` or ``"softplus"``. A ReLU
        network has a piecewise-constant Jacobian, so its metric jumps from cell to cell;
        SiLU and softplus give a continuous metric.
    epochs
        Maximal number of epochs; one epoch visits every cell as an anchor
        (``ceil(epoch_pairs / (n_obs · pairs per anchor))`` times on small data,
        ``pool_reuse`` times on large data).
    max_pairs
        Bound on the total number of training pairs of each network, near and random ones
        alike (the budget is ``min(epochs, max(min_epochs, max_pairs / pairs per epoch))``
        epochs), so that training time stays bounded. With the defaults an anchor carries
        3 pairs (its near pair and, it and its partner, one random pair each) and a step
        768: 3000 cells at most 166 epochs of 9000 pairs (1992 steps); from about 3100
        cells on, 162 rounds of 12 steps (1944 steps), whatever the size.
    min_epochs
        Lower bound on the number of epochs when ``max_pairs`` cuts them.
    batch_size
        Cells per optimisation step: ``batch_size // 2`` anchors and their near partners
        (all ``batch_size`` cells are random when there are no near partners); every cell
        is forwarded once and its pairs are taken inside the batch (see
        ``random_partners``).
    lr
        Initial AdamW learning rate (halved on plateaus, see ``lr_patience``). The paper
        used 1e-4 for 150 epochs; here one epoch is only ``n_obs`` pairs and the total is
        capped by ``max_pairs``, so far fewer steps are taken. On the toy tree (1500
        cells, 100-D) the best held-out loss after 50 epochs is 3.2e-3 with 1e-3, 1.2e-3
        with 3e-3 and 7.2e-4 with 1e-2 (after 222 epochs: 6.0e-4, 4.3e-4, 3.4e-4), and an
        ensemble trained with 1e-2 is both more reproducible and more faithful to the
        operator than one trained with 1e-3 for as many pairs. Early
        stopping on held-out pairs (best weights restored) guards against the large step.
    weight_decay
        AdamW weight decay.
    epoch_pairs
        Small data: an epoch visits every cell often enough that it is at least this many
        pairs.
    eval_pairs
        Longest round: the held-out loss is evaluated after every epoch, or every
        ``eval_pairs`` training pairs (rounded up to whole steps; 9216 is 12 steps) when an
        epoch is longer, and ``patience`` and ``lr_patience`` count these rounds. So the
        schedule acts alike at every size: when it counted epochs, 100 000 cells trained
        one epoch at the initial learning rate.
    patience
        Early stopping: stop after this many rounds without a relative improvement of the
        held-out loss by more than ``tol`` (the best weights are restored).
    lr_patience, lr_factor, n_lr_decays
        Learning-rate schedule on the held-out loss: after ``lr_patience`` rounds without
        improvement the learning rate is multiplied by ``lr_factor``; training stops when
        it has been reduced ``n_lr_decays`` times and stalls again (converged), after
        ``patience`` rounds without improvement, or at ``epochs`` / ``max_pairs``.
        ``lr_patience=0`` keeps the learning rate constant.
    tol
        Relative improvement of the held-out loss that counts as progress.
    neighbor_fraction
        Share of the partners drawn near the cell instead of uniformly at random: the end
        of a random walk of ``walk_steps`` steps on the cells' neighbour lists (see
        :meth:`fit`). Random partners fix the global layout; near partners fix the local
        speed of φ, which is what the metric measures. In the loss, the mean over a batch's
        near pairs has this weight and the mean over its random pairs the rest; the
        held-out pairs are near with this probability.
    n_partner_neighbors
        Length of the neighbour lists computed by :meth:`fit` when none are given.
    walk_steps
        Walk lengths, one drawn uniformly per near pair (1: a nearest neighbour; longer
        walks give partners at several scales).
    local_weight
        Weight of a local term on the near pairs: ``(√(⅛ δᵀ g(x) δ) − √JS(Pᵗ(x,·), Pᵗ(y,·)))²``
        with ``δ = y − x``, the second-order expansion of the JS divergence of φ, matched
        directly to the operator (0: off).
    trace_weight
        Weight of a penalty on ``tr g / 8`` (Hutchinson estimate with one Gaussian probe),
        which damps variations of φ in directions the data do not constrain (0: off).
    trace_cells
        Number of cells of each batch that carry the trace probe (None: all of them), taken
        among its anchors: a forward-mode pass over 256 of 512 cells costs half of one over
        all, with the same expected penalty. On the toy tree (3000 cells, five networks)
        probing 256 anchors instead of 128 raised the seed-to-seed Pearson of the trace from
        0.884–0.909 to 0.915–0.926 and of the log-volume from 0.951–0.958 to 0.953–0.965.
    random_partners
        Random partners of every cell of a batch, taken among the batch's cells (``R``
        distinct cyclic shifts of the batch, which is in random order): one forward pass of
        ``batch_size`` cells serves ``batch_size / 2`` near pairs and ``R · batch_size``
        random ones. More random pairs per step did not converge in fewer steps (the
        held-out loss after as many steps was the same with R = 1, 4 and 8).
    shared_batches
        Train all members on the same batches and pairs, so that the rows of ``Pᵗ`` and the
        JS targets of a batch are computed once for all (each member keeps its own
        initialisation and trace probes). ``False``: every member draws its own batches
        from its own random stream, at ``K`` times the cost of the targets; on the toy tree
        it was not more reproducible.
    n_val_pairs
        Number of held-out pairs (fixed for the whole fit) used for early stopping.
    pool_size
        Large data: rows of ``Pᵗ`` are computed for a pool of this many cells at a time:
        half of them a slice of the epoch's random permutation (the anchors), half their
        near partners (all of them anchors without near partners). The pool's anchors are
        visited ``pool_reuse`` times, each time in a new order, so each row is computed
        once per epoch and serves ``pool_reuse`` batches.
    pool_reuse
        See ``pool_size`` (computing rows costs more than using them).
    cache_entries
        When ``n_obs × n_states`` is at most this (2²⁵ float32 numbers, 128 MiB), all rows
        are computed once and kept for the whole fit, and partners are drawn from all cells.
    standardize
        ``"global"``: subtract the mean and divide by one scale (the RMS of the centred
        features), which keeps the Euclidean geometry of the representation; ``"feature"``:
        z-score each feature; ``None``: no standardisation.
    random_state
        Seed of the weight initialisation and of the pair sampling; with a fixed seed the
        fit is bit-reproducible on CPU.
    device
        Torch device for training and inference (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …).
    num_threads
        Torch intra-op threads during :meth:`fit` (restored afterwards). The network and its
        batches are small, so one thread is fastest: measured 4.8 s with 1 thread against
        22 s with 2 on a busy 2-core machine (1500 cells, 40 epochs). None keeps torch's
        setting. Inference (:meth:`summary`) uses torch's setting.
    progress
        Show a tqdm progress bar (one step per round of ``eval_pairs`` pairs).
    verbose
        Former name of ``progress``; when given it overrides it.
    """

    def __init__(
        self,
        n_components: int = 20,
        hidden: Sequence[int] = (100, 100),
        *,
        activation: str = "silu",
        epochs: int = 300,
        max_pairs: int = 1_500_000,
        min_epochs: int = 1,
        epoch_pairs: int = 4096,
        eval_pairs: int = 9216,
        batch_size: int = 512,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        patience: int = 40,
        lr_patience: int = 10,
        lr_factor: float = 0.5,
        n_lr_decays: int = 6,
        tol: float = 1e-4,
        neighbor_fraction: float = 0.5,
        n_partner_neighbors: int = 15,
        walk_steps: Sequence[int] = (1,),
        local_weight: float = 0.0,
        trace_weight: float = 0.01,
        trace_cells: int | None = 256,
        random_partners: int = 1,
        shared_batches: bool = True,
        n_val_pairs: int = 4096,
        pool_size: int = 4096,
        pool_reuse: int = 4,
        cache_entries: int = 2**25,
        standardize: str | None = "global",
        random_state: int | None = 0,
        device: str | torch.device = "cpu",
        num_threads: int | None = 1,
        progress: bool = True,
        verbose: bool | None = None,
    ):
        if int(n_components) < 2:
            raise ValueError(f"n_components must be ≥ 2, got {n_components}")
        if len(hidden) < 1 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive widths: {hidden}")
        if standardize not in ("global", "feature", None):
            raise ValueError(f"standardize must be 'global', 'feature' or None: {standardize!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}: {activation!r}")
        if not 0.0 <= float(neighbor_fraction) <= 1.0:
            raise ValueError(f"neighbor_fraction must lie in [0, 1], got {neighbor_fraction!r}")
        if not 0.0 < float(lr_factor) <= 1.0:
            raise ValueError(f"lr_factor must lie in (0, 1], got {lr_factor!r}")
        if float(local_weight) < 0:
            raise ValueError(f"local_weight must be ≥ 0, got {local_weight!r}")
        self.n_components = int(n_components)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.epochs = int(epochs)
        self.max_pairs = int(max_pairs)
        self.min_epochs = int(min_epochs)
        self.epoch_pairs = int(epoch_pairs)
        self.eval_pairs = int(eval_pairs)
        if self.eval_pairs < 1:
            raise ValueError(f"eval_pairs must be ≥ 1, got {eval_pairs!r}")
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.patience = int(patience)
        self.lr_patience = int(lr_patience)
        self.lr_factor = float(lr_factor)
        self.n_lr_decays = int(n_lr_decays)
        self.tol = float(tol)
        self.neighbor_fraction = float(neighbor_fraction)
        self.n_partner_neighbors = int(n_partner_neighbors)
        self.walk_steps = tuple(int(w) for w in walk_steps)
        if not self.walk_steps or min(self.walk_steps) < 1:
            raise ValueError(f"walk_steps must be positive integers, got {walk_steps!r}")
        self.local_weight = float(local_weight)
        self.trace_weight = float(trace_weight)
        self.trace_cells = None if trace_cells is None else int(trace_cells)
        self.random_partners = int(random_partners)
        if self.random_partners < 1:
            raise ValueError(f"random_partners must be ≥ 1, got {random_partners!r}")
        self.shared_batches = bool(shared_batches)
        self.n_val_pairs = int(n_val_pairs)
        self.pool_size = int(pool_size)
        self.pool_reuse = int(pool_reuse)
        self.cache_entries = int(cache_entries)
        self.standardize = standardize
        self.random_state = random_state
        self.device = torch.device(device)
        self.progress = bool(progress if verbose is None else verbose)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.net_: _SimplexNet | None = None
        self.history_: dict[str, np.ndarray] = {}
        self.n_features_: int | None = None

    # ------------------------------------------------------------------ training
    def _init_net(self, n_features: int) -> _SimplexNet:
        seed = self.random_state
        if seed is None:  # fresh entropy; the global torch RNG is left alone either way
            seed = int(np.random.default_rng().integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = _SimplexNet(n_features, self.hidden, self.n_components, self.activation)
        return net

    def _standardisation(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and scale of the inputs, accumulated in float64 over blocks of cells.

        No copy of ``X`` is made (a float32 matrix stays float32; the blocks bound the
        float64 temporaries).
        """
        n, d = X.shape
        blocks = range(0, n, 65536)
        mean = sum(X[s : s + 65536].sum(0, dtype=np.float64) for s in blocks) / n
        if self.standardize is None:
            return np.zeros(d), np.ones(d)
        sq = np.zeros(d)
        for s in blocks:
            Xc = X[s : s + 65536] - mean
            sq += (Xc * Xc).sum(0)
        if self.standardize == "feature":
            scale = np.sqrt(sq / n)
            scale[scale <= 0] = 1.0
        else:
            rms = float(np.sqrt(sq.sum() / n / d))
            scale = np.full(d, rms if rms > 0 else 1.0)
        return mean, scale

    def fit(self, X: np.ndarray, rows: RowsFn, neighbors: np.ndarray | None = None) -> NeuralFIM:
        """Train φ on pairs of cells at two scales: random partners and nearest neighbours.

        Several networks (an ensemble) are trained at once, as one batched model, with
        :func:`fit_ensemble`; this is its one-member case (:mod:`~scfim.models.neural_fim_training`).

        Parameters
        ----------
        X
            ``(n_obs, d)`` input coordinates of the cells.
        rows
            Callable ``rows(idx) -> (len(idx), n_states)`` probability rows of ``Pᵗ``
            (e.g. :meth:`scfim.geometry.diffusion.DiffusionOperator.rows`). Called pool by
            pool (see ``pool_size``); no ``n × n`` matrix is formed.
        neighbors
            Optional ``(n_obs, k)`` indices of each cell's nearest cells, the candidates for
            the near partners (``neighbor_fraction``); e.g. the cells a diffusion step
            reaches. Computed from ``X`` (exact kNN, ``n_partner_neighbors``) when omitted.

        Returns
        -------
        self, with ``net_`` (the network, best held-out loss) and ``history_``
        (``train_loss`` and ``val_loss`` per round, ``best_val_loss``, ``n_pairs``,
        ``fit_seconds``).
        """
        with torch_threads(self.num_threads):
            return self._fit(X, rows, neighbors)

    def _fit(self, X: np.ndarray, rows: RowsFn, neighbors: np.ndarray | None) -> NeuralFIM:
        from .neural_fim_training import train_members

        X = _check_training_input(X)
        train_members([self], X, rows, self._partner_neighbors(X, neighbors))
        return self

    def _partner_neighbors(self, X: np.ndarray, neighbors: np.ndarray | None) -> np.ndarray | None:
        """``(n, k)`` neighbour indices for the near partners, or None when not used."""
        if self.neighbor_fraction <= 0:
            return None
        n = X.shape[0]
        if neighbors is None:
            # exact search that tolerates duplicated cells (the diffusion kNN graph refuses
            # them, but φ can be trained on any rows); tl.neural_fim passes the operator's
            from sklearn.neighbors import NearestNeighbors

            k = min(self.n_partner_neighbors, n - 1)
            nn_idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)[1]
            return nn_idx[:, 1:].astype(np.int64)
        nb = np.asarray(neighbors)
        if nb.ndim != 2 or nb.shape[0] != n or nb.shape[1] < 1:
            raise ValueError(f"neighbors must have shape ({n}, k), got {nb.shape}")
        if not np.issubdtype(nb.dtype, np.integer) or nb.min() < 0 or nb.max() >= n:
            raise ValueError("neighbors must hold integer cell indices in [0, n_obs)")
        return nb.astype(np.int64)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> _SimplexNet:
        if self.net_ is None:
            raise RuntimeError("NeuralFIM is not fitted; call fit() or load a model first")
        return self.net_

    @property
    def network(self) -> _SimplexNet:
        """The fitted network ``φ`` (``RuntimeError`` when the model is not fitted)."""
        return self._check_fitted()

    def _as_input(self, X) -> np.ndarray:
        """``X`` as a 2-D float array (float32 and float64 kept as they are, no copy).

        The cells are converted to the Jacobian's dtype chunk by chunk, so that a float32
        matrix of many cells is never copied to float64 as a whole. Non-finite values are
        looked for in blocks (bounded temporary memory).
        """
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim == 1:
            X = X[None]
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise ValueError(f"expected {self.n_features_} features, got input shape {X.shape}")
        for s in range(0, X.shape[0], 65536):
            if not np.isfinite(X[s : s + 65536]).all():
                raise ValueError("inputs contain NaN or infinite values")
        return X

    def _chunk_cells(self, chunk_size: int | None) -> int:
        """Cells per batch: ``chunk_size``, or 512 on a CPU and 32768 on an accelerator.

        On a CPU a chunk of 512 cells keeps the float64 Jacobians and Gram forms of
        :meth:`summary` at about 19 MiB (75 MiB at 2048, which is most of the per-cell
        stage's peak memory at 100 000 cells) and is as fast.
        """
        if chunk_size is None:
            return 512 if self.device.type == "cpu" else 32768
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return int(chunk_size)

    def transform(self, X, *, chunk_size: int | None = None) -> np.ndarray:
        """``φ(x)``: the ``(n, n_components)`` probabilities (the ``X_neural_fim`` embedding).

        Each chunk of cells (``chunk_size``; default 8192 on a CPU, where the activations of
        a chunk are then about 12 MiB, and 65536 on an accelerator) is copied to the model's
        device once; the probabilities are gathered there and copied back once at the end.
        """
        net = self._check_fitted()
        X = self._as_input(X)
        if chunk_size is None:
            chunk_size = 8192 if self.device.type == "cpu" else 65536
        chunk = self._chunk_cells(chunk_size)
        dev = check_device(self.device)
        out = torch.empty((X.shape[0], self.n_components), dtype=torch.float64, device=dev)
        with torch.no_grad():
            for s in range(0, X.shape[0], chunk):
                xb = torch.as_tensor(X[s : s + chunk], dtype=torch.float32).to(dev)
                out[s : s + chunk] = torch.softmax(net(xb).double(), -1)
        return out.cpu().numpy()

    def _jacobian_fn(self, dtype: torch.dtype, method: str = "func"):
        """Batched ``x ↦ (logits, J_z)``; ``method`` is ``"func"`` or ``"analytic"``."""
        if method == "analytic":
            return self._analytic_jacobian_fn(dtype)
        if method != "func":
            raise ValueError(f"jacobian must be 'func' or 'analytic', got {method!r}")
        net = self._check_fitted()
        from torch.func import functional_call, jacrev, vmap

        params = {k: v.detach().to(dtype) for k, v in net.named_parameters()}
        buffers = {k: v.detach().to(dtype) for k, v in net.named_buffers()}

        def logits(x):
            return functional_call(net, (params, buffers), (x[None],))[0]

        def logits_and_jac(x):
            return logits(x), jacrev(logits)(x)

        return vmap(logits_and_jac)

    def _analytic_jacobian_fn(self, dtype: torch.dtype):
        """Jacobian of the MLP as one batched product of weight matrices and derivatives.

        ``J_z = W_L D_{L-1} W_{L-1} ⋯ D_1 W_1 S⁻¹`` (``D_i = diag σ'(pre-activation)``: the
        ReLU masks, or the SiLU / softplus derivatives; ``S`` the input scale), evaluated
        right to left from the output side (``m < d``) with large GEMMs over ``chunk × m``
        rows. Equal to ``torch.func.jacrev`` (tested), about 2× faster.
        """
        net = self._check_fitted()
        lins = [mod for mod in net.mlp if isinstance(mod, nn.Linear)]
        Ws = [lin.weight.detach().to(dtype) for lin in lins]
        bs = [lin.bias.detach().to(dtype) for lin in lins]
        mean, scale = net.mean.detach().to(dtype), net.scale.detach().to(dtype)
        W_in = Ws[0] / scale  # W_1 S⁻¹
        act, dact = ACTIVATIONS[net.activation][0](), ACTIVATIONS[net.activation][1]

        def fn(x):
            h = (x - mean) / scale
            masks = []
            for W, b in zip(Ws[:-1], bs[:-1], strict=True):
                pre = torch.addmm(b, h, W.T)
                h = act(pre)
                masks.append(dact(pre))
            z = torch.addmm(bs[-1], h, Ws[-1].T)
            B, m = z.shape
            T = Ws[-1] * masks[-1][:, None, :]  # (B, m, h_L)
            for W, mask in zip(reversed(Ws[1:-1]), reversed(masks[:-1]), strict=True):
                T = (T.reshape(B * m, -1) @ W).reshape(B, m, -1) * mask[:, None, :]
            J = (T.reshape(B * m, -1) @ W_in).reshape(B, m, -1)
            return z, J

        return fn

    def fim(self, X, *, dtype: torch.dtype = torch.float64) -> np.ndarray:
        """Explicit ``(n, d, d)`` Fisher information matrices ``g(x) = AᵀA`` (float64).

        Forms ``d × d`` matrices: meant for small batches; use :meth:`summary` for many cells.
        """
        X = self._as_input(X)
        fn = self._jacobian_fn(dtype)
        with torch.no_grad():
            z, J = fn(torch.as_tensor(X, dtype=dtype).to(check_device(self.device)))
            phi = torch.softmax(z.double(), -1)
            J = J.double()
            A = (J - torch.einsum("bm,bmd->bd", phi, J)[:, None, :]) * phi.sqrt()[:, :, None]
            G = A.transpose(1, 2) @ A
        return (0.5 * (G + G.transpose(1, 2))).cpu().numpy()

    @property
    def rank(self) -> int:
        """Largest possible rank of g: ``min(d, n_components − 1)``."""
        return min(int(self.n_features_), self.n_components - 1)

    def summary(
        self,
        X,
        *,
        basis: np.ndarray | None = None,
        chunk_size: int | None = None,
        jacobian_dtype: torch.dtype = torch.float32,
        jacobian: str = "analytic",
        rtol: float = EIG_RTOL,
        n_dims: int | None = None,
    ) -> FIMSummary:
        """Trace, log-volume and eigenvalues of g for many cells, in chunks.

        The Jacobian of the logits is computed in ``jacobian_dtype`` (float32 by default:
        the network is trained in float32), with ``jacobian="analytic"`` as a batched
        product of weight matrices and activation derivatives (fastest) or with
        ``jacobian="func"`` by ``torch.func.vmap(jacrev(...))`` (any network); the Gram form
        ``AAᵀ`` and its eigenvalues are computed in float64. No Python loop runs per cell,
        no ``d × d`` matrix is formed; memory is bounded by ``chunk_size``.

        On an accelerator (the model's ``device``), each chunk of cells (and of ``basis``) is
        copied to it once, everything else runs there, and the per-cell results are gathered
        on the device and copied back once at the end. On a CPU the eigenvalue problems of a
        chunk are split over torch's threads.

        Parameters
        ----------
        X
            ``(n, d)`` cells.
        basis
            Optional ``(n, d, k)`` orthonormal bases, one per cell: the metric is then
            restricted to their span, ``Uᵀ g U`` (``k × k``; e.g. the data's local tangent
            space), and the summaries are those of the restriction.
        chunk_size
            Cells per batch (None: 512 on a CPU, 32768 on an accelerator).
        jacobian_dtype, jacobian, rtol
            Dtype and method of the Jacobian; clamp of the log-volume.
        n_dims
            Number of leading eigenvalues in the log-volume (None: all, see
            :func:`fim_summary`).

        Returns
        -------
        :class:`FIMSummary` with ``trace`` (n,), ``log_volume`` (n,) and ``eigenvalues``
        (n, rank) in descending order, ``rank = min(d, n_components − 1)`` (``k`` in place
        of ``d`` with a ``basis``).
        """
        X = self._as_input(X)
        n = X.shape[0]
        rank = self.rank
        if basis is not None:
            basis = np.asarray(basis, dtype=np.float64)
            if basis.ndim != 3 or basis.shape[:2] != X.shape:
                raise ValueError(f"basis must have shape ({n}, {X.shape[1]}, k), got {basis.shape}")
            rank = min(basis.shape[2], self.n_components - 1)
        chunk = self._chunk_cells(chunk_size)
        dev = check_device(self.device)
        fn = self._jacobian_fn(jacobian_dtype, jacobian)
        trace = torch.empty(n, dtype=torch.float64, device=dev)
        eig = torch.empty((n, self.n_components), dtype=torch.float64, device=dev)
        n_workers = max(1, torch.get_num_threads()) if dev.type == "cpu" else 1

        def evaluate(s: int) -> None:
            e = min(s + chunk, n)
            with torch.no_grad():  # grad mode is per thread: set in the workers too
                z, J = fn(torch.as_tensor(X[s:e], dtype=jacobian_dtype).to(dev))
                if basis is not None:
                    J = J.double() @ torch.as_tensor(basis[s:e]).to(dev)
                trace[s:e], eig[s:e] = _gram_eigs(z, J)

        starts = range(0, n, chunk)
        with torch.no_grad():
            if n_workers > 1 and len(starts) > 1:
                # whole chunks side by side, one torch thread each: the small batched
                # products of a chunk gain little from intra-op threads
                # this thread takes its share: one allocator arena fewer than a pool
                # of n_workers (glibc keeps what each worker's arena frees)
                queue, lock = iter(starts), threading.Lock()

                def drain() -> None:
                    while True:
                        with lock:
                            s = next(queue, None)
                        if s is None:
                            return
                        evaluate(s)

                with torch_threads(1), ThreadPoolExecutor(n_workers - 1) as pool:
                    helpers = [pool.submit(drain) for _ in range(n_workers - 1)]
                    drain()
                    for h in helpers:
                        h.result()
            else:
                for s in starts:
                    evaluate(s)
        return fim_summary(eig.cpu().numpy(), trace.cpu().numpy(), rank, rtol, n_dims)

    def log_volume(self, X, **kwargs) -> np.ndarray:
        """``½ Σ log λ_i`` over the top ``min(d, m − 1)`` eigenvalues of g (:func:`fim_summary`)."""
        return self.summary(X, **kwargs)["log_volume"]

    def trace(self, X, **kwargs) -> np.ndarray:
        """``tr g(x) = Σ_k φ_k ‖∇log φ_k‖²``."""
        return self.summary(X, **kwargs)["trace"]

    def spectrum(self, X, k: int | None = None, **kwargs) -> np.ndarray:
        """Top ``k`` eigenvalues of g (descending), ``k ≤ min(d, n_components − 1)``."""
        lam = self.summary(X, **kwargs)["eigenvalues"]
        return lam if k is None else lam[:, :k]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """State as NumPy arrays, scalars and strings (survives ``AnnData.write_h5ad``)."""
        net = self._check_fitted()
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        state = {
            "class": "NeuralFIM",
            "n_components": self.n_components,
            "n_features": int(self.n_features_),
            "hidden": np.asarray(self.hidden, dtype=np.int64),
            "mean": net.mean.detach().cpu().numpy().astype(np.float64),
            "scale": net.scale.detach().cpu().numpy().astype(np.float64),
            "standardize": "none" if self.standardize is None else self.standardize,
            "activation": self.activation,
            "config": {
                "epochs": self.epochs,
                "max_pairs": self.max_pairs,
                "min_epochs": self.min_epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "patience": self.patience,
                "epoch_pairs": self.epoch_pairs,
                "eval_pairs": self.eval_pairs,
                "lr_patience": self.lr_patience,
                "lr_factor": self.lr_factor,
                "n_lr_decays": self.n_lr_decays,
                "tol": self.tol,
                "neighbor_fraction": self.neighbor_fraction,
                "n_partner_neighbors": self.n_partner_neighbors,
                "walk_steps": np.asarray(self.walk_steps, dtype=np.int64),
                "local_weight": self.local_weight,
                "trace_weight": self.trace_weight,
                "trace_cells": -1 if self.trace_cells is None else int(self.trace_cells),
                "random_partners": self.random_partners,
                "shared_batches": int(self.shared_batches),
                "n_val_pairs": self.n_val_pairs,
                "pool_size": self.pool_size,
                "pool_reuse": self.pool_reuse,
                "cache_entries": self.cache_entries,
                "random_state": -1 if self.random_state is None else int(self.random_state),
            },
        }
        for li, lin in enumerate(linears):
            state[f"weight_{li}"] = lin.weight.detach().cpu().numpy().copy()
            state[f"bias_{li}"] = lin.bias.detach().cpu().numpy().copy()
        return state

    @classmethod
    def from_dict(cls, state: dict, *, device: str | torch.device = "cpu") -> NeuralFIM:
        """Rebuild a fitted model from :meth:`to_dict` output (also after an h5ad round trip)."""
        device = check_device(device)
        cfg = dict(state.get("config", {}))
        rs = int(cfg.pop("random_state", 0))
        std = str(state.get("standardize", "global"))
        floats = (
            "lr",
            "weight_decay",
            "lr_factor",
            "tol",
            "neighbor_fraction",
            "local_weight",
            "trace_weight",
        )
        model = cls(
            int(state["n_components"]),
            [int(h) for h in np.asarray(state["hidden"]).ravel()],
            standardize=None if std == "none" else std,
            random_state=None if rs < 0 else rs,
            device=device,
            progress=False,
            # models saved before the activation was a parameter are ReLU networks
            activation=str(state.get("activation", "relu")),
            **{k: _config_value(k, v, floats) for k, v in cfg.items()},
        )
        d = int(state["n_features"])
        net = _SimplexNet(d, model.hidden, model.n_components, model.activation)
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for li, lin in enumerate(linears):
                lin.weight.copy_(torch.as_tensor(np.asarray(state[f"weight_{li}"])))
                lin.bias.copy_(torch.as_tensor(np.asarray(state[f"bias_{li}"])))
            net.mean.copy_(torch.as_tensor(np.asarray(state["mean"], dtype=np.float32)))
            net.scale.copy_(torch.as_tensor(np.asarray(state["scale"], dtype=np.float32)))
        net.to(model.device).eval()
        model.net_ = net
        model.n_features_ = d
        return model

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` to an ``.npz`` file."""
        flat = _flatten(self.to_dict())
        np.savez(path, **flat)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> NeuralFIM:
        """Read a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
        return cls.from_dict(_unflatten(flat), device=device)


# ---------------------------------------------------------------------- helpers
def _check_training_input(X) -> np.ndarray:
    """``X`` as a float ``(n, d)`` array, n ≥ 2, finite (``ValueError`` otherwise).

    float32 and float64 are kept as they are (no copy: training runs in float32); other
    dtypes become float64. Non-finite values are looked for in blocks.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be 2-D with at least 2 rows, got shape {X.shape}")
    for s in range(0, X.shape[0], 65536):
        if not np.isfinite(X[s : s + 65536]).all():
            raise ValueError("X contains NaN or infinite values")
    return X


def fit_ensemble(
    models: Sequence[NeuralFIM], X, rows: RowsFn, neighbors: np.ndarray | None = None
) -> list[NeuralFIM]:
    """Train several :class:`NeuralFIM` models at once, as one batched network.

    The models must share every setting but ``random_state``. They are trained on the
    same stream of pairs (seeded by the first model's ``random_state``; the rows of
    ``Pᵗ`` and the JS targets of each batch are computed once for all), each from its
    own initialisation (that of a single model with its seed), with its own optimiser
    state, learning-rate schedule, early stopping and best weights; a converged member is
    frozen while the others continue (:mod:`scfim.models.neural_fim_training`). The
    weights of all members are stacked and every step is one batched matrix product, so
    K members cost far less than K separate fits. With one model this is
    :meth:`NeuralFIM.fit`.

    Parameters
    ----------
    models
        Unfitted (or to be refitted) models with equal settings.
    X, rows, neighbors
        As in :meth:`NeuralFIM.fit`.

    Returns
    -------
    The models, fitted (``net_``, ``history_``; ``history_["fit_seconds"]`` is the wall
    time of the joint fit, shared by its members).
    """
    from .neural_fim_training import check_members, train_members

    models = list(models)
    check_members(models)
    first = models[0]
    X = _check_training_input(X)
    with torch_threads(first.num_threads):
        train_members(models, X, rows, first._partner_neighbors(X, neighbors))
    return models


def neighbors_from_transitions(P, k: int) -> np.ndarray:
    """``(n, k)`` indices of the k cells each cell's diffusion step most likely reaches.

    ``P`` is the sparse one-step Markov matrix; self-loops are skipped. A cell with fewer
    than ``k`` other cells in its row repeats its most likely ones.
    """
    import scipy.sparse as sp

    P = sp.csr_matrix(P)
    n = P.shape[0]
    row = np.repeat(np.arange(n), np.diff(P.indptr))
    keep = P.indices != row
    row, col, val = row[keep], P.indices[keep], P.data[keep]
    counts = np.bincount(row, minlength=n)
    if np.any(counts == 0):
        raise ValueError(f"cell {int(np.argmin(counts))} has no transition to another cell")
    order = np.lexsort((-val, row))  # by row, most likely first
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(k)[None, :] % counts[:, None]  # repeat when a row is short
    return col[order][start[:, None] + rank].astype(np.int64)


def _rows_in_chunks(rows: RowsFn, idx: np.ndarray, chunk: int) -> np.ndarray:
    """``rows(idx)`` as float32, computed ``chunk`` cells at a time (bounded float64 peak)."""
    out = None
    for s in range(0, len(idx), chunk):
        part = idx[s : s + chunk]
        R = np.asarray(rows(part))
        if R.dtype not in (np.float32, np.float64):
            R = R.astype(np.float64)
        if R.ndim != 2 or R.shape[0] != len(part):
            raise ValueError(f"rows(idx) gave shape {R.shape}, expected ({len(part)}, n_states)")
        if not np.isfinite(R).all() or (R < 0).any():
            raise ValueError("rows(idx) must return finite, non-negative probabilities")
        if out is None:
            out = np.empty((len(idx), R.shape[1]), dtype=np.float32)
        out[s : s + len(part)] = R
    return out


def _config_value(key: str, value, floats: tuple[str, ...]):
    if key == "walk_steps":
        return tuple(int(w) for w in np.atleast_1d(value))
    if key == "trace_cells":
        return None if int(value) < 0 else int(value)
    if key == "shared_batches":
        return bool(value)
    return float(value) if key in floats else int(value)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        parts = k.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        v = np.asarray(v)
        node[parts[-1]] = v.item() if v.ndim == 0 else v
    return out
