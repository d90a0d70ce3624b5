"""Building a config: presets (``_base_`` chains), dotted overrides, saved configs, each layer's keys checked
against the schema (the nearest valid key named), merged, resolved and validated."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from pixelssl.config.schema import (
    VALIDATORS,
    ConfigError,
    default_name,
    defaults,
    fields_of,
    quoted,
    schema_keys,
    schemas_for,
    validate,
    variant_names,
    variant_schema,
    variant_sections,
)

T = TypeVar("T")


def nearest_key(key: str, schema: type) -> str | None:
    """The valid dotted key closest to a misspelt one (None when nothing is close)."""
    keys = list(schema_keys(schema))
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not match:  # compare the last component too: "train.lr" -> "train.base_lr"
        leaf = key.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.5)
        match = [leaves[close[0]]] if close else []
    return match[0] if match else None


def _owners(key: str, schema: type) -> tuple[str, list[str]]:
    """(variant section, names of the variants that have ``key``) for a key of a variant section."""
    for section, base in variant_sections(schema).items():
        if key.startswith(section + "."):
            return section, [n for n in variant_names(base) if key in fields_of(schema, {section: [variant_schema(base, n)]})]
    return "", []


def _unknown_key_message(key: str, schema: type, source: str) -> str:
    hint = nearest_key(key, schema)
    if hint is None:
        return f"unknown config key {quoted(key)} in {source}; run `pixelssl config --keys` to list the keys"
    section, owners = _owners(hint, schema)
    some = owners and len(owners) < len(variant_names(variant_sections(schema)[section]))
    where = f" (a key of {', '.join(owners)})" if some else ""
    return f"unknown config key {quoted(key)} in {source}; did you mean '{hint}'{where}?"


def _misplaced_message(key: str, schema: type, names: Mapping[str, Sequence[str]], source: str) -> str:
    section, owners = _owners(key, schema)
    here = " or ".join(names.get(section, ()))
    return (f"config key '{key}' in {source} is a key of {', '.join(owners)}, not of {section}.name={here} "
            f"(`pixelssl config --keys` lists each method's keys)")


def _all_sections(keys: Sequence[str]) -> set[str]:
    return {key.rsplit(".", i)[0] for key in keys for i in range(1, key.count(".") + 1)}


def _check_keys(data: Any, schema: type, names: Mapping[str, Sequence[str]], source: str, saved: bool) -> None:
    """Reject keys that are not in the schema before OmegaConf sees them (clearer message); a key of another
    variant than the layer's is an error naming the variants it belongs to, except in a saved config."""
    allowed = schemas_for(schema, names)
    valid, every = set(fields_of(schema, allowed)), set(schema_keys(schema))
    sections = _all_sections(list(every))

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in valid:
                continue
            if dotted in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"config key '{dotted}' in {source} is a section; give its keys, "
                                      f"e.g. {dotted}.<key>")
                walk(value, dotted + ".")
            elif dotted not in every:
                raise ConfigError(_unknown_key_message(dotted, schema, source))
            elif not saved:
                raise ConfigError(_misplaced_message(dotted, schema, names, source))

    walk(data, "")


def _keep_only(node: dict, keep: set[str], sections: set[str], prefix: str = "") -> dict:
    """The layer without the keys the final config does not have (another variant's, already checked)."""
    out = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if dotted in sections and isinstance(value, dict):
            out[key] = _keep_only(value, keep, sections, dotted + ".")
        elif dotted in keep:
            out[key] = value
    return out


