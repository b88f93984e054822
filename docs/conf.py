"""Sphinx configuration of the scfim documentation.

Build with ``make docs`` (its own virtual environment, ``.venv-docs``), which runs
``sphinx -W --keep-going -b html docs docs/_build/html``: every warning fails the build.

Tutorials live in ``tutorials/`` at the repository root (that is where users find them);
this file copies them into ``docs/tutorials/`` (git-ignored) before the build, so that
they are inside the Sphinx source tree without symlinks (which break on some systems and
in source archives). A notebook is copied only when its bytes changed, so incremental
builds do not re-read (and re-execute) unchanged notebooks.
"""

from __future__ import annotations

import inspect
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ---------------------------------------------------------------------------------------
# tutorials/*.ipynb -> docs/tutorials/ (git-ignored copy)
# ---------------------------------------------------------------------------------------


def _ipsc_cached() -> bool:
    """Whether the iPSC data file is in the cache and verified (no download attempted)."""
    try:
        from scfim import datasets
        from scfim._download import cache_dir, git_blob_id

        path = cache_dir() / datasets.IPSC_FILE
        return path.exists() and git_blob_id(path) == datasets.IPSC_BLOB_ID
    except ImportError:  # scfim or pooch missing: treat as not cached
        return False


IPSC_CACHED = _ipsc_cached()
_IPSC_NOTE = {
    True: (
        "```{note}\nThis page was executed when the documentation was built: the iPSC data "
        "were in the cache of the build machine. Its figures are the real output.\n```"
    ),
    False: (
        "```{note}\nThis page was **not executed** when the documentation was built: the "
        "iPSC data were not in the cache of the build machine (which has no network "
        "access). Run `scfim.datasets.ipsc()` once on a machine with network access (or "
        "put `ipscData.mat` into the cache folder), then build again, or run the notebook "
        "yourself.\n```"
    ),
}


def _with_note(nb_bytes: bytes, note: str) -> bytes:
    """The notebook with a Markdown note inserted after its title cell."""
    import json

    nb = json.loads(nb_bytes)
    cell = {"cell_type": "markdown", "id": "build-note", "metadata": {}, "source": note}
    nb["cells"].insert(1, cell)
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


def _sync_tutorials(src: Path = ROOT / "tutorials", dst: Path = HERE / "tutorials") -> None:
    dst.mkdir(exist_ok=True)
    wanted = {p.name for p in src.glob("*.ipynb")}
    for p in sorted(src.glob("*.ipynb")):
        target = dst / p.name
        data = p.read_bytes()
        if p.name == "ipsc.ipynb":  # say on the page whether it was executed
            data = _with_note(data, _IPSC_NOTE[IPSC_CACHED])
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    for stale in dst.glob("*.ipynb"):  # a notebook removed from tutorials/
        if stale.name not in wanted:
            stale.unlink()


_sync_tutorials()

# Notebooks are executed in a kernel started from this interpreter (.venv-docs). Do not set
# MPLBACKEND here: the kernel inherits it, and a non-inline backend (Agg) silently drops
# every figure from the pages.
os.environ.pop("MPLBACKEND", None)

# ---------------------------------------------------------------------------------------
# project
# ---------------------------------------------------------------------------------------

project = "scfim"
author = "scfim developers"
copyright = "scfim developers"
try:
    release = version("scfim")
except PackageNotFoundError:  # pragma: no cover - building from a tree without install
    release = "0.0.0"
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.mathjax",
]

# Markdown pages (index, design) and notebooks are both read by myst-nb.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "check_site.py"]
templates_path = ["_templates"]

# ---------------------------------------------------------------------------------------
# API reference: autosummary + numpydoc
# ---------------------------------------------------------------------------------------

autosummary_generate = True  # stubs go to docs/generated/ (git-ignored)
autosummary_imported_members = False
autodoc_typehints = "none"  # the signatures carry the hints; numpydoc lists parameters
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc emits no validation warnings unless asked; keep it that way (docstring style is
# checked by review, -W catches reST errors that would break the pages).
numpydoc_validation_checks: set[str] = set()

# ---------------------------------------------------------------------------------------
# MyST / myst-nb
# ---------------------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Execute notebooks that have no stored outputs (tutorials are committed without outputs);
# results are cached in docs/_build/.jupyter_cache so that an unchanged notebook is not
# re-run by the next incremental build.
nb_execution_mode = "cache"
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True  # an exception in a tutorial fails the build
nb_execution_show_tb = True
# The iPSC tutorial needs downloaded data: it is executed when the file is in the cache
# (scfim.datasets.ipsc() ran once on this machine, or $SCFIM_DATA_DIR points at a copy),
# else rendered without outputs, with a note saying so (see _sync_tutorials).
nb_execution_excludepatterns = [] if IPSC_CACHED else ["tutorials/ipsc.ipynb"]
# Anything a tutorial writes to stderr (warnings, progress bars) becomes a Sphinx warning,
# which -W turns into a failed build: the pages never show stray stderr to a reader.
nb_output_stderr = "warn"
nb_merge_streams = True

# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"scfim {release}"
html_theme_options = {
    "show_navbar_depth": 2,
    "home_page_in_toc": True,
    "use_download_button": True,
}
html_static_path: list[str] = []
html_show_sourcelink = False

# ---------------------------------------------------------------------------------------
# Returns sections written as prose
# ---------------------------------------------------------------------------------------
# The tl/pl docstrings open their Returns section with a sentence ("None, or the modified
# copy when copy=True. Writes ...", "The Axes.") instead of numpydoc's "type" line followed
# by an indented description. numpydoc then renders the whole sentence as a bold return
# type. This hook (run before numpydoc's own) inserts the type from the function's return
# annotation and indents the prose under it, so the pages read well whichever style the
# docstring uses. A docstring already in numpydoc form is left alone.

_TYPE_LINE = re.compile(r"^[\w.\[\], |:]+$")


def _return_type(obj) -> str:
    try:
        ann = inspect.signature(obj).return_annotation
    except (TypeError, ValueError):
        return ""
    if ann is inspect.Signature.empty:
        return ""
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    return text.replace(" | ", " or ")


def _fix_returns(app, what, name, obj, options, lines: list[str]) -> None:
    if what not in ("function", "method"):
        return
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Returns" and set(lines[i + 1].strip()) == {"-"}:
            start = i + 2
            break
    else:
        return
    end = start
    while end < len(lines):
        nxt = lines[end + 1].strip() if end + 1 < len(lines) else ""
        if lines[end].strip() and not lines[end].startswith(" ") and nxt and set(nxt) == {"-"}:
            break  # next section header
        end += 1
    first = next((ln for ln in lines[start:end] if ln.strip()), "")
    head = first.strip()
    if not head or (_TYPE_LINE.match(head) and not head.endswith(".")):
        return  # already "type" (or "name : type") form
    rtype = _return_type(obj)
    if not rtype:
        return
    body = [("    " + ln) if ln.strip() else ln for ln in lines[start:end]]
    lines[start:end] = [rtype, *body]


def setup(app):
    """Sphinx extension hook: rewrite prose Returns sections before numpydoc parses them."""
    app.connect("autodoc-process-docstring", _fix_returns, priority=400)
