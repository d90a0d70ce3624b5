"""pixelssl.config: keys declared with their bounds and checked by one function; each method's keys in its own
settings class, picked by method.name; presets and saved configs (including the flat method section of earlier
versions) load; every error names the key (and the nearest valid key, or the methods a key belongs to)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from pixelssl.cli import main
from pixelssl.config import (
    ConfigError,
    MethodConfig,
    PretrainConfig,
    Rule,
    available_presets,
    chosen_names,
    load_config,
    opt,
    schema_keys,
    to_dict,
    validate,
    variant_names,
)

PRETRAIN_PRESETS = [p for p in available_presets() if not p.startswith("inpaint")]
METHODS = ["densecl", "moco", "pixcon_coord", "pixcon_sim", "pixcon_sr", "pixcontrast", "pixpro", "pixpro_fpn"]

# The method section as configs written before per-method settings hold it: every method's key, with the defaults
# of that flat schema (a run's config.yaml and its checkpoints' "config").
FLAT_METHOD = {
    "name": "pixpro", "momentum": 0.99, "momentum_schedule": "cosine", "pos_ratio": 0.7, "ppm_gamma": 2.0,
    "ppm_transform_layers": 1, "ins_loss_weight": 0.0, "match_chunk_mib": 256.0, "fpn_levels": "p3-p7",
    "fpn_head_convs": 0, "temperature": 0.3, "queue_size": 0, "shuffle_bn_groups": 1, "loss_lambda": 0.5,
    "head_bn": True, "predictor": True, "symmetric": True, "inbox_rule": "centre", "sr_weights": "semantic",
    "sr_power": 2.0,
}


def _flat_saved(preset: str) -> dict:
    """A preset's config as the flat schema saved it: its method's values over every other method's defaults."""
    saved = to_dict(load_config(PretrainConfig, preset))
    saved["method"] = {**FLAT_METHOD, **saved["method"]}
    return saved


def test_every_method_is_registered_with_its_own_keys():
    assert variant_names(MethodConfig) == METHODS
    pixpro, moco = schema_keys(PretrainConfig, {"method": "pixpro"}), schema_keys(PretrainConfig, {"method": "moco"})
    assert "method.ppm_gamma" in pixpro and "method.queue_size" not in pixpro
    assert "method.queue_size" in moco and "method.ppm_gamma" not in moco
    assert {"method.name", "method.momentum", "method.momentum_schedule"} <= set(pixpro) & set(moco)
    every = schema_keys(PretrainConfig)  # no method named: the keys of all of them
    assert {"method.ppm_gamma", "method.queue_size", "method.sr_power", "method.fpn_levels"} <= set(every)


@pytest.mark.parametrize("preset", PRETRAIN_PRESETS)
def test_each_preset_holds_exactly_its_methods_keys(preset):
    cfg = load_config(PretrainConfig, preset)
    names = chosen_names(cfg)
    expected = [k.split(".", 1)[1] for k in schema_keys(PretrainConfig, names) if k.startswith("method.")]
    assert list(cfg.method) == expected
    assert type(cfg.method).__name__ == "DictConfig" and names["method"] in METHODS


def test_a_preset_may_build_on_another_methods_preset():
    # pixcontrast_r50 builds on pixpro_r50, whose method section holds PixPro's ppm_* keys: they are not carried over
    cfg = load_config(PretrainConfig, "pixcontrast_r50")
    assert cfg.method.name == "pixcontrast" and "ppm_gamma" not in cfg.method
    assert cfg.train.base_lr == load_config(PretrainConfig, "pixpro_r50").train.base_lr


def test_the_command_line_may_switch_the_method():
    cfg = load_config(PretrainConfig, "pixpro_r18_demo", ["method.name=moco", "method.queue_size=8"])
    assert cfg.method.name == "moco" and cfg.method.queue_size == 8 and "ppm_transform_layers" not in cfg.method


