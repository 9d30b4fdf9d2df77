"""CLI shell: version, help with exit codes, usage errors, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from mvinvert_cli import __version__
from mvinvert_cli.cli import main
from mvinvert_cli.config import parse_views
from mvinvert_cli.errors import ExitCode, UsageError


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mvinvert {__version__}"


def test_help_lists_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes" in out and "no face found" in out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == ExitCode.USAGE


def test_console_script_runs():
    exe = [sys.executable, "-m", "mvinvert_cli", "--version"]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and __version__ in done.stdout


def test_parse_views():
    assert parse_views("0,30,-30") == ((0, 0), (30, 0), (-30, 0))
    assert parse_views("0:-15, 10:5") == ((0, -15), (10, 5))
    for bad in ("", "a", "100", "0:95"):
        try:
            parse_views(bad)
        except UsageError:
            continue
        raise AssertionError(bad)
