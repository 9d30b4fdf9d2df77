"""Output-location checks shared by the pipeline and the CLI (the CLI runs them before loading any
model, so a bad ``-o`` is reported at once). Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError, OutputError


def check_output_dir(out_dir: Path, force: bool, sources: Iterable[Path] = ()) -> None:
    """Raise unless ``out_dir`` may be (re)written: not a file, absent or ``force``, not inside its
    parent's file, and not containing (or being) one of ``sources``.

    Raises:
        OutputError: exists without ``force``, is a file, its parent is a file, or holds an input.
        InputError: a source path cannot be resolved (symlink loop).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is not a folder")
    if out_dir.exists() and not force:
        raise OutputError(f"output {out_dir} already exists (use --force to overwrite)")
    parent = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"output {out_dir}: {parent} is a file, not a folder")
    dst = out_dir.resolve()
    for source in sources:
        try:
            src = source.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops
            raise InputError(f"{source}: cannot resolve path ({type(exc).__name__})") from exc
        if src == dst or dst in src.parents:
            raise OutputError(f"output {out_dir} contains the input {source}; choose another -o folder")
