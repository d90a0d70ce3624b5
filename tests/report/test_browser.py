"""report.html in headless Chromium: every image renders (naturalWidth > 0); a screenshot is saved.

Chromium runs as a subprocess (``--dump-dom`` after a small load-time script records the images, ``--screenshot``);
skipped where it is not installed (Debian: ``apt-get install chromium chromium-driver``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                                          "(Debian: apt-get install chromium chromium-driver)")

# Runs at the load event (all data: images decoded by then) and writes what it found onto <body>.
PROBE = ("<script>addEventListener('load', () => {const images = [...document.images];"
         "document.body.dataset.images = images.length;"
         "document.body.dataset.broken = JSON.stringify(images.filter(i => !i.complete || i.naturalWidth === 0)"
         ".map(i => i.alt));});</script>")
BROKEN_IMAGE = '<img alt="deliberately broken" src="data:image/png;base64,iVBORw0KGgoAAAAN">'


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def images_in_browser(page: Path, profile: Path) -> tuple[int, list[str]]:
    """(number of <img>, alt texts of those that did not render) as Chromium sees the page."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(profile, "--dump-dom", probed.as_uri()).stdout
    count = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="([^"]*)"', dom)
    assert count and broken, "the probe script did not run: " + dom[:300]
    return int(count.group(1)), json.loads(broken.group(1).replace("&quot;", '"'))


def test_report_renders_every_image_in_chromium(comparison, tmp_path):
    expected = comparison.read_text().count("<img ")
    # One deliberately broken image is added: the check must catch it, and only it.
    page = tmp_path / "report.html"
    page.write_text(comparison.read_text().replace("</body>", BROKEN_IMAGE + "</body>"))
    count, broken = images_in_browser(page, tmp_path / "profile")
    assert count == expected + 1 and expected >= 10
    assert broken == ["deliberately broken"]

    screenshot = tmp_path / "report.png"  # of the report as written
    chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1400,3000", comparison.as_uri())
    with Image.open(screenshot) as shot:
        assert shot.size == (1400, 3000)
