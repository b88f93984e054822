"""Training of neural FIM networks: several members at once, as one batched model.

The loss is that of Fasina et al. (ICML 2023, Eq. 6): for pairs of cells ``(x, y)``,
``(√JS(φ(x), φ(y)) − √JS(Pᵗ(x,·), Pᵗ(y,·)))²``, plus the optional local and trace terms of
:class:`~scfim.models.neural_fim.NeuralFIM`. An ensemble of ``K`` networks of the same
shape is trained as **one** model: the weights of layer ``l`` are stacked into a
``(K, in, out)`` tensor and every step is a batched matrix product over the members
(``torch.baddbmm``), so that the Python and autograd overhead of a step is paid once for
all members. Each member is initialised exactly as a single network with its own seed and
keeps its own trace probes, optimiser state, learning-rate schedule, early stopping and
best weights: a converged member is frozen (learning rate 0) and dropped from the forward
pass while the others continue. The held-out pairs of the stopping rule are shared.

**Pairs inside a batch.** A step forwards each cell of its batch once and takes its pairs
among those cells: half of the batch are anchors, half their near partners (the end of a
short walk on the neighbour lists), giving one near pair per anchor, and every cell is also
paired with ``random_partners`` others of the batch (the batch is in random order, so a
cyclic shift of it pairs random cells). A pair thus costs one forward of one point instead
of two; the network's ``Σ φ log φ`` is computed once per cell. By default the members train
on the same batches (``shared_batches``), so that the rows of ``Pᵗ`` and the JS targets of
a batch are computed once for all of them; with ``shared_batches=False`` every member draws
its own batches from its own stream (targets ``K`` times).

Everything inside the training loop stays on the model's device: the data, the rows of
``Pᵗ`` (cached or per pool), the batch indices (drawn with a ``torch.Generator`` on that
device) and the running losses; the cyclic shifts are drawn on the host, one scalar per
member and round (the held-out loss) is read back for the stopping rule, and rows of ``Pᵗ``
are copied once per pool when they do not fit in the cache (the operator lives on the host).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .._progress import progress_bar
from ..geometry.divergences import _SQRT_EPS, LOG2, sqrt_js

if TYPE_CHECKING:
    from .neural_fim import NeuralFIM, RowsFn

#: Configuration that every member of a jointly trained ensemble must share.
SHARED_CONFIG = (
    "n_components",
    "hidden",
    "activation",
    "epochs",
    "max_pairs",
    "min_epochs",
    "epoch_pairs",
    "eval_pairs",
    "batch_size",
    "lr",
    "weight_decay",
    "patience",
    "lr_patience",
    "lr_factor",
    "n_lr_decays",
    "tol",
    "neighbor_fraction",
    "walk_steps",
    "local_weight",
    "trace_weight",
    "trace_cells",
    "random_partners",
    "shared_batches",
    "n_val_pairs",
    "pool_size",
    "pool_reuse",
    "cache_entries",
    "standardize",
    "device",
)

_BETAS, _EPS = (0.9, 0.999), 1e-8


class _StackedMLP:
    """``K`` MLPs of one shape as stacked leaf tensors ``W_l (K, in, out)``, ``b_l (K, 1, out)``.

    Built from ``K`` initialised :class:`~scfim.models.neural_fim._SimplexNet` (same
    standardisation); :meth:`write_back` copies member weights into those networks.
    """

    def __init__(self, nets: Sequence[nn.Module], device: torch.device):
        lins = [[m for m in net.mlp if isinstance(m, nn.Linear)] for net in nets]
        self.W = [
            torch.stack([ls[i].weight.detach().T for ls in lins]).contiguous().to(device)
            for i in range(len(lins[0]))
        ]
        self.b = [
            torch.stack([ls[i].bias.detach()[None] for ls in lins]).contiguous().to(device)
            for i in range(len(lins[0]))
        ]
        for p in self.params:
            p.requires_grad_(True)
        from .neural_fim import ACTIVATIONS

        self.mean = nets[0].mean.detach().to(device)
        self.scale = nets[0].scale.detach().to(device)
        self.act, self.dact = (
            ACTIVATIONS[nets[0].activation][0](),
            ACTIVATIONS[nets[0].activation][1],
        )

    @property
    def params(self) -> list[torch.Tensor]:
        return self.W + self.b

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor | None = None,
        members: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(K, B, m)`` of every member at its inputs ``x (K, B, d)`` (or shared ``(B, d)``).

        With ``v (K, q, d)`` (or ``(q, d)``), also the directional derivatives
        ``J_z(x_i) v_i`` of the first ``q`` inputs, ``(K, q, m)`` (forward mode,
        differentiable). ``members`` restricts
        the computation to those members (the rest are frozen).
        """
        W, b = self.W, self.b
        if members is not None:
            W, b = [w[members] for w in W], [c[members] for c in b]
        h = (x - self.mean) / self.scale
        pre = torch.matmul(h, W[0]) + b[0]  # (K, B, h1)
        dh = None
        if v is not None:
            dh = torch.matmul(v / self.scale, W[0])  # (K, q, h1)
        for Wl, bl in zip(W[1:], b[1:], strict=True):
            if dh is not None:
                dh = torch.bmm(self.dact(pre[:, : dh.shape[1]]) * dh, Wl)
            pre = torch.baddbmm(bl, self.act(pre), Wl)
        return pre, dh

    def state(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def write_back(self, nets: Sequence[nn.Module], state: Sequence[torch.Tensor]) -> None:
        """Copy member ``k`` of ``state`` (as from :meth:`state`) into ``nets[k]``."""
        L = len(self.W)
        with torch.no_grad():
            for k, net in enumerate(nets):
                lins = [m for m in net.mlp if isinstance(m, nn.Linear)]
                for i, lin in enumerate(lins):
                    lin.weight.copy_(state[i][k].T)
                    lin.bias.copy_(state[L + i][k, 0])


class _MemberAdamW:
    """AdamW (decoupled weight decay, as ``torch.optim.AdamW``) with one rate per member.

    ``lr`` is a ``(K,)`` tensor; a member with rate 0 is left exactly unchanged (its moment
    estimates still decay, but it is never updated again: frozen members do not resume).
    """

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, weight_decay: float):
        self.params, self.lr, self.wd, self.t = params, lr, float(weight_decay), 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self) -> None:
        self.t += 1
        b1, b2 = _BETAS
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                if p.grad is None:
                    continue
                g = p.grad
                lr = self.lr.view(-1, *([1] * (p.dim() - 1)))
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.mul_(1 - lr * self.wd)
                p.sub_((lr / c1) * m / ((v / c2).sqrt_().add_(_EPS)))
                p.grad = None


