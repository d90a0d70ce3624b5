"""Declaring keys and walking schemas: ``opt`` (default, description, allowed values), ``sub`` / ``variants``
sections, the variant registry, the dotted keys of a schema, its defaults, ``describe`` and ``validate``."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from pixelssl.errors import PixelSSLError

T = TypeVar("T")
Problems = Iterator[tuple[str, str]]  # what a section's problems() yields: (key relative to the section, message)


class ConfigError(PixelSSLError, ValueError):
    """A configuration problem, worded for the user (names the key and what is wrong)."""


# --------------------------------------------------------------------------- declaring keys
@dataclass(frozen=True)
class Rule:
    """The values a key allows: bounds (``gt``, ``ge``, ``lt``, ``le``), a fixed set (``choices``) and values
    allowed besides the bounds (``also``, e.g. -1 = derive it)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    also: tuple = ()
    integer: bool = False  # an int key's closed range reads 0..4, a float key's [0, 4]

    def text(self) -> str:
        """The allowed values in words: ``> 0``, ``in [0, 1]``, ``0..4``, ``cosine | constant``, ``-1 or >= 0``."""
        if self.choices:
            return " | ".join(str(c) for c in self.choices)
        low = f"({self.gt}" if self.gt is not None else f"[{self.ge}" if self.ge is not None else None
        high = f"{self.lt})" if self.lt is not None else f"{self.le}]" if self.le is not None else None
        if low and high:
            span = f"{self.ge}..{self.le}" if self.integer and self.ge is not None and self.le is not None else \
                f"{low}, {high}"
            text = f"in {span}"
        elif low:
            text = f"> {self.gt}" if self.gt is not None else f">= {self.ge}"
        else:
            text = f"< {self.lt}" if self.lt is not None else f"<= {self.le}"
        return " or ".join([*(str(a) for a in self.also), text])

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``must be > 0 (got 0)``), or None when it is allowed."""
        if value in self.also:
            return None
        if self.choices:
            if value in self.choices:
                return None
            if not all(isinstance(c, str) for c in self.choices):
                *first, last = (str(c) for c in self.choices)
                return f"must be {', '.join(first)} or {last} (got {value})"
            close = difflib.get_close_matches(str(value), list(self.choices), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return f"'{value}' is not one of {', '.join(self.choices)}{hint}"
        try:
            ok = ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                  and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))
        except TypeError:
            return f"must be a number (got {value!r})"
        return None if ok else f"must be {self.text()} (got {value})"


def opt(default: Any, help: str, *, gt: float | None = None, ge: float | None = None,  # noqa: A002 ("help" reads best)
        lt: float | None = None, le: float | None = None, choices: Sequence = (), also: Sequence = ()) -> Any:
    """A schema field: its default, one-line description and allowed values (checked by ``validate``)."""
    metadata: dict[str, Any] = {"help": help}
    if any(b is not None for b in (gt, ge, lt, le)) or choices:
        integer = isinstance(default, int) and not isinstance(default, bool)
        metadata["rule"] = Rule(gt, ge, lt, le, tuple(choices), tuple(also), integer)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def sub(cls: type, help: str) -> Any:  # noqa: A002
    """A nested config section."""
    return field(default_factory=cls, metadata={"help": help})


def variants(base: type, help: str) -> Any:  # noqa: A002
    """A section whose schema is the subclass of ``base`` registered under the section's ``name`` key."""
    return field(default_factory=base, metadata={"help": help, "variants": base})


_VARIANTS: dict[type, dict[str, type]] = {}


def quoted(text: str) -> str:
    """``'text'`` for messages; ``repr`` when it holds a line break or control character (keeps errors one line)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def register_variant(base: type, name: str, schema: type) -> None:
    """Make ``schema`` (a dataclass subclass of ``base``) the schema of a ``variants(base)`` section named ``name``."""
    if not (isinstance(schema, type) and issubclass(schema, base) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"{schema!r} is not a dataclass subclass of {base.__name__}")
    known = _VARIANTS.setdefault(base, {})
    if known.get(name, schema) is not schema:
        raise ValueError(f"'{name}' is registered twice for {base.__name__}")
    known[name] = schema


def variant_names(base: type) -> list[str]:
    """The registered names of a ``variants(base)`` section, sorted."""
    return sorted(_VARIANTS.get(base, {}))


def variant_schema(base: type, name: str, key: str = "name", source: str = "") -> type:
    """The schema registered under ``name``; a ConfigError naming ``key`` (and the nearest name) when none is."""
    known = _VARIANTS.get(base, {})
    if name not in known:
        names = variant_names(base)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        where = f" in {source}" if source else ""
        raise ConfigError(f"config key '{key}'{where}: {quoted(name)} is not one of {', '.join(names)}{hint}")
    return known[name]



Chosen = Mapping[str, Sequence[type]]  # variant section key -> the schemas it may take (absent: every one)


def _section_type(f: dataclasses.Field) -> type | None:
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def variant_sections(schema: type, prefix: str = "") -> dict[str, type]:
    """Dotted key -> base class of every ``variants`` section."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(schema):
        section = _section_type(f)
        if "variants" in f.metadata:
            out[prefix + f.name] = f.metadata["variants"]
        elif section is not None:
            out.update(variant_sections(section, f"{prefix}{f.name}."))
    return out


