"""Local worker processes for ``batch --jobs N``: each loads the models once and runs items one at a time.

The driver hands an item to an idle worker over a pipe and waits on every pipe and process sentinel at
once, so a worker that dies (SIGKILL, out of memory, segfault) is noticed at once: it is replaced, the
staging folder of its item removed and the item retried once (``MAX_ATTEMPTS``), as the Ray engine does
(``batch_ray``); the other workers and their items are unaffected. A typed error while a worker loads
its models (bad weights) is re-raised in the driver with its own exit code.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .errors import MvInvertError, UsageError

MAX_ATTEMPTS = 2  # the first run and one retry after a worker crash (local and Ray engines)

Runner = Callable[..., Any]


def remove_staging(out_dir: Path, pid: int | None = None) -> None:
    """Delete the staging folders ``io.atomic.atomic_dir`` leaves next to ``out_dir`` when its writer is
    killed: those of ``pid`` only, or every one for this output (other workers may be staging siblings)."""
    owner = f"{pid}." if pid is not None else ""
    for pattern in (f".{out_dir.name}.tmp-{owner}*", f".{out_dir.name}.old.tmp-{owner}*"):
        for entry in out_dir.parent.glob(pattern):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _worker_main(conn: Any, make_runner: Callable[[dict[str, Any], int], Runner], settings: dict[str, Any],
                 threads: int) -> None:
    """A local worker process: build the runner once, then run the items the driver sends until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        runner = make_runner(settings, threads)
    except MvInvertError as exc:
        conn.send(("error", (type(exc).__name__, str(exc), int(exc.exit_code))))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(("result", runner(*task)))


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    item: Any = None


def _death(process: Any) -> str:
    process.join(5)
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def run_pool(todo: list[Any], args: tuple, make_runner: Callable[[dict[str, Any], int], Runner],
             settings: dict[str, Any], jobs: int, record: Callable[[Any], None],
             failed: Callable[[Any, str], None], on_dispatch: Callable[[Any, int, int], None] | None = None) -> None:
    """Run ``runner(item, *args)`` for every item of ``todo`` on ``jobs`` worker processes and ``record``
    each result in completion order (items have an ``out_dir``; the runner turns ordinary errors into
    results). Each worker builds its runner once with ``make_runner(settings, threads)``.

    A worker that dies (SIGKILL, out of memory, segfault) under an item is replaced, its staging folder
    removed and the item retried once; a second crash records it as failed. Other items are unaffected.
    On any exception in the driver (Ctrl-C, SIGTERM) every worker is killed, the staging folders of the
    items in flight are removed, and the exception propagates.
    """
    context = multiprocessing.get_context()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue: deque[Any] = deque(todo)
    attempts: dict[int, int] = {}
    workers: list[_Worker] = []

    def spawn() -> None:
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, make_runner, settings, threads),
                                  daemon=True)
        process.start()
        child.close()
        workers.append(_Worker(process, parent))

    def crashed(worker: _Worker) -> None:
        workers.remove(worker)
        worker.conn.close()
        why = _death(worker.process)
        if not worker.ready:
            raise RuntimeError(f"a batch worker died while loading its models ({why})")
        item = worker.item
        if item is not None:
            remove_staging(item.out_dir, worker.process.pid)
            if attempts[id(item)] < MAX_ATTEMPTS:
                queue.appendleft(item)
            else:
                failed(item, f"worker crashed ({why}) twice")
        if queue:
            spawn()

    try:
        for _ in range(min(jobs, len(queue))):
            spawn()
        while queue or any(w.item is not None for w in workers):
            for worker in workers:
                if worker.ready and worker.item is None and queue:
                    item = worker.item = queue.popleft()
                    attempts[id(item)] = attempts.get(id(item), 0) + 1
                    worker.conn.send((item, *args))
                    if on_dispatch:
                        on_dispatch(item, attempts[id(item)], worker.process.pid)
            woke = set(wait([w.conn for w in workers] + [w.process.sentinel for w in workers]))
            for worker in list(workers):
                if worker.conn not in woke and worker.process.sentinel not in woke:
                    continue
                try:
                    while worker.conn.poll():
                        kind, payload = worker.conn.recv()
                        if kind == "error":
                            raise_worker_error(payload)
                        if kind == "ready":
                            worker.ready = True
                        else:
                            record(payload)
                            worker.item = None
                except (EOFError, OSError):
                    crashed(worker)
                    continue
                if not worker.process.is_alive():
                    crashed(worker)
        for worker in workers:
            worker.conn.send(None)
        for worker in workers:
            worker.process.join(10)
    except BaseException:
        for worker in workers:
            worker.process.kill()
        for worker in workers:
            worker.process.join(10)
            if worker.item is not None:
                remove_staging(worker.item.out_dir, worker.process.pid)
        raise


def raise_worker_error(error: tuple[str, str, int]) -> None:
    """Re-raise a worker's typed start-up error (class name, message, exit code) in the driver."""
    from . import errors

    name, message, _ = error
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MvInvertError):
        raise cls(message)
    raise UsageError(message)