class _RowBank:
    """Rows of Pᵗ (float32, on the training device) with their ``Σ p log p``.

    ``JS(p, q) = ½ Σ f(p) + ½ Σ f(q) − Σ f(m)`` with ``f(x) = x log x`` and ``m = (p+q)/2``;
    the per-row sums are computed once, so a pair costs one ``log`` and one dot product
    over a row. Everything is float32 (absolute error of JS ~1e-6; the targets are a
    regression signal, not a reported quantity); the row sums use the very same operation
    as ``Σ f(m)``, so identical rows give JS = 0 exactly. Otherwise the same quantity as
    :func:`~scfim.geometry.divergences.sqrt_js`, including its clamp.
    """

    def __init__(self, R: np.ndarray, device: torch.device | str = "cpu"):
        self.R = torch.as_tensor(np.ascontiguousarray(R, dtype=np.float32), device=device)
        self.F = _sum_xlogx(self.R)

    def sqrt_js(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(a, device=self.R.device)
        b = torch.as_tensor(b, device=self.R.device)
        with torch.no_grad():
            m = torch.index_select(self.R, 0, a)
            m.add_(torch.index_select(self.R, 0, b)).mul_(0.5)
            js = (0.5 * (self.F[a] + self.F[b]) - _sum_xlogx(m)).clamp_(0.0, LOG2)
            return torch.sqrt(js.clamp_min(_SQRT_EPS))


def _sum_xlogx(R: torch.Tensor) -> torch.Tensor:
    """``Σ_k R_k log R_k`` per row (``0 log 0 = 0``), float32."""
    logs = R.clamp_min(torch.finfo(R.dtype).tiny)
    logs.log_()  # in place: one temporary of the rows' size
    return torch.linalg.vecdot(R, logs)


def _walk(
    nbrs: torch.Tensor, start: torch.Tensor, steps: Sequence[int], gen: torch.Generator
) -> torch.Tensor:
    """End points of random walks on the neighbour lists, one walk length per start cell.

    Each start cell draws its length uniformly from ``steps``; each step moves to a
    uniformly chosen entry of the current cell's neighbour list. Partners at several
    scales: one step is a nearest neighbour, longer walks reach further along the data.
    All on the device of ``nbrs`` (no synchronisation with the host).
    """
    dev, n = nbrs.device, len(start)
    cur = start.clone()
    if len(steps) == 1:
        for _ in range(int(steps[0])):
            cur = nbrs[cur, torch.randint(0, nbrs.shape[1], (n,), generator=gen, device=dev)]
        return cur
    lengths = torch.as_tensor(list(steps), device=dev)
    length = lengths[torch.randint(0, len(steps), (n,), generator=gen, device=dev)]
    for s in range(max(steps)):
        nxt = nbrs[cur, torch.randint(0, nbrs.shape[1], (n,), generator=gen, device=dev)]
        cur = torch.where(length > s, nxt, cur)
    return cur


def _pair_sqrt_js(z: torch.Tensor, b: int) -> torch.Tensor:
    """``√JS(φ(x_i), φ(y_i))`` from the logits ``z (K, 2b, m)`` of ``[x; y]``: ``(K, b)``."""
    phi = torch.softmax(z, dim=-1)
    return sqrt_js(phi[:, :b], phi[:, b:])


def _quadratic_form(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``vᵀ g(x) v = Σ_k φ_k (u_k − φ·u)²`` from the logits ``z`` and ``u = J_z v``."""
    phi = torch.softmax(z, dim=-1)
    u = u - (phi * u).sum(-1, keepdim=True)
    return (phi * u * u).sum(-1)


def _train_pass(
    cfg: NeuralFIM,
    stack: _StackedMLP,
    opt: _MemberAdamW,
    Xt: torch.Tensor,
    bank: _RowBank,
    cells: torch.Tensor | None,
    loc: torch.Tensor,
    mates: torch.Tensor | None,
    gens: Sequence[torch.Generator],
    shift_rng: np.random.Generator,
    members: torch.Tensor | None,
) -> tuple[torch.Tensor, int]:
    """One pass over the anchors ``loc (G, na)``, ``G`` = 1 (shared batches) or K.

    A batch is ``h = batch_size // 2`` anchors and their near partners ``mates`` (the same
    slice), ``B = 2h`` cells, forwarded once. Its pairs are the ``h`` near pairs (anchor,
    mate) and ``R·B`` random pairs among its cells: cell ``i`` with cell ``i + s (mod B)``
    for ``R = random_partners`` distinct random shifts ``s`` (the batch is in random order,
    so these are random pairs). The loss weighs the mean over the near pairs by
    ``neighbor_fraction`` and the mean over the random ones by the rest. ``loc`` and
    ``mates`` index ``bank`` (and ``cells``, when the rows are pooled). Without near
    partners (``mates`` None) a batch is ``batch_size`` cells and all its pairs are random.
    Returns the pair-weighted sum of the members' losses and the number of pairs.
    """
    G, na = loc.shape
    dev, d = Xt.device, Xt.shape[1]
    f = cfg.neighbor_fraction if mates is not None else 0.0
    R = cfg.random_partners if f < 1 else 0
    h = max(1, cfg.batch_size // 2 if mates is not None else cfg.batch_size)
    q_max = cfg.batch_size if cfg.trace_cells is None else max(1, cfg.trace_cells)
    Ka = len(gens) if members is None else len(members)
    total, count = torch.zeros(Ka, device=dev), 0
    for s in range(0, na, h):
        la = loc[:, s : s + h]
        hb = la.shape[1]
        batch = la if mates is None else torch.cat([la, mates[:, s : s + h]], 1)  # (G, B)
        B = batch.shape[1]
        shifts = []
        if R and B > 1:
            shifts = (shift_rng.permutation(B // 2)[: min(R, B // 2)] + 1).tolist()
        t_near = t_rand = None
        if mates is not None and f > 0:
            t_near = bank.sqrt_js(la.reshape(-1), batch[:, hb:].reshape(-1)).view(G, hb)
        if shifts:
            other = torch.cat([torch.roll(batch, -sh, 1) for sh in shifts], 1)
            t_rand = bank.sqrt_js(batch.repeat(1, len(shifts)).reshape(-1), other.reshape(-1))
            t_rand = t_rand.view(G, -1)
        q = min(q_max, B) if cfg.trace_weight > 0 else 0
        v = None
        if q:  # every member its own probes, from its own stream
            v = torch.stack([torch.randn(q, d, generator=g, device=dev) for g in gens])
            v = v if members is None else v[members]
        idx = batch if cells is None else cells[batch]
        if G > 1 and members is not None:
            idx = idx[members]
            t_near = None if t_near is None else t_near[members]
            t_rand = None if t_rand is None else t_rand[members]
        x = Xt[idx[0]] if G == 1 else Xt[idx]  # (B, d) shared or (Ka, B, d)
        z, u = stack.forward(x, v, members)  # (Ka, B, m)
        lp = torch.log_softmax(z, dim=-1)
        p = torch.exp(lp)
        nh = (p * lp).sum(-1)  # Σ p log p of every cell, once
        loss = torch.zeros(Ka, device=dev)
        if t_near is not None:
            dn = _sqrt_js_terms(p[:, :hb], p[:, hb:], nh[:, :hb], nh[:, hb:])
            loss = loss + f * ((dn - t_near) ** 2).mean(-1)
            if cfg.local_weight > 0:  # ⅛ δᵀ g(x) δ on the near pairs, δ = mate − anchor
                xa, xm = x[..., :hb, :], x[..., hb:, :]
                zl, ul = stack.forward(xa, (xm - xa).expand(z.shape[0], -1, -1), members)
                pl = torch.sqrt((_quadratic_form(zl, ul) / 8).clamp_min(_SQRT_EPS))
                loss = loss + f * cfg.local_weight * ((pl - t_near) ** 2).mean(-1)
        if shifts:
            r = len(shifts)
            po = torch.cat([torch.roll(p, -sh, 1) for sh in shifts], 1)
            nho = torch.cat([torch.roll(nh, -sh, 1) for sh in shifts], 1)
            dr = _sqrt_js_terms(p.repeat(1, r, 1), po, nh.repeat(1, r), nho)
            loss = loss + (1 - f) * ((dr - t_rand) ** 2).mean(-1)
        if q:
            loss = loss + cfg.trace_weight * _quadratic_form(z[:, :q], u).mean(-1) / 8
        loss.sum().backward()
        opt.step()
        n_pairs = (hb if t_near is not None else 0) + len(shifts) * B
        total += loss.detach() * n_pairs
        count += n_pairs
    return total, count


def _sqrt_js_terms(p, q, nh_p, nh_q):
    """``√JS(p, q)`` of strictly positive rows from their ``Σ p log p`` (clamped as sqrt_js)."""
    m = 0.5 * (p + q)
    js = 0.5 * (nh_p + nh_q) - (m * torch.log(m.clamp_min(1e-30))).sum(-1)
    return torch.sqrt(js.clamp(0.0, LOG2).clamp_min(_SQRT_EPS))


def check_members(models: Sequence[NeuralFIM]) -> None:
    """Raise ``ValueError`` unless the models share every setting but the seed."""
    if not models:
        raise ValueError("at least one model is needed")
    first = models[0]
    for k, m in enumerate(models[1:], 1):
        for name in SHARED_CONFIG:
            if getattr(m, name) != getattr(first, name):
                raise ValueError(
                    f"ensemble members must share {name!r}: member {k} has "
                    f"{getattr(m, name)!r}, member 0 {getattr(first, name)!r}"
                )


def train_members(
    models: Sequence[NeuralFIM], X: np.ndarray, rows: RowsFn, nbrs: np.ndarray | None
) -> None:
    """Train the models jointly (one batched network); sets their ``net_`` and ``history_``.

    ``X`` is validated ``(n, d)`` (float32 or float64); ``nbrs`` the neighbour lists of the near partners
    (None: uniform partners only). The pair stream is seeded by the first model's
    ``random_state``; member ``k`` is initialised with its own.
    """
    from .neural_fim import _rows_in_chunks

    t0 = time.perf_counter()
    check_members(models)
    cfg = models[0]
    dev = cfg.device
    K = len(models)
    n, d = X.shape
    seed = cfg.random_state
    if seed is None:
        seed = int(np.random.default_rng().integers(2**62))
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))

    nets = [m._init_net(d) for m in models]
    mean, scale = cfg._standardisation(X)
    for net in nets:
        net.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        net.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
    stack = _StackedMLP(nets, dev)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    nb = None if nbrs is None else torch.as_tensor(nbrs, dtype=torch.long, device=dev)

    # the pairs of member k are drawn from its own stream (seeded by its random_state, as a
    # single fit's): members that saw the same batches would share their sampling noise,
    # which averaging could not remove
    gens = [gen]
    for m in models[1:]:
        g = torch.Generator(device=dev)
        rs = m.random_state
        g.manual_seed(int(np.random.default_rng().integers(2**62) if rs is None else rs))
        gens.append(g)

    def randint(high: int, size: int, g: torch.Generator = gen) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=g, device=dev)

    def near_mask(size: int, g: torch.Generator = gen) -> torch.Tensor:
        return torch.rand(size, generator=g, device=dev) < cfg.neighbor_fraction

    # fixed held-out pairs: random partners, and neighbour partners in the same share as in
    # training, so that the stopping rule watches both scales
    n_val = max(1, cfg.n_val_pairs)
    vi, vj = randint(n, n_val), randint(n, n_val)
    if nb is not None:
        vj = torch.where(near_mask(n_val), _walk(nb, vi, cfg.walk_steps, gen), vj)
    v_idx = torch.cat([vi, vj])
    vbank = _RowBank(_rows_in_chunks(rows, v_idx.cpu().numpy(), 4096), dev)
    # each held-out cell is forwarded once per round: 8192 draws from 3000 cells are only
    # about 2800 distinct cells, so the check costs a third of a forward of every draw
    v_cells, v_pos = torch.unique(v_idx, return_inverse=True)
    ar = torch.arange(n_val, device=dev)
    v_target = vbank.sqrt_js(ar, ar + n_val)
    n_states = vbank.R.shape[1]
    del vbank  # the held-out targets are all that is needed of its rows

    # Rows of Pᵗ are computed once per pool of cells and shared by the pairs drawn in it.
    # When all rows fit in `cache_entries` numbers, the pool is the whole data set and is
    # computed once for the whole fit. Otherwise a pool holds `pool_size // 2` anchor cells
    # of the epoch's permutation and one random neighbour of each, so that neighbour pairs
    # are available inside the pool.
    G = 1 if cfg.shared_batches else K  # streams of batches
    R = cfg.random_partners if (nb is None or cfg.neighbor_fraction < 1) else 0
    pairs_per_anchor = max(1, (1 + 2 * R) if nb is not None else R)
    h = max(1, cfg.batch_size // 2 if nb is not None else cfg.batch_size)
    cached = None
    if n * n_states <= cfg.cache_entries:
        cached = _RowBank(_rows_in_chunks(rows, np.arange(n), 4096), dev)
        # small data: an epoch visits every cell often enough to be `epoch_pairs` pairs
        n_anchor, reuse = n, max(1, math.ceil(cfg.epoch_pairs / (n * pairs_per_anchor)))
    else:
        n_anchor = cfg.pool_size // 2 if nb is not None else cfg.pool_size
        n_anchor, reuse = max(1, n_anchor), max(1, cfg.pool_reuse)
    pairs_per_epoch = reuse * n * pairs_per_anchor
    budget = min(cfg.epochs * pairs_per_epoch, max(cfg.min_epochs * pairs_per_epoch, cfg.max_pairs))
    # the rounds of the schedule: the held-out loss is checked after every epoch, or every
    # `eval_pairs` pairs when an epoch is longer, so that the learning-rate schedule and
    # early stopping act alike on 3000 cells and on a million
    step_pairs = h * pairs_per_anchor
    steps_per_epoch = reuse * sum(
        math.ceil(min(n_anchor, n - p) / h) for p in range(0, n, n_anchor)
    )
    steps_per_round = min(steps_per_epoch, max(1, math.ceil(cfg.eval_pairs / step_pairs)))
    round_pairs = (
        pairs_per_epoch if steps_per_round == steps_per_epoch else steps_per_round * step_pairs
    )
    n_rounds = max(1, budget // round_pairs)
    # the shifts that pair the cells of a batch: drawn on the host (no device round trip)
    shift_rng = np.random.default_rng(int(seed))

    def batches():
        """``(bank, cells, loc, mates)`` of one step each, epoch after epoch."""
        while True:
            if cached is not None:  # every stream its own permutation of the cells
                perms = torch.stack([torch.randperm(n, generator=g, device=dev) for g in gens[:G]])
                for s in range(0, n, h):
                    loc = perms[:, s : s + h]
                    mates = None
                    if nb is not None:
                        mates = torch.stack(
                            [_walk(nb, loc[k], cfg.walk_steps, g) for k, g in enumerate(gens[:G])]
                        )
                    yield cached, None, loc, mates
                continue
            perm = torch.randperm(n, generator=gen, device=dev)  # pools shared by the streams
            for p0 in range(0, n, n_anchor):  # a pool: anchors and one near partner of each
                cells = perm[p0 : p0 + n_anchor]
                na = len(cells)
                if nb is not None:
                    cells = torch.cat([cells, _walk(nb, cells, cfg.walk_steps, gen)])
                bank = _RowBank(_rows_in_chunks(rows, cells.cpu().numpy(), 4096), dev)
                loc = torch.arange(na, device=dev)[None].expand(G, na)
                for r in range(reuse):
                    if r > 0 or G > 1:  # a new order of the pool's anchors
                        loc = torch.stack(
                            [torch.randperm(na, generator=g, device=dev) for g in gens[:G]]
                        )
                    # the anchor's own mate, which was put in the pool
                    mates = None if nb is None else loc + na
                    for s in range(0, na, h):
                        m = None if mates is None else mates[:, s : s + h]
                        yield bank, cells, loc[:, s : s + h], m

    lr = torch.full((K,), cfg.lr, device=dev)
    opt = _MemberAdamW(stack.params, lr, cfg.weight_decay)
    lr_now = [cfg.lr] * K
    lr_host = list(lr_now)
    lr_min = cfg.lr * cfg.lr_factor**cfg.n_lr_decays
    best = [math.inf] * K
    wait, lr_wait = [0] * K, [0] * K
    active = list(range(K))
    best_state = stack.state()
    train_curves: list[list[float]] = [[] for _ in range(K)]
    val_curves: list[list[float]] = [[] for _ in range(K)]
    n_pairs = [0] * K
    desc = "neural FIM" if K == 1 else f"neural FIM ({K} networks)"
    bar = progress_bar(total=n_rounds, desc=desc, unit="round", progress=cfg.progress)
    stream = batches()
    for _ in range(n_rounds):
        members = None if len(active) == K else torch.as_tensor(active, device=dev)
        total = torch.zeros(len(active), device=dev)
        count = 0
        for _ in range(steps_per_round):
            bank, cells, loc, mates = next(stream)
            tot, cnt = _train_pass(
                cfg, stack, opt, Xt, bank, cells, loc, mates, gens, shift_rng, members
            )
            total += tot
            count += cnt
        for k in active:
            n_pairs[k] += count
        with torch.no_grad():
            zv, _ = stack.forward(Xt[v_cells], None, members)  # shared held-out pairs
            zv = zv[:, v_pos]
            val = ((_pair_sqrt_js(zv, n_val) - v_target) ** 2).mean(-1)
            val_host = val.cpu().tolist()  # one read-back per round: the stopping rule
            train_host = (total / max(count, 1)).cpu().tolist()
        improved, stopped = [], []
        for slot, k in enumerate(active):
            v_k = val_host[slot]
            train_curves[k].append(train_host[slot])
            val_curves[k].append(v_k)
            if v_k < best[k] * (1 - cfg.tol) - 1e-7:
                best[k], wait[k], lr_wait[k] = v_k, 0, 0
                improved.append(k)
                continue
            wait[k], lr_wait[k] = wait[k] + 1, lr_wait[k] + 1
            if wait[k] >= cfg.patience:
                stopped.append(k)
            elif cfg.lr_patience and lr_wait[k] >= cfg.lr_patience:
                if lr_now[k] * cfg.lr_factor < lr_min * (1 - 1e-9):
                    stopped.append(k)  # the schedule is exhausted: converged
                else:
                    lr_now[k], lr_wait[k] = lr_now[k] * cfg.lr_factor, 0
        if improved:
            idx = torch.as_tensor(improved, device=dev)
            with torch.no_grad():
                for bs, p in zip(best_state, stack.params, strict=True):
                    bs[idx] = p.detach()[idx]
        active = [k for k in active if k not in stopped]
        new_lr = [lr_now[k] if k in active else 0.0 for k in range(K)]
        if new_lr != lr_host:  # a host-to-device copy only when a rate changes
            lr_host = new_lr
            lr.copy_(torch.as_tensor(new_lr))
        bar.set_postfix(val=f"{min(val_host):.4g}", networks=len(active), refresh=False)
        bar.update()
        if not active:
            break
    bar.close()
    stack.write_back(nets, best_state)
    seconds = time.perf_counter() - t0
    for k, (model, net) in enumerate(zip(models, nets, strict=True)):
        net.to(dev).eval()
        model.net_ = net
        model.n_features_ = d
        model.history_ = {
            "train_loss": np.asarray(train_curves[k]),
            "val_loss": np.asarray(val_curves[k]),
            "best_val_loss": np.float64(best[k]),
            "n_pairs": np.int64(n_pairs[k]),
            "fit_seconds": np.float64(seconds),
            "n_members": np.int64(K),
        }
