"""The report tests' comparison page of the two tiny runs of ``runs`` (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def comparison(runs, tmp_path_factory) -> Path:
    """report.html comparing the two tiny runs, one figure image each."""
    from pixelssl.report.html import write_report

    return write_report([runs["pixpro"], runs["pixcon_sr"]], tmp_path_factory.mktemp("report") / "report.html",
                        images=1)
