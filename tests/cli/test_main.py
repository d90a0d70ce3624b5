"""cli.main: every failure is one line and an exit code (1, 75 preempted, 130 interrupted); --debug shows the traceback."""

from __future__ import annotations

import importlib

import pytest

import pixelssl
from pixelssl.cli.main import _one_line, build_parser, main
from pixelssl.errors import DataError, Preempted

cli_main = importlib.import_module("pixelssl.cli.main")  # the module (``pixelssl.cli.main`` is also the function)


def test_one_line_keeps_the_first_line_and_names_unexpected_error_types():
    assert _one_line(DataError("folder x is empty\nmore detail")) == "folder x is empty"
    assert _one_line(FileNotFoundError("no such file: a.png")) == "no such file: a.png"
    assert _one_line(RuntimeError("  boom\n  traceback text")) == "RuntimeError: boom"
    assert _one_line(DataError("")) == "DataError" and _one_line(KeyError()) == "KeyError"


@pytest.fixture
def failing_info(monkeypatch):
    """``failing_info(exc)``: ``pixelssl info`` raises ``exc``."""
    from pixelssl.cli import train

    def make(exc: BaseException) -> None:
        def fail(args):
            raise exc

        monkeypatch.setattr(train, "_info", fail)

    return make


@pytest.mark.parametrize("exc, code, err", [
    (DataError("bad folder\nsecond line"), 1, ["error: bad folder"]),
    (FileNotFoundError("gone.png"), 1, ["error: gone.png"]),
    (RuntimeError("boom"), 1, ["error: RuntimeError: boom", "(run with --debug for the traceback)"]),
    (Preempted("SIGTERM after step 3/10; checkpoint written"), 75, ["stopped: SIGTERM after step 3/10; checkpoint written"]),
    (KeyboardInterrupt(), 130, ["interrupted"]),
])
def test_each_failure_is_one_line_and_its_exit_code(failing_info, capsys, exc, code, err):
    failing_info(exc)
    assert main(["info", "somewhere"]) == code
    assert capsys.readouterr().err.strip().splitlines() == err


def test_debug_shows_the_traceback(failing_info):
    failing_info(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "info", "somewhere"])


def test_no_command_prints_the_help_and_version_prints_the_version(capsys):
    assert main([]) == 2
    assert "Dense self-supervised pre-training and evaluation." in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"pixelssl {pixelssl.__version__}"


def test_a_subsystem_that_is_not_installed_is_left_out(monkeypatch):
    monkeypatch.setattr(cli_main, "_REGISTRARS", ("pixelssl.cli.train", "pixelssl.cli.not_installed"))
    commands = build_parser()._subparsers._group_actions[0].choices
    assert sorted(commands) == ["config", "demo", "info", "pretrain"]
