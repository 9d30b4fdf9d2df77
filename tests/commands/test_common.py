"""commands/_common + cli: help with examples and brackets intact, one -o/--output, global options in
both places, --json error documents."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from mvinvert_cli.cli import COMMANDS, main
from mvinvert_cli.errors import ExitCode


def _help(capsys, *args: str) -> str:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_the_examples_and_brackets(name, capsys):
    text = _help(capsys, name)
    module_doc = inspect.cleandoc(COMMANDS[name].__doc__)
    examples = [line.strip() for line in module_doc.partition("Examples:")[2].splitlines() if line.strip()]
    assert examples, f"{name}: no examples in its module docstring"
    for line in examples:  # verbatim, one per line (not rewrapped)
        assert f"\n  {line}\n" in text, f"{name} --help lacks {line!r}"
    assert "<bool>" not in text and "``" not in text
    for option in ("-q, --quiet", "--device", "--debug", "--weights", "--trust-pickle"):
        assert option in text
    bracketed = re.findall(r"\[[^\]]*\]", text)
    assert any(b.startswith("[default:") for b in bracketed)


def test_top_level_help(capsys):
    text = _help(capsys)
    assert "``" not in text and "Exit codes:" in text and "mvinvert weights" in text
    assert all(f"  {name} " in text for name in COMMANDS)


def test_bracketed_defaults_survive(capsys):
    recover = " ".join(_help(capsys, "recover").split())  # Click rewraps option help
    assert "[default: ./<stem>_mvinvert/]" in recover and "[default: 0,30,-30,0:-15]" in recover
    assert "pip install 'mvinvert[ray]'" in " ".join(_help(capsys, "batch").split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_output_option(name, capsys):
    text = _help(capsys, name)
    assert "--out " not in text and "--out," not in text
    if name != "weights":
        assert "-o, --output" in text


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("name", ["recover", "align", "fit", "invert", "render", "eval", "batch"])
def test_global_options_before_or_after(name, where, tmp_path, capsys):
    """-q and --device are accepted on both sides of every command; the error is the command's own."""
    missing = str(tmp_path / "missing.jpg")
    options = ["-q", "--device", "cpu"]
    args = [*options, name, missing] if where == "before" else [name, missing, *options]
    code = main(args)
    err = capsys.readouterr().err
    assert "No such option" not in err
    assert code in (ExitCode.BAD_INPUT, ExitCode.USAGE) and "missing.jpg" in err, err


@pytest.mark.parametrize("args", [["weights", "--no-hash", "--json", "-q", "--device", "cpu"],
                                  ["-q", "--device", "cpu", "weights", "--no-hash", "--json"]])
def test_global_options_on_weights(args, capsys):
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["assets"]


def test_train_accepts_global_options_after(tmp_path, capsys):
    assert main(["train", "--images", str(tmp_path / "none"), "-q", "--device", "cpu"]) != 0
    assert "No such option" not in capsys.readouterr().err


def test_global_option_values_after_the_command_win(tmp_path, capsys):
    assert main(["--device", "cpu", "recover", str(tmp_path / "x.jpg"), "--device", "nonsense"]) == ExitCode.BAD_INPUT
    capsys.readouterr()  # the input error comes first: nothing was loaded


def test_json_error_document_on_stdout(tmp_path, capsys):
    code = main(["recover", str(tmp_path / "nope.jpg"), "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.BAD_INPUT
    doc = json.loads(captured.out)
    assert doc == {"status": "error", "error": {"code": 3, "kind": "InputError",
                                                "message": f"{tmp_path / 'nope.jpg'}: no such file"}}
    assert captured.err.strip().startswith("error:") and len(captured.err.strip().splitlines()) == 1


def test_json_usage_error_document(capsys):
    assert main(["render", "x.obj", "--frames", "1", "--json"]) == ExitCode.USAGE
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "error" and doc["error"]["code"] == 2 and "--frames" in doc["error"]["message"]


def test_no_json_no_stdout_on_error(tmp_path, capsys):
    assert main(["recover", str(tmp_path / "nope.jpg")]) == ExitCode.BAD_INPUT
    assert capsys.readouterr().out == ""
