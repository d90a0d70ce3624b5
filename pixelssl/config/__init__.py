"""Typed configuration: dataclass schemas + OmegaConf presets + dotted command-line overrides.

Every key is declared once, with its default, a one-line description and the values it allows
(``opt(0.7, "...", gt=0)``, ``opt("byol", "...", choices=("byol", "none"))``); one generic ``validate`` checks
the declarations and each section's ``problems()`` (checks that involve several keys), ``pixelssl config --keys``
lists them (``describe``), and a misspelt key is answered with the nearest valid one.

- ``schema``: declaring keys (``opt``, ``sub``, ``variants``), the variant registry, a schema's keys and defaults,
  ``describe`` and ``validate``;
- ``loading``: presets (``_base_`` chains), overrides and saved configs, checked and merged (``load_config``);
- ``pretrain``: the pre-training schema. Its ``method`` section is a ``variants(MethodConfig)`` section: each
  method declares its own keys in a ``MethodConfig`` subclass in its file and registers it by name
  (``methods.registry.register_method``); ``import pixelssl`` registers every method.

May import: ``errors`` only (and omegaconf); in particular not ``methods``, which registers itself here.
"""

from pixelssl.config.loading import (
    available_presets,
    find_preset,
    load_config,
    nearest_key,
    to_dict,
    to_yaml,
)
from pixelssl.config.pretrain import (
    DataConfig,
    MethodConfig,
    ModelConfig,
    PretrainConfig,
    RunConfig,
    SyntheticConfig,
    TrainConfig,
)
from pixelssl.config.schema import (
    ConfigError,
    Problems,
    Rule,
    choice,
    chosen_names,
    defaults,
    describe,
    opt,
    register_validator,
    register_variant,
    require,
    schema_keys,
    sub,
    validate,
    variant_names,
    variant_schema,
    variants,
)

__all__ = [
    "ConfigError", "DataConfig", "MethodConfig", "ModelConfig", "PretrainConfig", "Problems", "Rule", "RunConfig",
    "SyntheticConfig", "TrainConfig", "available_presets", "choice", "chosen_names", "defaults", "describe",
    "find_preset", "load_config", "nearest_key", "opt", "register_validator", "register_variant", "require",
    "schema_keys", "sub", "to_dict", "to_yaml", "validate", "variant_names", "variant_schema", "variants",
]
