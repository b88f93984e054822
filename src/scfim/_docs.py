"""Shared numpydoc fragments of the tools' parameters (like scanpy's ``_doc_params``).

A docstring line that holds only ``{name}`` (indented like a parameter) is replaced by
the fragment of that name, indented to match; other braces in the docstring are left
alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["doc_params", "FRAGMENTS"]

F = TypeVar("F", bound=Callable)

FRAGMENTS: dict[str, str] = {
    "use_rep": (
        "use_rep\n"
        '    ``obsm`` key of the input space; default ``"X_pca"`` when present, else ``X``.'
    ),
    "key_added": "key_added\n    Name of the result: the keys written are listed under Returns.",
    "random_state": (
        "random_state\n"
        "    Seed, an integer ≥ 0 (None: not reproducible); with a fixed seed the result is\n"
        "    reproducible on CPU."
    ),
    "progress": "progress\n    Show a progress bar (``tqdm``).",
    "copy": "copy\n    Return a modified copy instead of writing into ``adata``.",
}


def doc_params(**extra: str) -> Callable[[F], F]:
    """Decorator filling ``{use_rep}``, ``{key_added}``, … lines of a docstring.

    Parameters
    ----------
    **extra
        Further fragments, or overrides of :data:`FRAGMENTS` for this function.

    Returns
    -------
    Callable
        The decorator.
    """
    fragments = {**FRAGMENTS, **extra}

    def fill(fn: F) -> F:
        doc = fn.__doc__
        if doc:
            for name, text in fragments.items():
                pattern = re.compile(r"^([ \t]*)\{" + re.escape(name) + r"\}[ \t]*$", re.M)

                def repl(m: re.Match, text: str = text) -> str:
                    return "\n".join(m.group(1) + line for line in text.splitlines())

                doc = pattern.sub(repl, doc)
            fn.__doc__ = doc
        return fn

    return fill
