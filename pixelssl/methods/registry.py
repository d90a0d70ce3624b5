"""Methods by name: ``@register_method("pixpro")`` on the class, ``build_method(cfg)`` to create one."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixelssl.config import PretrainConfig
    from pixelssl.methods.base import Method

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator adding a Method subclass to the registry under ``name``."""

    def add(cls: type) -> type:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method '{name}' is registered twice")
        cls.method_name = name
        _METHODS[name] = cls
        return cls

    return add


def available_methods() -> list[str]:
    import pixelssl.methods  # noqa: F401  (importing the package registers every method)

    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The registered class of a method name (its class attributes tell config validation what it needs)."""
    names = available_methods()
    if name not in _METHODS:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose from {', '.join(names)}"
        raise ValueError(f"unknown method '{name}'{hint}")
    return _METHODS[name]


def build_method(cfg: PretrainConfig) -> Method:
    """Instantiate the method named by ``cfg.method.name`` from the full pre-training config."""
    return method_class(cfg.method.name)(cfg)
