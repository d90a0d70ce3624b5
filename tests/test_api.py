"""The public API: pixelssl.__all__ resolves, is small, and docs/api.md documents every name (and mkdocs lists it)."""

from __future__ import annotations

from pathlib import Path

import pixelssl

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_is_documented():
    text = (ROOT / "docs" / "api.md").read_text()
    assert len(pixelssl.__all__) <= 20 and sorted(pixelssl.__all__) == pixelssl.__all__
    for name in pixelssl.__all__:
        assert getattr(pixelssl, name) is not None
        assert f"`{name}" in text, f"docs/api.md does not document {name}"
    assert "api.md" in (ROOT / "mkdocs.yml").read_text()


def test_the_methods_are_the_registered_ones():
    from pixelssl.methods.registry import available_methods, method_class

    exported = {getattr(pixelssl, name) for name in pixelssl.__all__}
    assert all(method_class(name) in exported for name in available_methods())
    assert all(issubclass(method_class(name), pixelssl.Method) for name in available_methods())
