"""The set-up text a new user reads agrees with the package metadata."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_version_is_stated_one_way():
    """README, the installation page and the Makefile state pyproject's requires-python."""
    meta = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+, the package 3.10+
    minimum = re.search(r'^requires-python = ">=\s*(3\.\d+)"', meta, re.M).group(1)
    tested = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', meta)
    stated = f"Python ≥ {minimum} (CI tests {', '.join(tested)})"
    for page in ("README.md", "docs/installation.md"):
        text = (ROOT / page).read_text()
        assert stated in text, f"{page} does not say {stated!r}"
        others = set(re.findall(r"Python (?:≥|>=)?\s*(3\.\d+)", text)) - {minimum}
        assert not others, f"{page} also names Python {others}"
    assert f"PY_MIN := {minimum}\n" in (ROOT / "Makefile").read_text()
