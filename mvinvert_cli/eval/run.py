"""The evaluation over a folder of photos: recover each (models loaded once), score, write the report.

Outputs in ``out/`` (staged, moved into place only when complete): ``eval.csv`` (one row per photo,
failures included with their one-line error), ``summary.json`` (the tables as data), ``index.html``,
``report.png`` and ``cases/*.png`` (input / re-render / error map / hold-out panels of the best and
worst photos). One bad photo never stops the run: its row says why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import InputError, MvInvertError, OutputError, UsageError
from ..io.atomic import atomic_dir, atomic_write_text
from ..io.images import IMAGE_SUFFIXES
from . import report
from .holdout import DEFAULT_YAW
from .photo import DEFAULT_MAX_YAW, EvalInputs, evaluate_photo

MakeInputs = Callable[[Path], EvalInputs]


def evaluate_folder(sources: Sequence[str], out: Path, make_inputs: MakeInputs, identity_net: Any = None,
                    identity_note: str = "", yaw: float = DEFAULT_YAW, max_yaw: float = DEFAULT_MAX_YAW,
                    cases: int = 2, force: bool = False,
                    progress: Callable[[str], None] = lambda _: None) -> tuple[list[dict[str, Any]], report.Summary]:
    """Evaluate every photo under ``sources`` (folders are searched recursively) and write ``out/``.

    Args:
        make_inputs: photo path → :class:`EvalInputs` (runs the recovery); typed errors mark the row failed.
        identity_net: loaded identity backend or None (``identity_note`` then says why, in the summary).
        yaw / max_yaw: hold-out turn and the near-frontal limit, degrees.
        cases: how many best and worst photos the report shows.

    Raises:
        InputError: no photo found.
        OutputError: ``out`` exists without ``force``, or is not writable.
    """
    photos = check_paths(sources, out, force)
    rows: list[dict[str, Any]] = []
    panels: dict[int, dict] = {}
    for index, (path, name) in enumerate(photos):
        start = time.perf_counter()
        try:
            inputs = make_inputs(path)
            recovered = time.perf_counter()
            row, panel = evaluate_photo(inputs, identity_net, yaw, max_yaw)
            row["image"] = name
            row["recover_seconds"] = round(recovered - start, 3)
            panels[id(row)] = panel
        except MvInvertError as exc:
            row = {"image": name, "status": f"error: {exc}"}
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(row)
        progress(f"[{index + 1}/{len(photos)}] {name}: {_brief(row)}")
    summary = report.summarise(rows)
    if identity_net is None:
        summary.id_backend = identity_note or "none"
    chosen = [report.Case(label, row, panels[id(row)]) for label, row in report.pick_cases(rows, cases)]
    with atomic_dir(out, overwrite=force) as staging:
        report.write_csv(rows, staging / "eval.csv")
        atomic_write_text(staging / "summary.json", json.dumps(summary_json(summary, yaw, max_yaw), indent=2))
        report.write_report(staging, rows, summary, chosen)
    return rows, summary


def check_paths(sources: Sequence[str], out: Path, force: bool) -> list[tuple[Path, str]]:
    """(path, display name) of the photos under ``sources``, checked before any model is loaded.

    Folders are searched recursively (sorted; hidden folders and ``out`` itself are skipped); the
    display name is the path relative to its source folder.

    Raises:
        UsageError: a source does not exist. InputError: no photo found.
        OutputError: ``out`` exists (without ``force``) or is a file.
    """
    if out.exists() and (not out.is_dir() or not force):
        raise OutputError(f"output {out} already exists (use --force to overwrite)" if out.is_dir()
                          else f"output {out} exists and is not a folder")
    skip = out.resolve()
    photos: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_file():
            photos.append((source, source.name))
        elif source.is_dir():
            for path in sorted(source.rglob("*")):
                rel = path.relative_to(source)
                if (path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                        and not any(part.startswith(".") for part in rel.parts)
                        and skip not in path.resolve().parents):
                    photos.append((path, rel.as_posix()))
        else:
            raise UsageError(f"{source}: no such file or folder")
    if not photos:
        raise InputError(f"no photos found in {', '.join(sources)}")
    return photos


def summary_json(summary: report.Summary, yaw: float, max_yaw: float) -> dict[str, Any]:
    """The summary as JSON-ready data (NaN → None), with the settings that produced it."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    data = clean(asdict(summary))
    data["settings"] = {"yaw_deg": yaw, "max_fitted_yaw_deg": max_yaw, "baseline": report.BASELINE}
    data["methods"] = report.METHOD_HELP
    return data


def _brief(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return str(row.get("status"))
    text = f"recon PSNR {row.get('recon_psnr', float('nan')):.2f}"
    if row.get("holdout_pixels"):
        text += (f", hold-out PSNR full {row.get('holdout_full_psnr', float('nan')):.2f}"
                 f" / mirror {row.get('holdout_mirror_psnr', float('nan')):.2f}")
    return text + f" ({row['seconds']:.1f} s)"
