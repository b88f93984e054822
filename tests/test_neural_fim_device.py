"""Inference of neural FIM on a device: clear errors, one copy per chunk, CPU = GPU.

The GPU cases skip where CUDA is not available; the CPU cases pin the device handling
(what is copied, when) and the Gram form against the explicit Fisher information.
"""

import numpy as np
import pytest
import torch

from scfim.models.neural_fim import NeuralFIM, _gram_eigs, check_device

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")


def _model(d: int = 6, m: int = 5, device: str = "cpu", seed: int = 0) -> NeuralFIM:
    model = NeuralFIM(m, (16, 12), random_state=seed, progress=False)
    model.net_ = model._init_net(d).eval()
    model.n_features_ = d
    return model


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(50, 6))


# ---------------------------------------------------------------- devices
@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error_not_a_fallback():
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_device("cuda")
    state = _model().to_dict()
    with pytest.raises(ValueError, match="CUDA is not available"):
        NeuralFIM.from_dict(state, device="cuda")


@pytest.mark.parametrize("bad", ["xla", "not a device"])
def test_check_device_rejects_unsupported_devices(bad):
    with pytest.raises(ValueError, match="device="):
        check_device(bad)


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
def test_tl_neural_fim_on_a_missing_device_is_an_error_before_any_write():
    """tl.neural_fim and neural_fim_transform validate the device like the model does."""
    import anndata as ad

    import scfim

    adata = ad.AnnData(np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32))
    before = set(adata.obs) | set(adata.obsm) | set(adata.uns)
    for call in (scfim.tl.neural_fim, scfim.tl.neural_fim_transform):
        args = (adata,) if call is scfim.tl.neural_fim else (adata, adata)
        with pytest.raises(ValueError, match="CUDA is not available"):
            call(*args, device="cuda")
    assert set(adata.obs) | set(adata.obsm) | set(adata.uns) == before


def test_check_device_accepts_cpu():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")).type == "cpu"


def test_results_are_gathered_on_the_device_and_copied_back_once(X, monkeypatch):
    """Per-chunk results stay on the model's device; one copy per output at the end."""
    model = _model()
    calls = []
    original = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    model.summary(X, chunk_size=7)  # 8 chunks
    assert sorted(calls) == [(50,), (50, 5)]  # trace and eigenvalues, once each
    calls.clear()
    model.transform(X, chunk_size=7)
    assert calls == [(50, 5)]


def test_chunk_size_does_not_change_the_summary(X):
    """Up to float32 round-off of the Jacobian (GEMM blocking depends on the batch)."""
    model = _model()
    a = model.summary(X, chunk_size=7)
    b = model.summary(X)
    for key in ("trace", "log_volume", "eigenvalues"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
    with pytest.raises(ValueError, match="chunk_size"):
        model.summary(X, chunk_size=0)


def test_float32_input_is_not_copied_to_float64(X):
    """A float32 matrix goes through unchanged (the Jacobian is float32 anyway)."""
    model = _model()
    X32 = X.astype(np.float32)
    assert model._as_input(X32) is X32
    a, b = model.summary(X32), model.summary(X32.astype(np.float64))
    np.testing.assert_array_equal(a["eigenvalues"], b["eigenvalues"])
    bad = X32.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.summary(bad)


# ---------------------------------------------------------------- the Gram form
def test_rank_one_centred_gram_equals_the_explicit_fisher_information():
    """Eigenvalues and trace of C K Cᵀ (rank-one centring) vs g = AᵀA built explicitly."""
    rng = np.random.default_rng(3)
    B, m, d = 40, 7, 11
    logits = torch.as_tensor(rng.normal(size=(B, m)) * 2)
    J = torch.as_tensor(rng.normal(size=(B, m, d)))
    trace, eig = _gram_eigs(logits, J)
    phi = torch.softmax(logits, -1)
    A = phi.sqrt()[:, :, None] * (J - torch.einsum("bm,bmd->bd", phi, J)[:, None, :])
    g = A.transpose(1, 2) @ A  # (B, d, d), the Fisher information
    ev_g = torch.linalg.eigvalsh(g)[:, -m:]
    np.testing.assert_allclose(trace, torch.diagonal(g, dim1=1, dim2=2).sum(-1), rtol=1e-12)
    scale = ev_g[:, -1:].numpy()
    np.testing.assert_allclose(eig.numpy() / scale, ev_g.numpy() / scale, atol=1e-12)
    assert np.all(np.abs(eig[:, 0].numpy()) <= 1e-12 * scale[:, 0])  # √φ is in the kernel


def test_summary_agrees_with_the_explicit_matrices(X):
    model = _model()
    s = model.summary(X, jacobian_dtype=torch.float64)
    g = model.fim(X)
    lam = np.linalg.eigvalsh(g)[:, ::-1][:, : model.rank]
    np.testing.assert_allclose(s["eigenvalues"], lam, rtol=1e-9, atol=1e-12 * lam.max())
    np.testing.assert_allclose(s["trace"], np.trace(g, axis1=1, axis2=2), rtol=1e-10)


# ---------------------------------------------------------------- on a GPU
@needs_cuda
def test_summary_and_transform_on_cuda_match_cpu(X):
    cpu = _model()
    gpu = NeuralFIM.from_dict(cpu.to_dict(), device="cuda")
    assert gpu.network.mlp[0].weight.device.type == "cuda"
    a, b = cpu.summary(X), gpu.summary(X)
    lam1 = a["eigenvalues"][:, :1]
    np.testing.assert_allclose(b["eigenvalues"] / lam1, a["eigenvalues"] / lam1, atol=1e-5)
    np.testing.assert_allclose(b["trace"], a["trace"], rtol=1e-5)
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), atol=1e-6)
    assert gpu._chunk_cells(None) == 32768


@needs_cuda
def test_tl_transform_on_cuda_matches_cpu():
    import anndata as ad

    import scfim

    rng = np.random.default_rng(1)
    adata = ad.AnnData(rng.normal(size=(300, 5)).astype(np.float32))
    scfim.tl.diffusion(adata, use_rep="X", n_landmarks=None)
    scfim.tl.neural_fim(adata, epochs=2, n_ensemble=2, progress=False, device="cuda")
    new = ad.AnnData(rng.normal(size=(40, 5)).astype(np.float32))
    on_gpu = scfim.tl.neural_fim_transform(new, adata, device="cuda", copy=True)
    on_cpu = scfim.tl.neural_fim_transform(new, adata, device="cpu", copy=True)
    for key in ("fim_trace", "fim_log_volume"):
        np.testing.assert_allclose(on_gpu.obs[key], on_cpu.obs[key], rtol=1e-4, atol=1e-5)