def find_preset(name_or_path: str) -> Path:
    """A preset name shipped in pixelssl/configs, or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        return path
    shipped = resources.files("pixelssl.configs") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = available_presets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; available: {', '.join(names)}"
        raise ConfigError(f"no config preset named '{name_or_path}'{hint}")
    return Path(str(shipped))


def available_presets() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    folder = resources.files("pixelssl.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # yaml syntax errors come in many types
        raise ConfigError(f"cannot parse config file '{path}': {exc}".splitlines()[0]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def _preset_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """A preset and the presets it builds on (``_base_: other_preset``), base first."""
    if path in seen:
        raise ConfigError(f"config file '{path}' includes itself through _base_")
    data = _read_yaml(path)
    base = data.pop("_base_", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"_base_ in config file '{path}' must be a preset name or a YAML path, "
                          f"not {type(base).__name__}")
    try:
        base_path = find_preset(base) if base else None
    except ConfigError as exc:
        raise ConfigError(f"_base_ of config file '{path}': {exc}") from exc
    layers = _preset_layers(base_path, (*seen, path)) if base_path else []
    return [*layers, (data, f"'{path}'")]


def _parse_overrides(overrides: list[str], schema: type) -> dict:
    merged = OmegaConf.create()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {quoted(item)} must look like key=value (e.g. train.epochs=5)")
        key = item.split("=", 1)[0].strip()
        if key not in schema_keys(schema):
            raise ConfigError(_unknown_key_message(key, schema, "the command line"))
        try:
            parsed = OmegaConf.from_dotlist([item])
        except Exception as exc:  # YAML reader / scanner / parser errors and OmegaConf's own, in many types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"cannot parse the value of override {quoted(item)}: {reason}") from exc
        merged = OmegaConf.merge(merged, parsed)
    return OmegaConf.to_container(merged)


def _named(data: Any, key: str) -> str | None:
    """The name a layer gives the variant section ``key`` (None when it gives none, or no usable one)."""
    node = data
    for part in [*key.split("."), "name"]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return str(node) if isinstance(node, (str, int, float)) else None  # anything else: OmegaConf's type error


def _choose_variants(schema: type, layers: list[tuple[dict, str, bool]]) -> dict[str, str]:
    """The final name of every variant section; checks each layer's keys against the variant the layer names, or,
    when it names none, against the variant in effect before it or the final one (a base preset may serve several)."""
    sections = variant_sections(schema)
    current = {key: default_name(base) for key, base in sections.items()}
    own: list[dict[str, str]] = []
    for data, source, _ in layers:
        named = {key: name for key in sections if (name := _named(data, key)) is not None}
        for key, name in named.items():
            variant_schema(sections[key], name, f"{key}.name", source)
        own.append(named)
        current = {**current, **named}
    final, before = current, {key: default_name(base) for key, base in sections.items()}
    for (data, source, saved), named in zip(layers, own):
        names = {key: [named[key]] if key in named else list(dict.fromkeys([before[key], final[key]]))
                 for key in sections}
        _check_keys(data, schema, names, source, saved)
        before = {**before, **named}
    return final


def load_config(schema: type[T], preset: str | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> T:
    """Schema defaults <- base dict (e.g. a saved run config) <- preset YAML <- dotted overrides.

    Returns a typed (dataclass-backed) OmegaConf object; raises ConfigError with a one-line message. A saved config
    (``base``, or a YAML file holding every section, as a run's config.yaml) may hold the keys of other methods, as
    the configs of earlier versions, with one flat ``method`` section, do: they are dropped.
    """
    layers: list[tuple[dict, str]] = []
    if base is not None:
        layers.append((base, "the saved config"))
    if preset:
        layers += _preset_layers(find_preset(preset))
    if overrides:
        layers.append((_parse_overrides(list(overrides), schema), "the command line"))
    complete = {f.name for f in dataclasses.fields(schema)}
    marked = [(data, source, data is base or (isinstance(data, dict) and complete <= set(data)))
              for data, source in layers]
    names = _choose_variants(schema, marked)
    cfg = defaults(schema, names)
    keep = set(fields_of(schema, schemas_for(schema, names)))
    sections = _all_sections(list(keep))
    for layer, source in layers:
        if isinstance(layer, dict):
            layer = _keep_only(layer, keep, sections)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise ConfigError(_unknown_key_message(str(exc.full_key), schema, source)) from exc
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"bad value for config key '{key}' in {source}: {reason}") from exc
    try:
        OmegaConf.resolve(cfg)  # a bad ${...} interpolation fails here, naming its key, not later inside a run
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot resolve config key '{key}': {reason[:300]}") from exc
    validate(cfg)
    validator = VALIDATORS.get(schema)
    if validator is not None:
        validator(cfg)
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (saved into every run directory)."""
    return OmegaConf.to_yaml(cfg)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


