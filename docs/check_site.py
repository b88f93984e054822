"""Check the built documentation as a reader sees it (``make docs-check``).

Serves ``docs/_build/html`` on 127.0.0.1, opens the index, installation, API and every
tutorial page in headless Chromium (Debian packages ``chromium`` and ``chromium-driver``)
through Selenium, and for each page

* saves a full-page screenshot, cut into 1280 x 1600 tiles, as
  ``<out>/<page>_01.png``, ``<out>/<page>_02.png``, ...;
* fails on a broken image (an ``<img>`` that did not load: missing file, HTTP error or
  ``naturalWidth == 0``), on a local resource that the browser could not load, on an
  error output of an executed cell (traceback, error or stderr output) and on an executed
  tutorial that shows no figure at all;
* fails on a link to a page of the site that does not exist;
* on the API page: fails when a public function of ``scfim.tl``, ``scfim.pl`` or
  ``scfim.datasets`` is missing from the summary tables, when a summary is cut off
  (unbalanced parentheses, or ending in an abbreviation such as "Fig." or "et al.":
  autosummary stops at the first period) or when a function's own page is missing;
* on the installation page: fails unless it shows how to install from a clone
  (``pip install -e .``) and from a built wheel (``.whl``).

It prints one line per page and exits with 1 if any page has a problem.

Usage: ``python docs/check_site.py docs/_build/html --out docs/_build/screenshots``
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, TILE = 1280, 1600
MAX_HEIGHT = 40_000

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

# images that did not load (missing file, 404, undecodable)
JS_BROKEN_IMAGES = """
return Array.from(document.images)
  .filter(img => !img.complete || img.naturalWidth === 0)
  .map(img => img.getAttribute('src'));
"""
# error outputs of executed cells (myst-nb renders them with these classes)
JS_ERROR_OUTPUTS = """
const sel = '.cell_output .output.traceback, .cell_output .output.error, ' +
            '.cell_output .output.stderr';
const bad = Array.from(document.querySelectorAll(sel)).map(e => e.innerText.slice(0, 300));
const tb = Array.from(document.querySelectorAll('.cell_output'))
  .filter(e => /Traceback \\(most recent call last\\)|^\\S*Error: /m.test(e.innerText))
  .map(e => e.innerText.slice(0, 300));
return bad.concat(tb);
"""
JS_COUNTS = """
return [document.querySelectorAll('.cell_output').length,
        document.querySelectorAll('.cell_output img').length,
        Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)];
"""
JS_IMAGES_DONE = "return Array.from(document.images).every(img => img.complete);"
# links to pages of this site (same origin), without the #fragment
JS_LOCAL_LINKS = """
return Array.from(document.querySelectorAll('a[href]'))
  .map(a => a.href.split('#')[0])
  .filter(h => h.startsWith(window.location.origin));
"""
# autosummary tables of the API page: [name, summary] per row
JS_SUMMARIES = """
return Array.from(document.querySelectorAll('table.autosummary tr')).map(tr =>
  Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()));
"""
JS_CODE = "return Array.from(document.querySelectorAll('pre')).map(p => p.innerText).join('\\n');"
# a summary line that stops inside an abbreviation (autosummary cuts at the first period)
CUT_ENDINGS = ("Fig.", "Figs.", "al.", "e.g.", "i.e.", "cf.", "Eq.", "Sec.", "vs.")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the output to one line per page
        pass


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={WIDTH},{TILE}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _tiles(png: Path, out: Path, stem: str) -> list[Path]:
    from PIL import Image

    paths = []
    with Image.open(png) as img:
        for k, top in enumerate(range(0, img.height, TILE), start=1):
            tile = img.crop((0, top, img.width, min(top + TILE, img.height)))
            path = out / f"{stem}_{k:02d}.png"
            tile.save(path)
            paths.append(path)
    return paths


def _public_functions() -> list[str]:
    import scfim

    names = []
    for module in ("tl", "pl", "datasets"):
        mod = getattr(scfim, module)
        names += [f"{module}.{n}" for n in getattr(mod, "__all__", []) if callable(getattr(mod, n))]
    return names


def check_api(driver) -> list[str]:
    """Every public function is listed with a complete summary sentence."""
    problems = []
    rows = {r[0]: r[1] for r in driver.execute_script(JS_SUMMARIES) if len(r) == 2}
    for name in _public_functions():
        summary = rows.get(name)
        if summary is None:
            problems.append(f"API page: {name} is not in the summary tables")
            continue
        if summary.count("(") != summary.count(")") or summary.endswith(CUT_ENDINGS):
            problems.append(f"API page: summary of {name} is cut off: {summary!r}")
    return problems


def check_install(driver) -> list[str]:
    code = driver.execute_script(JS_CODE)
    problems = []
    if "pip install -e ." not in code:
        problems.append("installation page: no install from a clone (pip install -e .)")
    if ".whl" not in code:
        problems.append("installation page: no install from a built wheel (.whl)")
    return problems


def _missing(urls: list[str]) -> list[str]:
    """Local URLs that the server answers with an error."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    bad = []
    for url in sorted(set(urls)):
        try:
            with urlopen(url, timeout=10):
                pass
        except (HTTPError, URLError) as err:
            bad.append(f"{url} ({err})")
    return bad


