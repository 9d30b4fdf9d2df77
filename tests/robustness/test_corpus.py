"""Every bad input of the generated corpus gets its documented exit code and exactly one stderr line,
and leaves no output behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode

from .corpus import CASES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "skimage_astronaut.png"


def test_corpus_is_large_and_covers_every_code():
    assert len(CASES) >= 25
    assert {c.expected for c in CASES} >= {ExitCode.BAD_INPUT, ExitCode.NO_FACE, ExitCode.USAGE,
                                           ExitCode.OUTPUT, ExitCode.WEIGHTS}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    face = work / EXAMPLE.name
    shutil.copy(EXAMPLE, face)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    if case.weights:
        case.weights(wdir)
    weights_before = {p: p.read_bytes() for p in wdir.rglob("*") if p.is_file()}
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(wdir))
    argv = case.build(work, face)
    before = {p for p in work.rglob("*")}
    code = main(["-q", "recover", "--no-refine", *argv] if case.expected not in (ExitCode.WEIGHTS,)
                else ["-q", "recover", *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.expected, f"{case.name}: exit {code}, stderr: {err}"
    assert len(lines) == 1, f"{case.name}: stderr should be one line, got {lines}"
    assert lines[0].startswith("error:"), lines[0]
    created = {p for p in work.rglob("*")} - before
    leftovers = [p for p in created if p.name.startswith(".") or (p.name == "out" and case.expected != ExitCode.OK)]
    assert not leftovers, f"partial outputs left: {leftovers}"
    assert face.read_bytes() == EXAMPLE.read_bytes()
    assert {p: p.read_bytes() for p in wdir.rglob("*") if p.is_file()} == weights_before  # weights untouched
    if case.weights is not None:  # a bad weights file is named in the error
        assert any(str(wdir / name) in lines[0] for name in os.listdir(wdir)), lines[0]
