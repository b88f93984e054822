"""scfim.datasets.ipsc: download once, cache, verify by git blob id (offline tests).

This machine has no internet: a small synthetic ``.mat`` stands in for the real file,
served from a ``file://`` URL (copied like a download) or placed in the cache; the
expected blob id is the synthetic file's own.
"""

from __future__ import annotations

import builtins
import hashlib
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import savemat

from scfim import _download, datasets


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def mat(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7))
    time = np.repeat(np.arange(5), 10).astype(float)[:, None]
    path = tmp_path / "source" / "ipscData.mat"
    path.parent.mkdir()
    savemat(path, {"data": X, "data_time": time})
    return path, X, time.ravel()


@pytest.fixture
def synthetic(mat, monkeypatch):
    path, X, time = mat
    monkeypatch.setattr(datasets, "IPSC_BLOB_ID", _blob(path.read_bytes()))
    return path, X, time


def test_git_blob_id_matches_git(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"hello\n")
    # `git hash-object` of "hello\n"
    assert _download.git_blob_id(f) == "ce013625030ba8dba906f756967f9e9ca394464a"
    big = tmp_path / "big.bin"
    data = np.random.default_rng(1).bytes(3 * (1 << 20) + 17)  # several read chunks
    big.write_bytes(data)
    assert _download.git_blob_id(big) == _blob(data)
    try:
        out = subprocess.run(["git", "hash-object", str(big)], capture_output=True, text=True)
    except FileNotFoundError:  # pragma: no cover - git not installed
        return
    if out.returncode == 0:
        assert out.stdout.strip() == _blob(data)


def test_ipsc_downloads_caches_and_reads(synthetic, tmp_path):
    path, X, time = synthetic
    cache = tmp_path / "cache"
    adata = datasets.ipsc(url=path.as_uri(), cache_dir=cache)
    np.testing.assert_allclose(adata.X, X.astype(np.float32))
    np.testing.assert_array_equal(adata.obs["data_time"].to_numpy(), time)
    assert adata.obs_names[0] == "cell_0" and adata.var_names[-1] == "marker_6"
    assert adata.uns["ipsc"]["git_blob_id"] == datasets.IPSC_BLOB_ID
    assert (cache / "ipscData.mat").read_bytes() == path.read_bytes()
    # cached: the source may go away (offline), the cache is used
    path.unlink()
    again = datasets.ipsc(url=path.as_uri(), cache_dir=cache)
    np.testing.assert_array_equal(again.X, adata.X)


def test_ipsc_prepopulated_cache_through_env(synthetic, tmp_path, monkeypatch):
    path, X, _ = synthetic
    cache = tmp_path / "env_cache"
    cache.mkdir()
    (cache / "ipscData.mat").write_bytes(path.read_bytes())
    monkeypatch.setenv("SCFIM_DATA_DIR", str(cache))
    # the default URL is never contacted: the cached file has the right blob id
    adata = datasets.ipsc()
    assert adata.shape == X.shape


def test_ipsc_rejects_a_corrupted_download(synthetic, tmp_path):
    path, _, _ = synthetic
    bad = tmp_path / "bad" / "ipscData.mat"
    bad.parent.mkdir()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="git blob id .* expected"):
        datasets.ipsc(url=bad.as_uri(), cache_dir=cache)
    assert not (cache / "ipscData.mat").exists()  # nothing corrupted left behind


def test_ipsc_replaces_a_corrupted_cache(synthetic, tmp_path):
    path, X, _ = synthetic
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ipscData.mat").write_bytes(path.read_bytes()[:100])  # a partial download
    adata = datasets.ipsc(url=path.as_uri(), cache_dir=cache)
    assert adata.shape == X.shape


def test_ipsc_offline_message(synthetic, tmp_path):
    pytest.importorskip("pooch")
    # an unreachable address (port 9 on localhost: nothing listens) behaves like offline
    with pytest.raises(ConnectionError, match="Are you offline"):
        datasets.ipsc(url="http://127.0.0.1:9/ipscData.mat", cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "ipscData.mat").exists()
    # a missing local copy too
    with pytest.raises(ConnectionError, match="does not exist"):
        datasets.ipsc(url=(tmp_path / "nope.mat").as_uri(), cache_dir=tmp_path / "c")


def test_ipsc_without_pooch(synthetic, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pooch(name, *args, **kwargs):
        if name == "pooch" or name.startswith("pooch."):
            raise ImportError("No module named 'pooch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "pooch", None)
    monkeypatch.setattr(builtins, "__import__", no_pooch)
    with pytest.raises(ImportError, match="pip install pooch"):
        datasets.ipsc(cache_dir=tmp_path / "c")
    # a file:// copy and a filled cache need no pooch
    path, X, _ = synthetic
    assert datasets.ipsc(url=path.as_uri(), cache_dir=tmp_path / "c").shape == X.shape
    assert datasets.ipsc(cache_dir=tmp_path / "c").shape == X.shape


def test_ipsc_file_without_data_variable(tmp_path, monkeypatch):
    path = tmp_path / "x.mat"
    savemat(path, {"other": np.ones((3, 3))})
    monkeypatch.setattr(datasets, "IPSC_BLOB_ID", _blob(path.read_bytes()))
    with pytest.raises(ValueError, match="no MATLAB variable 'data'"):
        datasets.ipsc(url=path.as_uri(), cache_dir=tmp_path / "c")