@pytest.mark.parametrize("preset", ["pixpro_r50", "moco_r18_demo", "pixcon_sr_r50", "pixpro_fpn_r18_demo"])
def test_flat_saved_configs_of_earlier_versions_load(tmp_path, preset):
    """A run's config.yaml (and a checkpoint's config) from before per-method settings: the other methods' keys,
    which that run never read, are dropped; resuming and `pixelssl info` read it as before."""
    saved = _flat_saved(preset)
    expected = to_dict(load_config(PretrainConfig, preset))
    assert to_dict(load_config(PretrainConfig, base=saved)) == expected  # a checkpoint's config (resume)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert to_dict(load_config(PretrainConfig, str(path))) == expected  # a run directory's config.yaml
    resumed = load_config(PretrainConfig, base=saved, overrides=["train.max_steps=7"])
    assert resumed.train.max_steps == 7 and to_dict(resumed)["method"] == expected["method"]


def test_a_saved_config_with_a_bad_value_still_names_the_key():
    saved = _flat_saved("pixpro_r18_demo")
    saved["method"]["ppm_gamma"] = -1.0
    with pytest.raises(ConfigError, match=r"config key 'method.ppm_gamma': must be > 0 \(got -1.0\)"):
        load_config(PretrainConfig, base=saved)


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("moco_r18_demo", ["method.ppm_gamma=3"],
     "config key 'method.ppm_gamma' in the command line is a key of pixpro, pixpro_fpn, not of method.name=moco"),
    (None, ["method.queue_size=12"], "'method.queue_size' in the command line is a key of densecl, moco, "
                                     "pixcon_coord, pixcon_sim, pixcon_sr, pixcontrast, not of method.name=pixpro"),
    ("pixcon_sim_r18_demo", ["method.sr_power=3"], "is a key of pixcon_sr, not of method.name=pixcon_sim"),
    (None, ["method.ppm_gama=3"], "unknown config key 'method.ppm_gama' in the command line; did you mean "
                                  "'method.ppm_gamma' (a key of pixpro, pixpro_fpn)?"),
    ("pixpro_r18_demo", ["method.temprature=0.2"], "did you mean 'method.temperature' (a key of densecl, moco, "),
    (None, ["train.lr=0.1"], "did you mean 'train.base_lr'?"),
    (None, ["method.name=pixpr"], "config key 'method.name' in the command line: 'pixpr' is not one of densecl, "
                                  "moco, pixcon_coord, pixcon_sim, pixcon_sr, pixcontrast, pixpro, pixpro_fpn; "
                                  "did you mean 'pixpro'?"),
    (None, ["method.momentum_schedule=cos"], "'method.momentum_schedule': 'cos' is not one of cosine, constant; "
                                             "did you mean 'cosine'?"),
    (None, ["method.ppm_transform_layers=3"], "'method.ppm_transform_layers': must be 0, 1 or 2 (got 3)"),
    ("pixpro_fpn_r18_demo", ["method.fpn_head_convs=5"], "'method.fpn_head_convs': must be in 0..4 (got 5)"),
    (None, ["data.flip_prob=2"], "'data.flip_prob': must be in [0, 1] (got 2.0)"),
    (None, ["train.warmup_start_ratio=1"], "'train.warmup_start_ratio': must be -1 or in [0, 1) (got 1.0)"),
    (None, ["model.proj_dim=0"], "'model.proj_dim': must be >= 1 (got 0)"),
    (None, ["data.crop_scale=[0.5,0.2]"], "'data.crop_scale': must be [low, high] with 0 < low <= high <= 1"),
    (None, ["train.device=tpu"], "'train.device': 'tpu' is not auto, cpu, cuda or cuda:N"),
    ("densecl_r18_demo", ["method.queue_size=0"], "'method.queue_size': densecl takes its negatives from a queue"),
    (None, ["data.device_decode=true"], "'data.device_decode': needs data.device_augment=true"),
    (None, ["train.figure_every=5", "train.tensorboard=false"], "'train.figure_every': needs train.tensorboard=true"),
])
def test_bad_inputs_are_one_line_errors_naming_the_key(preset, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, preset, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_preset_key_of_another_method_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_base_: moco_r18_demo\nmethod:\n  ppm_gamma: 3.0\n")
    with pytest.raises(ConfigError, match=rf"'method.ppm_gamma' in '{path}' is a key of pixpro, pixpro_fpn"):
        load_config(PretrainConfig, str(path))


def test_a_base_preset_without_a_name_serves_the_method_its_child_names(tmp_path):
    (tmp_path / "common.yaml").write_text("method:\n  queue_size: 64\n  momentum: 0.9\n")
    (tmp_path / "child.yaml").write_text(f"_base_: {tmp_path / 'common.yaml'}\nmethod:\n  name: moco\n")
    cfg = load_config(PretrainConfig, str(tmp_path / "child.yaml"))
    assert (cfg.method.name, cfg.method.queue_size, cfg.method.momentum) == ("moco", 64, 0.9)


def test_rule_text_and_problems():
    assert Rule(gt=0).text() == "> 0" and Rule(ge=0, le=1).text() == "in [0, 1]"
    assert Rule(ge=0, le=4, integer=True).text() == "in 0..4" and Rule(ge=0, lt=1, also=(-1,)).text() == \
        "-1 or in [0, 1)"
    assert Rule(choices=("a", "b")).text() == "a | b" and Rule(choices=("a", "b")).problem("b") is None
    assert Rule(gt=0).problem(0) == "must be > 0 (got 0)" and Rule(gt=0).problem("x") == "must be a number (got 'x')"
    assert Rule(ge=0, lt=1, also=(-1,)).problem(-1) is None


def test_validate_checks_a_settings_object_and_its_cross_key_problems():
    @dataclass
    class Settings:
        low: float = opt(0.0, "lower end", ge=0)
        high: float = opt(1.0, "upper end", le=10)

        def problems(self):
            if self.low > self.high:
                yield "low", f"must not exceed high ({self.high})"

    validate(Settings())
    with pytest.raises(ConfigError, match=r"^setting 'high': must be <= 10 \(got 11\)$"):
        validate(Settings(high=11), what="setting")
    with pytest.raises(ConfigError, match=r"^config key 'low': must not exceed high \(1.0\)$"):
        validate(Settings(low=2.0))


def test_config_keys_lists_shared_sections_then_each_methods_keys(capsys):
    assert main(["config", "--keys"]) == 0
    text = capsys.readouterr().out
    assert text.index("train.epochs = 100") < text.index("method.name = 'pixpro'")
    assert "method.momentum = 0.99  (in [0, 1])" in text
    blocks = {block.split(":", 1)[0]: block for block in text.split("\n\nmethod.name=")[1:]}
    assert sorted(blocks) == METHODS
    assert "  method.ppm_gamma = 2.0  (> 0)\n      sharpness exponent" in blocks["pixpro"]
    assert "method.queue_size" not in blocks["pixpro"] and "method.ppm_gamma" not in blocks["moco"]
    assert "  method.sr_weights = 'semantic'  (semantic | spatial)" in blocks["pixcon_sr"]
    assert "  method.fpn_head_convs = 0  (in 0..4)" in blocks["pixpro_fpn"]


def test_docs_list_each_methods_keys_with_their_defaults():
    from pathlib import Path

    from pixelssl.config import defaults

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for name in METHODS:
        block = text.split(f"`method.name={name}`", 1)[1].split("\n\n`method.name=", 1)[0].split("### ", 1)[0]
        cfg = defaults(PretrainConfig, {"method": name})
        for key in schema_keys(PretrainConfig, {"method": name}):
            if key.startswith("method.") and key not in ("method.name", "method.momentum", "method.momentum_schedule"):
                value = repr(cfg.method[key.split(".", 1)[1]]).replace("True", "true").replace("False", "false")
                assert f"| `{key}` | `{value}`" in block, (name, key)


def test_new_switches_reject_bad_values_naming_the_key():
    for item in ("train.compile=maybe", "data.device_augment=gpu"):
        with pytest.raises(ConfigError, match=item.split("=")[0].replace(".", r"\.")):
            load_config(PretrainConfig, overrides=[item])


def test_bad_config_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match="did you mean 'train.base_lr'"):
        load_config(PretrainConfig, overrides=["train.lr=0.1"])
    with pytest.raises(ConfigError, match="method.name"):
        load_config(PretrainConfig, overrides=["method.name=simclr"])


def test_figure_every_is_validated():
    with pytest.raises(ConfigError, match="train.figure_every"):
        load_config(PretrainConfig, overrides=["train.figure_every=-1"])
    with pytest.raises(ConfigError, match="train.figure_every"):
        load_config(PretrainConfig, overrides=["train.figure_every=5", "train.tensorboard=false"])
    assert load_config(PretrainConfig).train.figure_every == 0
