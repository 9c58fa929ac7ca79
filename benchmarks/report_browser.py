"""An energy report's HTML in a real browser (headless Chromium): it loads alone and reads well.

    .venv/bin/python benchmarks/report_browser.py runs/energy/report [--screenshot report.png]

Loads ``report.html`` from the folder in headless Chromium (Debian's ``chromium`` package; the
first of ``chromium``, ``chromium-browser``, ``google-chrome`` on the PATH, or ``--browser``) at a
window 1280 px wide, with the network off, and checks what a reader sees: every image decodes
(the plots are embedded, so a copy of the file alone shows them), nothing makes the page wider
than the window (a wide table scrolls inside its own box), and every table and heading is there.
Prints the figures and exits 1 if a check fails; ``--screenshot`` also saves the page as a PNG.
:func:`check_report` is what ``tests/test_energy_report.py`` runs when a browser is installed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 1600)
#: appended to a copy of the page: the facts the checks need, as an attribute of <body>
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    page_width: document.documentElement.scrollWidth,
    window_width: window.innerWidth,
    tables: document.querySelectorAll("table").length,
    headings: document.querySelectorAll("h1, h2").length,
  }));
});
</script>
"""


def find_browser(name: str | None = None) -> str | None:
    """The browser's path: ``name`` if given (and found), else the first of :data:`BROWSERS`."""
    for candidate in [name] if name else BROWSERS:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _run(browser: str, *args: str, timeout_s: float = 120) -> str:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(browser).name} exited with {done.returncode}: {done.stderr.strip()[-500:]}"
        )
    return done.stdout


def check_report(report_dir: str | Path, browser: str, screenshot: Path | None = None) -> dict[str, Any]:
    """What the browser saw of ``report_dir/report.html`` and the problems found (``problems``: empty
    when the page reads well). The page is copied alone to an empty folder first, so that an image
    it would load from beside it shows up as broken."""
    page = Path(report_dir) / "report.html"
    with tempfile.TemporaryDirectory() as alone:
        copy = Path(alone) / "report.html"
        copy.write_text(page.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
        dom = _run(browser, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
        if screenshot is not None:
            _run(browser, f"--screenshot={Path(screenshot).resolve()}", page.resolve().as_uri())
    found = re.search(r'data-check="([^"]*)"', dom)
    if found is None:
        return {"problems": ["the page did not finish loading (no result from the probe)"]}
    seen = json.loads(html.unescape(found.group(1)))
    problems = []
    if seen["images"] == 0:
        problems.append("no images")
    if seen["broken"]:
        problems.append(f"{seen['broken']} of {seen['images']} images do not decode")
    if seen["page_width"] > seen["window_width"]:
        problems.append(f"the page is {seen['page_width']} px wide in a {seen['window_width']} px window")
    if seen["tables"] == 0 or seen["headings"] < 2:
        problems.append(f"{seen['tables']} tables and {seen['headings']} headings: the content is missing")
    return {**seen, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path, help="a folder written by `toolchain energy --report`")
    parser.add_argument("--browser", default=None, help="the browser executable (default: the first found)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG")
    args = parser.parse_args()
    browser = find_browser(args.browser)
    if browser is None:
        print(
            f"no browser found ({', '.join(BROWSERS)}); on Debian: apt-get install chromium", file=sys.stderr
        )
        return 2
    result = check_report(args.report_dir, browser, args.screenshot)
    print(json.dumps(result, indent=2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
