"""Fuzzed configuration: dotted ``key=value`` overrides, YAML presets and the ``pixelssl config`` command line.

A case passes when ``load_config`` returns a config whose every key reads back with its schema's type (and that
serialises: ``to_yaml``, ``to_dict``), or raises ``ConfigError`` in one line naming the key, the override or the
file. The CLI must answer 0 with YAML, or 1 with one ``error:`` line and no traceback hint (argparse's own usage
errors, exit 2, for an override that looks like an option, are accepted).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml
from fuzz_support import check_message, fuzz, json_scalars, json_values, outcome
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from pixelssl.cli import main
from pixelssl.config import (
    ConfigError,
    PretrainConfig,
    available_presets,
    chosen_names,
    defaults,
    load_config,
    schema_keys,
    to_dict,
    to_yaml,
)
from pixelssl.evaluate.detection import DetectionConfig
from pixelssl.evaluate.probe import ProbeConfig
from pixelssl.evaluate.segmentation import FinetuneConfig
from pixelssl.inpaint.config import InpaintConfig

SCHEMAS = (PretrainConfig, InpaintConfig, ProbeConfig, FinetuneConfig, DetectionConfig)
PRESETS = available_presets()
PRETRAIN_PRESETS = [p for p in PRESETS if not p.startswith("inpaint")]


def _values() -> st.SearchStrategy[str]:
    """What a user types after ``=``: numbers, words, lists, YAML and OmegaConf syntax, interpolations, junk."""
    typed = json_scalars().map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...")
                               if not isinstance(v, str) else v)
    interpolation = st.tuples(st.sampled_from(["", "oc.env:", "oc.decode:", "oc.create:", "oc.select:"]),
                              st.sampled_from([*keys_of(PretrainConfig), "nope", "train", "HOME", "X_NONE", "[1,2]", ""]),
                              st.sampled_from(["}", "", "}}", "}x"])).map(lambda t: "${" + "".join(t))
    return st.one_of(
        typed, st.text(max_size=16), interpolation,
        st.sampled_from(["", "[", "]", "{", "}", "[1, 2]", "[0.1, 1.0]", "[]", "{a: 1}", "null", "~", "???", "'",
                         '"', "nan", "inf", "-inf", ".nan", "1e400", "0x10", "1_000", "true", "yes", "off",
                         "${train.epochs}", "${nope}", "${oc.env:HOME}", "${oc.env:PIXELSSL_NO_SUCH_VAR}", "${",
                         "${oc.decode:'[1,2]'}", "${oc.create:{a: 1}}", "${train}", "resnet18", "cpu", "auto",
                         "a=b", "x" * 300, "é", "\x00", "1:2", "- 1", "!!python/object:os.system"]),
        st.lists(st.integers(-3, 3) | st.floats(-2, 2), max_size=3).map(str),
    )


def keys_of(schema: type) -> list[str]:
    return list(schema_keys(schema))


def _keys(schema: type) -> st.SearchStrategy[str]:
    keys = list(schema_keys(schema))
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    return st.one_of(
        st.sampled_from(keys), st.sampled_from(keys),
        st.sampled_from(keys).map(lambda k: k[:-1] if len(k) > 1 else k + "x"),  # a typo
        st.sampled_from(keys).map(str.upper),
        st.sampled_from(sections or ["x"]),
        st.sampled_from(["", " ", ".", "..", "a..b", "train.", ".epochs", "train.epochs.x", "_base_", "+train.x",
                         "~train.epochs", "train[0]", "data.crop_scale[0]", "data.crop_scale.0", "é"]),
        st.text(max_size=10),
    )


@st.composite
def overrides(draw, schema: type) -> list[str]:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        shape = draw(st.integers(0, 9))
        if shape == 0:
            items.append(draw(st.text(max_size=12)))  # no '=' (or one by chance)
        else:
            items.append(f"{draw(_keys(schema))}{draw(st.sampled_from(['=', '=', '=', ' = ', '==']))}{draw(_values())}")
    return items


def _check_config(cfg, schema: type) -> None:
    """Every key of the loaded config (its method's keys for ``method``) reads back with the schema default's
    type; it serialises."""
    names = chosen_names(cfg)
    default_cfg = defaults(schema, names)
    for key in schema_keys(schema, names):
        value, default = OmegaConf.select(cfg, key, throw_on_missing=True), OmegaConf.select(default_cfg, key)
        if OmegaConf.is_list(default):
            assert OmegaConf.is_list(value), key
        elif isinstance(default, bool):
            assert isinstance(value, bool), (key, value)
        elif isinstance(default, float):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        else:
            assert type(value) is type(default), (key, value)
    assert to_yaml(cfg)
    assert isinstance(to_dict(cfg), dict)


def _names(items: list[str], *extra: object, schema: type = PretrainConfig) -> tuple[object, ...]:
    """What an error may name: an override, its key, a file, or the schema key a range check refused."""
    keys = [item.split("=", 1)[0].strip() for item in items]
    return (*items, *keys, *extra, *(f"config key '{key}'" for key in schema_keys(schema)))


@fuzz("config", "overrides")
@given(data=st.data(), schema=st.sampled_from(SCHEMAS))
def test_dotted_overrides_load_or_name_the_bad_key(data, schema):
    items = data.draw(overrides(schema))
    result = outcome(lambda: load_config(schema, None, items), *_names(items, schema=schema), errors=(ConfigError,))
    if result.ok:
        _check_config(result.value, schema)


def _yaml_documents(schema: type) -> st.SearchStrategy[str]:
    """YAML text: a mapping of schema / bogus keys (flat or nested), a shipped preset damaged, or any text."""
    keys = list(schema_keys(schema))
    nested = st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values(4), max_size=5)

    def nest(flat: dict) -> dict:
        out: dict = {}
        for key, value in flat.items():
            node = out
            *parents, leaf = str(key).split(".")
            for part in parents:
                node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
            node[leaf] = value
        return out

    mapping = st.tuples(nested, st.booleans(), st.sampled_from([None, *PRESETS[:3], "no_such_preset", "SELF"])).map(
        lambda t: ({**(nest(t[0]) if t[1] else t[0]), **({"_base_": t[2]} if t[2] else {})}))
    as_text = mapping.map(lambda m: yaml.safe_dump(m, allow_unicode=True))
    shipped = st.sampled_from(PRESETS).map(
        lambda name: (Path(__file__).resolve().parents[2] / "pixelssl" / "configs" / f"{name}.yaml").read_text())

    @st.composite
    def damaged(draw) -> str:
        text = draw(shipped | as_text)
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.sampled_from(["", ":", "[", "\t", "- x", "{", "&a", "*a", "!!binary x", "%"]))

    return st.one_of(as_text, as_text, damaged(), st.text(max_size=60),
                     st.sampled_from(["", "---", "- 1\n- 2", "42", "null", "a: b: c", "train: 5", "{", "? [a]\n: 1",
                                      "a: &x [*x]", "!!python/object/apply:os.system ['echo']", "\ufeffdata: {}"]))


@fuzz("config", "presets")
@given(data=st.data(), schema=st.sampled_from(SCHEMAS), encoding=st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
def test_yaml_presets_load_or_name_the_file(data, schema, encoding):
    text = data.draw(_yaml_documents(schema))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / data.draw(st.sampled_from(["preset.yaml", "p.yml", "ü preset.yaml"]))
        text = text.replace("_base_: SELF", f"_base_: {path}")
        try:
            raw = text.encode(encoding)
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "replace")
        path.write_bytes(raw)
        items = data.draw(overrides(schema)) if data.draw(st.booleans()) else []
        bases = [f"{name}.yaml" for name in PRESETS]  # a bad key may sit in the shipped preset it builds on
        result = outcome(lambda: load_config(schema, str(path), items), path, path.name, *bases,
                         *_names(items, schema=schema),
                         errors=(ConfigError,))
    if result.ok:
        _check_config(result.value, schema)


@fuzz("config", "cli")
@given(data=st.data(), preset=st.sampled_from([None, *PRETRAIN_PRESETS, "no_such_preset", "missing.yaml"]))
def test_pixelssl_config_command_prints_yaml_or_one_error_line(data, preset):
    items = data.draw(overrides(PretrainConfig))
    argv = ["config", *(["--config", preset] if preset else []), *items]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: an override that looks like an option, e.g. "-x=1"
            rc = exc.code
    if rc == 2:
        assert "usage:" in err.getvalue(), err.getvalue()
        return
    if rc == 0:
        assert OmegaConf.create(out.getvalue()) is not None and not err.getvalue().strip()
        return
    assert rc == 1, (rc, err.getvalue())
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines  # no "(run with --debug ...)": a known error
    check_message(lines[0], *_names(items), *([preset] if preset else []))


def test_docs_state_the_case_counts():
    """docs/failure_behaviour.md's "Fuzzed boundaries" table gives each boundary's cases in make test / test-all."""
    from fuzz_support import THOROUGH, boundary_totals

    text = (Path(__file__).resolve().parents[2] / "docs" / "failure_behaviour.md").read_text()
    section = text.split("## Fuzzed boundaries", 1)[1]
    rows = {line.split("(`", 1)[1].split("`)", 1)[0]: line for line in section.splitlines()
            if line.startswith("| ") and "(`" in line}
    for name, cases in boundary_totals().items():
        assert name in rows, f"no row for boundary {name}"
        cells = [cell.strip() for cell in rows[name].split("|")]
        assert cells[3:5] == [str(cases), str(cases * THOROUGH)], (name, cells[3:5])