def fields_of(schema: type, chosen: Chosen | None = None, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Dotted leaf key -> field, in declaration order; a variant section as ``chosen`` (else every variant's keys)."""
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(schema):
        key, section = prefix + f.name, _section_type(f)
        if section is None:
            out.setdefault(key, f)
            continue
        base = f.metadata.get("variants")
        options = [section] if base is None else list((chosen or {}).get(key, [base, *_VARIANTS.get(base, {}).values()]))
        for option in options:
            for leaf, value in fields_of(option, chosen, key + ".").items():
                out.setdefault(leaf, value)
    return out


def schemas_for(schema: type, names: Mapping[str, str | Sequence[str]]) -> dict[str, list[type]]:
    """Variant section key -> the schemas of the given names (one name or several)."""
    sections = variant_sections(schema)
    out = {}
    for key, name in names.items():
        out[key] = [variant_schema(sections[key], n, f"{key}.name") for n in ([name] if isinstance(name, str) else name)]
    return out


def schema_keys(schema: type, names: Mapping[str, str] | None = None) -> dict[str, str]:
    """All dotted leaf keys of a schema with their descriptions, in declaration order.

    A variant section (``method``) gives the keys of the variant ``names`` picks (``{"method": "moco"}``), or, by
    default, the keys of every registered variant.
    """
    return {k: f.metadata.get("help", "") for k, f in fields_of(schema, schemas_for(schema, names or {})).items()}


def default_name(base: type) -> str:
    return {f.name: f for f in dataclasses.fields(base)}["name"].default


def defaults(schema: type[T], names: Mapping[str, str] | None = None) -> T:
    """The schema's defaults as a typed OmegaConf object, each variant section as ``names`` picks it (else its
    default name)."""
    cfg = OmegaConf.structured(schema)
    for key, base in variant_sections(schema).items():
        name = (names or {}).get(key) or default_name(base)
        node = OmegaConf.structured(variant_schema(base, name, f"{key}.name"))
        node.name = name
        *parents, leaf = key.split(".")
        parent = OmegaConf.select(cfg, ".".join(parents)) if parents else cfg
        parent[leaf] = node
    return cfg  # type: ignore[return-value]


def chosen_names(cfg: Any) -> dict[str, str]:
    """The name of every variant section of a loaded config (``{"method": "pixpro"}``)."""
    return {key: str(OmegaConf.select(cfg, f"{key}.name")) for key in variant_sections(OmegaConf.get_type(cfg))}


def describe(schema: type) -> str:
    """Every key with its default, allowed values and description: the plain sections first, then each variant
    section's shared keys and, under each registered name, the keys of that variant."""
    lines: list[str] = []

    def show(cfg: Any, keys: dict[str, dataclasses.Field], indent: str = "") -> None:
        for key, f in keys.items():
            value = OmegaConf.select(cfg, key)
            value = OmegaConf.to_container(value) if isinstance(value, DictConfig) or OmegaConf.is_list(value) else value
            rule = f.metadata.get("rule")
            allowed = f"  ({rule.text()})" if rule else ""
            lines.append(f"{indent}{key} = {value!r}{allowed}\n{indent}    {f.metadata.get('help', '')}")

    sections = variant_sections(schema)
    shared = fields_of(schema, {key: [base] for key, base in sections.items()})
    show(defaults(schema), {k: f for k, f in shared.items() if not any(k.startswith(s + ".") for s in sections)})
    for key, base in sections.items():
        lines.append(f"\n{key}: shared by every {key}.name")
        show(defaults(schema), {k: f for k, f in shared.items() if k.startswith(key + ".")})
        for name in variant_names(base):
            variant = _VARIANTS[base][name]
            title = (variant.__doc__ or "").strip().splitlines()[0] if variant.__doc__ else ""
            lines.append(f"\n{key}.name={name}: {title}".rstrip(": "))
            own = fields_of(schema, {key: [variant]})
            show(defaults(schema, {key: name}), {k: f for k, f in own.items() if k.startswith(key + ".")
                                                 and k not in shared}, "  ")
    return "\n".join(lines)


def _schema_of(node: Any) -> type:
    return OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)


def validate(cfg: Any, what: str = "config key") -> None:
    """Check a loaded config (or a settings dataclass) against its declarations: every key's ``opt(...)`` bounds
    and choices, each section by its actual type (a method's section by its own class), then each section class's
    own ``problems()`` (base classes first; each yields (key, message) for the checks that involve several keys).
    Raises ConfigError naming the first bad key (``{what} 'data.flip_prob': must be in [0, 1] (got 2)``)."""
    _validate(cfg, _schema_of(cfg), "", what)


def _validate(node: Any, schema: type, prefix: str, what: str) -> None:
    for f in dataclasses.fields(schema):
        value = getattr(node, f.name)
        if isinstance(value, DictConfig) or dataclasses.is_dataclass(value):
            _validate(value, _schema_of(value), f"{prefix}{f.name}.", what)
            continue
        rule = f.metadata.get("rule")
        problem = rule.problem(value) if rule is not None else None
        if problem:
            raise ConfigError(f"{what} '{prefix}{f.name}': {problem}")
    for cls in reversed(schema.__mro__):
        problems = vars(cls).get("problems")
        for key, message in problems(node) if problems else ():
            raise ConfigError(f"{what} '{prefix}{key}': {message}")


def require(condition: bool, key: str, message: str) -> None:
    """Raise a ConfigError naming the key when a value is out of its allowed range."""
    if not condition:
        raise ConfigError(f"config key '{key}': {message}")


def choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    require(value in allowed, key, f"'{value}' is not one of {', '.join(allowed)}")


VALIDATORS: dict[type, Any] = {}


def register_validator(schema: type, fn: Any) -> None:
    """Attach a validator to a schema, run after the declared bounds (other subsystems register theirs)."""
    VALIDATORS[schema] = fn
