r"""Download a data file once, cache it and verify it by its git blob id (optional pooch).

A git blob id is the SHA-1 of ``b"blob <size>\0" + content``: the id GitHub shows for
every file of a repository, so a file published in a repository can be verified without a
separately published checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["cache_dir", "fetch_verified", "git_blob_id"]

_CHUNK = 1 << 20


def git_blob_id(path: str | os.PathLike) -> str:
    r"""Git blob id of a file: SHA-1 of ``b"blob <size>\0"`` followed by its bytes."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``explicit``, else ``$SCFIM_DATA_DIR``, else pooch's user cache."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("SCFIM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(_pooch().os_cache("scfim"))


def _pooch():
    try:
        import pooch
    except ImportError:
        raise ImportError(
            "downloading data sets needs the optional dependency pooch: "
            "`pip install pooch` (or `pip install 'scfim[data]'`)"
        ) from None
    return pooch


def _copy_local(url: str, output_file, pooch_obj=None) -> None:
    """A pooch downloader for ``file://`` URLs (a local mirror or a copy on a share)."""
    src = Path(unquote(urlparse(url).path))
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    if hasattr(output_file, "write"):
        with src.open("rb") as f:
            shutil.copyfileobj(f, output_file)
    else:
        shutil.copyfile(src, output_file)


def fetch_verified(
    url: str,
    blob_id: str,
    fname: str,
    *,
    folder: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Path of ``fname`` in the cache, downloaded from ``url`` if missing, verified.

    A cached file whose blob id matches is used without network access; a cached file
    that does not match (a partial or corrupted download) is downloaded again; a
    download that does not match is deleted and raises a :class:`ValueError`. ``http(s)``
    URLs are fetched with pooch, ``file://`` URLs are copied.

    Raises
    ------
    ImportError
        pooch is not installed (only when the file must be downloaded).
    ConnectionError
        The download failed (offline, unreachable host, HTTP error).
    ValueError
        The downloaded file does not have the expected blob id.
    """
    target_dir = cache_dir(folder)
    target = target_dir / fname
    if target.exists():
        if git_blob_id(target) == blob_id:
            return target
        target.unlink()  # partial or corrupted: download again
    local = urlparse(url).scheme == "file"
    pooch = None if local else _pooch()
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        if local:
            _copy_local(url, target)
        else:
            downloader = pooch.HTTPDownloader(progressbar=progress)
            pooch.retrieve(
                url, known_hash=None, fname=fname, path=target_dir, downloader=downloader
            )
    except Exception as err:  # requests' ConnectionError/HTTPError, OSError, ...
        if target.exists():
            target.unlink()
        raise ConnectionError(
            f"could not download {url} ({type(err).__name__}: {err}). Are you offline? "
            f"Download the file on a machine with network access and put it at {target} "
            "(or pass url='file:///path/to/the/file')."
        ) from err
    got = git_blob_id(target)
    if got != blob_id:
        target.unlink()
        raise ValueError(
            f"{fname} from {url} has git blob id {got}, expected {blob_id}: the download "
            "is corrupted or the file changed upstream; the file was removed"
        )
    return target
