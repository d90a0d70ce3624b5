"""Methods by name: ``@register_method("pixpro", PixProConfig)`` on the class (its settings registered with it as
the ``method`` section's schema), ``build_method(cfg)`` to create one."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pixelssl.config import MethodConfig, register_variant

if TYPE_CHECKING:
    from pixelssl.methods.base import Method

_METHODS: dict[str, type] = {}


def register_method(name: str, settings: type[MethodConfig]) -> Callable[[type], type]:
    """Class decorator adding a Method subclass to the registry under ``name``, with ``settings`` (its
    ``MethodConfig`` subclass) as the schema of ``method.*`` when ``method.name`` is ``name``."""

    def add(cls: type) -> type:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method '{name}' is registered twice")
        register_variant(MethodConfig, name, settings)
        cls.method_name, cls.settings_class = name, settings
        _METHODS[name] = cls
        return cls

    return add


def available_methods() -> list[str]:
    import pixelssl.methods  # noqa: F401  (importing the package registers every method)

    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The registered class of a method name."""
    names = available_methods()
    if name not in _METHODS:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose from {', '.join(names)}"
        raise ValueError(f"unknown method '{name}'{hint}")
    return _METHODS[name]


def build_method(cfg: Any) -> Method:
    """The method ``cfg.method.name`` names, built from a pre-training config: the backbone from ``cfg.model``,
    then the method's own constructor with ``cfg.method``'s keys (``Method.from_config``)."""
    return method_class(cfg.method.name).from_config(cfg)