def check_page(driver, url: str, out: Path, stem: str) -> tuple[list[str], str]:
    """Open ``url``, screenshot it into ``out`` and list its problems (broken images, errors)."""
    driver.set_window_size(WIDTH, TILE)
    driver.get(url)
    deadline = time.time() + 20
    while time.time() < deadline and not driver.execute_script(JS_IMAGES_DONE):
        time.sleep(0.2)
    time.sleep(0.5)  # fonts and MathJax
    problems = [f"broken image: {src}" for src in driver.execute_script(JS_BROKEN_IMAGES)]
    problems += [f"error output: {text!r}" for text in driver.execute_script(JS_ERROR_OUTPUTS)]
    for entry in driver.get_log("browser"):
        msg = entry.get("message", "")
        # a page resource (image, script, style) that the server could not deliver
        if "Failed to load resource" in msg and "favicon.ico" not in msg:
            problems.append(f"browser: {msg[:200]}")
    problems += [f"broken link: {u}" for u in _missing(driver.execute_script(JS_LOCAL_LINKS))]
    if url.endswith("/api.html"):
        problems += check_api(driver)
    if url.endswith("/installation.html"):
        problems += check_install(driver)
    n_outputs, n_images, height = driver.execute_script(JS_COUNTS)
    if n_outputs and not n_images and "/tutorials/" in url:
        # an executed tutorial without a single figure: figures were lost (for example a
        # non-inline matplotlib backend in the kernel)
        problems.append("executed tutorial shows no figure")
    driver.set_window_size(WIDTH, min(int(height) + 40, MAX_HEIGHT))
    time.sleep(0.5)
    full = out / f"{stem}_full.png"
    driver.save_screenshot(str(full))
    tiles = _tiles(full, out, stem)
    full.unlink()
    summary = f"{n_outputs} outputs, {n_images} output figures, {len(tiles)} screenshots"
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    """Check every page of the built site; non-zero exit status on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="built HTML folder (docs/_build/html)")
    parser.add_argument("--out", type=Path, default=Path("docs/_build/screenshots"))
    parser.add_argument(
        "--pages",
        nargs="*",
        default=None,
        help="pages relative to the HTML folder (default: index, installation, api and "
        "tutorials/*.html)",
    )
    args = parser.parse_args(argv)

    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            print(f"error: {exe} not found; apt-get install -y chromium chromium-driver")
            return 2
    root = args.html.resolve()
    pages = args.pages or ["index.html", "installation.html", "api.html"] + sorted(
        str(p.relative_to(root)) for p in (root / "tutorials").glob("*.html")
    )
    if not (root / "index.html").exists():
        print(f"error: {root}/index.html not found; run `make docs` first")
        return 2
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    server, base = _serve(root)
    profile = Path(tempfile.mkdtemp(prefix="scfim-chromium-"))
    driver = _driver(profile)
    failed = 0
    try:
        for page in pages:
            stem = page.removesuffix(".html").replace("/", "_")
            problems, summary = check_page(driver, f"{base}/{page}", args.out, stem)
            status = "FAIL" if problems else "ok"
            print(f"{status:4} {page}: {summary}")
            for p in problems:
                print(f"     - {p}")
            failed += bool(problems)
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"screenshots in {args.out}; {len(pages) - failed}/{len(pages)} pages ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
