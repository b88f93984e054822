"""Scoped torch thread count for the small-operation loops of scfim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block (None leaves them), restoring them after."""
    import torch

    old = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)
