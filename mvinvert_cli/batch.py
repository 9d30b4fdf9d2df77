"""Batch recovery: discover photos, recover each with models loaded once, resume, never stop on one file.

Outputs: ``OUT/<relative folder>/<stem>/`` per photo (the same layout as ``mvinvert recover -o``),
``OUT/batch.jsonl`` with one line per photo (status, error, exit code, timings), rewritten
atomically after every item so an interrupted run leaves a consistent log. A photo whose
``result.json`` says ``"status": "ok"`` and whose outputs all exist is skipped unless ``force``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_pool import Runner, run_pool
from .config import Settings
from .errors import ExitCode, InputError, Interrupted, MvInvertError, UsageError
from .io.atomic import atomic_write_text
from .io.images import IMAGE_SUFFIXES
from .weights import file_sha256


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
    and output folders, and yields files in sorted order.

    Raises:
        InputError: ``root`` itself cannot be listed (a sub-folder that cannot be listed is reported
            on stderr and left out).
    """
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
        except OSError as exc:
            message = f"cannot list folder {_printable(folder)} ({exc.strerror or type(exc).__name__})"
            if folder == root:
                raise InputError(message) from exc
            print(f"warning: {message}; its photos are left out", file=sys.stderr)
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


def _output_names(rels: list[Path], sources: list[Path]) -> list[Path]:
    """Output folder (relative to OUT) for each photo, independent of listing order.

    ``<folder>/<stem>`` when the stem is unique in its folder, ``<folder>/<stem>_<ext>`` for every photo
    whose stem clashes (``x.png`` + ``x.jpg`` → ``x_png``, ``x_jpg``), and a short hash of the absolute
    source path on top when even that clashes (same file name from two stdin folders).
    """
    def clashing(names: list[Path]) -> set[Path]:
        seen: dict[Path, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        return {name for name, count in seen.items() if count > 1}

    names = [rel.parent / rel.stem for rel in rels]
    clash = clashing(names)
    names = [rel.parent / f"{rel.stem}_{rel.suffix.lstrip('.').lower()}" if name in clash else name
             for name, rel in zip(names, rels, strict=True)]
    clash = clashing(names)
    tags = [hashlib.sha1(os.fsencode(src.absolute())).hexdigest()[:8] for src in sources]
    return [name.with_name(f"{name.name}_{tag}") if name in clash else name
            for name, tag in zip(names, tags, strict=True)]


def discover(inputs: Iterable[str], out_root: Path, stdin_lines: Iterable[str] | None = None) -> list[BatchItem]:
    """Expand folders/files (``-`` reads one path per line from stdin) into batch items.

    A file listed twice is processed once. Output folders follow :func:`_output_names`.

    Raises:
        UsageError: an input path does not exist.
    """
    found: list[tuple[Path, Path]] = []  # (source, path relative to OUT)
    skip = {out_root.resolve()}
    listed: set[Path] = set()

    def add(source: Path, rel: Path) -> None:
        key = source.absolute()
        if key not in listed:
            listed.add(key)
            found.append((source, rel))

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
        try:
            is_dir = stat.S_ISDIR(path.stat().st_mode)
        except FileNotFoundError:
            if not path.is_symlink():
                raise UsageError(f"{_printable(path)}: no such file or folder") from None
            is_dir = False  # a dangling link: recovering it reports the broken link
        except OSError:  # unreachable (permission) or a loop: recovering it reports why, with exit 3
            is_dir = False
        if is_dir:
            for entry in _walk(path, skip):
                add(entry, entry.relative_to(path))
        else:
            add(path, Path(path.name))
    names = _output_names([rel for _, rel in found], [src for src, _ in found])
    return [BatchItem(src, out_root / name, _printable(rel)) for (src, rel), name in zip(found, names, strict=True)]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def recorded_input_sha256(out_dir: Path) -> str | None:
    """The input sha256 a finished output folder records (multi-face: from its first face's result)."""
    result = _read_json(out_dir / "result.json")
    if result is None:
        return None
    digest = result.get("input", {}).get("sha256")
    if digest is None and result.get("outputs"):
        first = _read_json(out_dir / next(iter(result["outputs"].values())))
        digest = first.get("input", {}).get("sha256") if first else None
    return digest if isinstance(digest, str) else None


def is_complete(out_dir: Path) -> bool:
    """True when ``out_dir/result.json`` reports success and every output it lists exists."""
    result = _read_json(out_dir / "result.json")
    if result is None or result.get("status") != "ok":
        return False
    return all((out_dir / rel).exists() for rel in result.get("outputs", {}).values())


# --------------------------------------------------------------------------- workers

def recoverer_runner(settings: dict[str, Any], threads: int) -> Runner:
    """The worker body of the local pool: one Recoverer (models loaded once), then :func:`run_item`."""
    import torch  # lazy here and below: the pool's parent process never imports torch or the models

    from .pipeline import Recoverer

    torch.set_num_threads(threads)
    recoverer = Recoverer(Settings(**{**settings, "views": tuple(map(tuple, settings["views"]))}))
    return functools.partial(run_item, recoverer)


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
        """Record complete items as skipped (unless ``force``) and return the rest, in order.

        An item is skipped only when its folder is complete *and* records this photo's sha256; a
        complete folder holding another input's result is recorded as failed (exit 6), not replaced.
        """
        todo = []
        for item in items:
            if force or not is_complete(item.out_dir):
                todo.append(item)
                continue
            base = (item.display, _printable(item.source), _printable(item.out_dir))
            try:
                if not item.source.is_file():  # never hash a FIFO or device (it could block)
                    raise OSError("not a regular file")
                digest = file_sha256(item.source)
            except OSError:  # unreadable now: let the run report why
                todo.append(item)
                continue
            if recorded_input_sha256(item.out_dir) == digest:
                self.record(ItemResult(*base, "skipped"))
            else:
                self.record(ItemResult(*base, "failed", f"output {base[2]} holds the result of another input "
                                       "(sha256 differs); use --force to replace it", int(ExitCode.OUTPUT)))
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
    make_runner: Callable[[dict[str, Any], int], Runner] | None = None,
    on_dispatch: Callable[[BatchItem, int, int], None] | None = None,
) -> list[ItemResult]:
    """Process every item (skipping complete ones unless ``force``) and keep ``batch.jsonl`` current.

    Args:
        jobs: 1 runs in this process (with ``recoverer`` if given); more starts that many worker
            processes (:func:`~mvinvert_cli.batch_pool.run_pool`), each building its runner with ``make_runner(settings, threads)``
            (default :func:`recoverer_runner`).
        on_dispatch: called with (item, attempt starting at 1, worker pid) when a worker gets an item.
    """
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
    def failed(item: BatchItem, message: str) -> None:
        record(ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "failed", message,
                          int(ExitCode.INTERNAL)))

    run_pool(todo, (force, all_faces), make_runner or recoverer_runner, settings.to_dict(), jobs,
             record, failed, on_dispatch)
    return results
