"""``mvinvert batch people/ --group-by-folder``: one multi-photo recovery per folder (one person each).

Every immediate sub-folder of each input folder that holds images is one person: its photos (sorted
by name; the first is the colour reference) are recovered together by
:func:`~mvinvert_cli.multiview.recover_photos_to_directory` into ``OUT/<folder name>/``. A folder that
fails (no usable face, unwritable output) is recorded and the run goes on; complete outputs are
skipped unless ``force``. ``OUT/groups.jsonl`` has one line per folder (status, error, exit code,
photos used / left out, seconds), rewritten atomically after each folder. Runs in this process, one
folder at a time (the per-photo ``batch`` engines are ``batch.py`` / ``batch_ray.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .batch import is_complete
from .errors import MvInvertError, UsageError
from .io.atomic import atomic_write_text
from .io.images import IMAGE_SUFFIXES
from .multiview import MultiRecoverer, recover_photos_to_directory

LOG_NAME = "groups.jsonl"


@dataclass(frozen=True)
class Group:
    """One person: ``name`` (folder name, also the output sub-folder), ``photos`` sorted by name."""

    name: str
    photos: tuple[Path, ...]


@dataclass(frozen=True)
class GroupResult:
    """One line of ``groups.jsonl``."""

    group: str
    out: str
    status: str  # ok | failed | skipped
    photos: int = 0
    used: int = 0
    excluded: tuple[str, ...] = ()
    error: str = ""
    exit_code: int = 0
    seconds: float = 0.0


def discover_groups(inputs: list[str]) -> list[Group]:
    """The person folders under each input folder (sub-folders with at least one image).

    Raises:
        UsageError: an input is not a folder.
    """
    groups = []
    for text in inputs:
        root = Path(text)
        if not root.is_dir():
            raise UsageError(f"--group-by-folder needs folders (one sub-folder per person); {text} is not one")
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            photos = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
            if photos:
                groups.append(Group(folder.name, photos))
    return groups


def run_groups(multi: MultiRecoverer, groups: list[Group], out_root: Path, force: bool = False) -> list[GroupResult]:
    """Recover every group into ``out_root/<name>/``; a failing group is recorded, never fatal."""
    results: list[GroupResult] = []
    for group in groups:
        out_dir = out_root / group.name
        if not force and is_complete(out_dir):
            results.append(GroupResult(group.name, str(out_dir), "skipped", len(group.photos)))
        else:
            results.append(_run_one(multi, group, out_dir, force))
        atomic_write_text(out_root / LOG_NAME, "".join(json.dumps(asdict(r)) + "\n" for r in results))
    return results


def _run_one(multi: MultiRecoverer, group: Group, out_dir: Path, force: bool) -> GroupResult:
    start = time.perf_counter()
    try:
        document: dict[str, Any] = recover_photos_to_directory(multi, group.photos, out_dir, force=force or out_dir.exists())
    except MvInvertError as exc:
        return GroupResult(group.name, str(out_dir), "failed", len(group.photos), error=str(exc),
                           exit_code=int(exc.exit_code), seconds=round(time.perf_counter() - start, 3))
    inputs = document["inputs"]
    excluded = tuple(f"{Path(i['path']).name}: {i['reason']}" for i in inputs if i["status"] != "used")
    return GroupResult(group.name, str(out_dir), "ok", len(inputs), len(inputs) - len(excluded), excluded,
                       seconds=round(time.perf_counter() - start, 3))
