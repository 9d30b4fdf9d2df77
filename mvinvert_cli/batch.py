"""Batch recovery: discover photos, recover each with models loaded once, resume, never stop on one file.

Outputs: ``OUT/<relative folder>/<stem>/`` per photo (the same layout as ``mvinvert recover -o``),
``OUT/batch.jsonl`` with one line per photo (status, error, exit code, timings), rewritten
atomically after every item so an interrupted run leaves a consistent log. A photo whose
``result.json`` says ``"status": "ok"`` and whose outputs all exist is skipped unless ``force``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import ExitCode, Interrupted, MvInvertError, UsageError
from .io.atomic import atomic_write_text
from .io.images import IMAGE_SUFFIXES


@dataclass
class BatchItem:
    """One photo to process and where its outputs go."""

    source: Path
    out_dir: Path
    display: str


@dataclass
class ItemResult:
    display: str
    source: str
    out_dir: str
    status: str  # "ok" | "failed" | "skipped"
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    faces: int = 0
    degraded: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _printable(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _walk(root: Path, skip: set[Path]) -> Iterator[Path]:
    """Recursive image discovery that follows symlinked folders once (no loops), skips hidden folders
    and output folders, and yields files in sorted order."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            stat = folder.stat()
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in seen or folder.resolve() in skip:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        try:
            entries = sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name))
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                subfolders.append(entry)
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                yield entry
        stack.extend(reversed(subfolders))


def discover(inputs: Iterable[str], out_root: Path, stdin_lines: Iterable[str] | None = None) -> list[BatchItem]:
    """Expand folders/files (``-`` reads one path per line from stdin) into batch items.

    Raises:
        UsageError: an input path does not exist.
    """
    items: list[BatchItem] = []
    skip = {out_root.resolve()}
    used: set[Path] = set()

    def add(source: Path, rel: Path) -> None:
        target = out_root / rel.parent / rel.stem
        if target in used:
            target = out_root / rel.parent / f"{rel.stem}_{rel.suffix.lstrip('.').lower()}"
        used.add(target)
        items.append(BatchItem(source, target, _printable(rel)))

    for raw in inputs:
        if raw == "-":
            lines = stdin_lines if stdin_lines is not None else sys.stdin
            for line in lines:
                line = line.strip()
                if line:
                    path = Path(line)
                    add(path, Path(path.name))
            continue
        path = Path(raw)
        if path.is_dir():
            for found in _walk(path, skip):
                add(found, found.relative_to(path))
        elif path.exists() or path.is_symlink():
            add(path, Path(path.name))
        else:
            raise UsageError(f"{_printable(path)}: no such file or folder")
    return items


def is_complete(out_dir: Path) -> bool:
    """True when ``out_dir/result.json`` reports success and every output it lists exists."""
    try:
        result = json.loads((out_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if result.get("status") != "ok":
        return False
    return all((out_dir / rel).exists() for rel in result.get("outputs", {}).values())


# --------------------------------------------------------------------------- workers

_WORKER: Any = None


def _init_worker(settings: dict[str, Any], threads: int) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(threads)
    from .pipeline import Recoverer

    _WORKER = Recoverer(Settings(**{**settings, "views": tuple(map(tuple, settings["views"]))}))


def run_item(recoverer: Any, item: BatchItem, force: bool, all_faces: bool) -> ItemResult:
    """Recover one photo into ``item.out_dir``; typed failures become a failed result, not an exception."""
    from .pipeline import recover_to_directory

    start = time.perf_counter()
    base = dict(display=item.display, source=_printable(item.source), out_dir=_printable(item.out_dir))
    try:
        summary = recover_to_directory(recoverer, item.source, item.out_dir, force=force, all_faces=all_faces)
    except Interrupted:
        raise
    except MvInvertError as exc:
        return ItemResult(**base, status="failed", error=str(exc), exit_code=int(exc.exit_code),
                          seconds=time.perf_counter() - start)
    except Exception as exc:  # an internal error on one photo must not stop the batch
        message = " ".join(str(exc).split())[:300]
        return ItemResult(**base, status="failed", error=f"internal error: {type(exc).__name__}: {message}",
                          exit_code=int(ExitCode.INTERNAL), seconds=time.perf_counter() - start)
    return ItemResult(**base, status="ok", seconds=time.perf_counter() - start,
                      timings=summary.get("timings", {}), faces=summary.get("faces", 1),
                      degraded=list(summary.get("degraded", [])))


def _run_in_worker(item: BatchItem, force: bool, all_faces: bool) -> ItemResult:
    return run_item(_WORKER, item, force, all_faces)


def write_log(path: Path, results: list[ItemResult]) -> None:
    atomic_write_text(path, "".join(json.dumps(r.to_json()) + "\n" for r in results))


class BatchLog:
    """The results of one batch run, kept in ``batch.jsonl`` (rewritten atomically on every record)."""

    def __init__(self, out_root: Path, on_result: Callable[[ItemResult], None] | None = None) -> None:
        self.path = out_root / "batch.jsonl"
        self.results: list[ItemResult] = []
        self.on_result = on_result

    def record(self, result: ItemResult) -> None:
        self.results.append(result)
        write_log(self.path, self.results)
        if self.on_result:
            self.on_result(result)

    def pending(self, items: list[BatchItem], force: bool) -> list[BatchItem]:
        """Record complete items as skipped (unless ``force``) and return the rest, in order."""
        todo = []
        for item in items:
            if not force and is_complete(item.out_dir):
                self.record(ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "skipped"))
            else:
                todo.append(item)
        return todo


def run_batch(
    items: list[BatchItem],
    settings: Settings,
    out_root: Path,
    force: bool = False,
    all_faces: bool = False,
    jobs: int = 1,
    on_result: Callable[[ItemResult], None] | None = None,
    recoverer: Any = None,
) -> list[ItemResult]:
    """Process every item (skipping complete ones unless ``force``) and keep ``batch.jsonl`` current."""
    log = BatchLog(out_root, on_result)
    results, record = log.results, log.record
    todo = log.pending(items, force)
    if not todo:
        return results
    if jobs <= 1:
        if recoverer is None:
            from .pipeline import Recoverer

            recoverer = Recoverer(settings)
        for item in todo:
            record(run_item(recoverer, item, force, all_faces))
        return results
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(settings.to_dict(), threads)) as pool:
        futures = [pool.submit(_run_in_worker, item, force, all_faces) for item in todo]
        try:
            for future, item in zip(futures, todo, strict=True):
                try:
                    record(future.result())
                except Interrupted:
                    raise
                except Exception as exc:  # a worker process died
                    record(ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "failed",
                                      f"worker crashed: {type(exc).__name__}", int(ExitCode.INTERNAL)))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
