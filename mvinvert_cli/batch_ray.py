"""Batch recovery on Ray: the local batch (``batch.run_batch``) spread over long-lived Ray actors.

Each actor builds one :class:`~mvinvert_cli.pipeline.Recoverer` (models loaded once per worker) and
runs :func:`~mvinvert_cli.batch.run_item` on the items the driver hands it, so every worker writes its
outputs atomically into the shared output folder exactly as the local engine does. The driver keeps
the same resume rule (complete ``result.json`` → skipped unless ``force``), the same ``batch.jsonl``
and the same :class:`~mvinvert_cli.batch.ItemResult` records, in completion order.

A worker that dies (killed, out of memory, segfault) is replaced and its item re-queued once; a second
crash on the same item records it as failed. Ctrl-C / SIGTERM on the driver kills the actors, removes
the staging folders of the items they were writing, and re-raises, so no partial output is left.

Ray is an optional extra (``pip install 'mvinvert[ray]'``), imported only when this engine runs.
Input and output paths must be visible at the same path on every node (shared file system).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .batch import BatchItem, BatchLog, ItemResult, _printable, run_item
from .batch_pool import MAX_ATTEMPTS, raise_worker_error, remove_staging
from .config import Settings
from .errors import ExitCode, MvInvertError, UsageError


def import_ray() -> Any:
    """Import Ray or raise a one-line :class:`UsageError` telling how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--engine ray needs Ray: pip install 'mvinvert[ray]' (or pip install 'ray>=2.9')") from exc
    return ray


class RecoverWorker:
    """The actor body: one Recoverer per worker process, reused for every item it is given.

    A typed construction failure (bad weights, bad device) is kept and reported by :meth:`ready`
    instead of killing the actor, so the driver can raise the same error as the local engine.
    """

    def __init__(self, settings: dict[str, Any], threads: int) -> None:
        import torch  # lazy: only the actor processes load torch and the models, never the driver

        from .pipeline import Recoverer

        torch.set_num_threads(threads)
        self.recoverer = None
        self.error: tuple[str, str, int] | None = None
        try:
            self.recoverer = Recoverer(Settings(**{**settings, "views": tuple(map(tuple, settings["views"]))}))
        except MvInvertError as exc:
            self.error = (type(exc).__name__, str(exc), int(exc.exit_code))

    def ready(self) -> tuple[int, tuple[str, str, int] | None]:
        """(worker pid, construction error or None)."""
        return os.getpid(), self.error

    def run(self, item: BatchItem, force: bool, all_faces: bool) -> ItemResult:
        if self.error is not None:  # only a replacement actor gets here; the first ones are checked by ready()
            return ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "failed",
                              self.error[1], self.error[2])
        return run_item(self.recoverer, item, force, all_faces)


def _wait_exit(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until the killed local worker processes are gone, so none still writes a staging folder."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)


def _connect(ray: Any, address: str | None, workers: int, gpus_per_worker: float) -> bool:
    """Start a local Ray instance (or join ``address``); True when this call started it."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        options["address"] = address
    else:
        options["num_cpus"] = workers
        if gpus_per_worker == 0:
            options["num_gpus"] = 0
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise UsageError(f"cannot start Ray on {where}: {' '.join(str(exc).split())[:200]}") from exc
    return True


def run_batch_ray(
    items: list[BatchItem],
    settings: Settings,
    out_root: Path,
    force: bool = False,
    all_faces: bool = False,
    workers: int = 2,
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    on_result: Callable[[ItemResult], None] | None = None,
    on_dispatch: Callable[[BatchItem, int, int], None] | None = None,
) -> list[ItemResult]:
    """Process ``items`` on ``workers`` Ray actors; same outputs, skips and ``batch.jsonl`` as ``run_batch``.

    Args:
        workers: actors to start (each holds one Recoverer); with a local instance also its CPU count.
        address: ``auto`` or ``ray://host:port`` to join a cluster; None starts a local instance.
        gpus_per_worker: GPUs reserved per actor (fractions share a GPU); 0 runs on CPU.
        on_dispatch: called with (item, attempt starting at 1, worker pid) when an item is handed out.

    Raises:
        UsageError: Ray missing or unreachable. The worker's typed error if its models cannot load.
        Interrupted / KeyboardInterrupt: after the actors are stopped and partial outputs removed.
    """
    log = BatchLog(out_root, on_result)
    results, record = log.results, log.record
    todo: deque[BatchItem] = deque(log.pending(items, force))
    if not todo:
        return results

    ray = import_ray()
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    workers = max(1, min(workers, len(todo)))
    started = _connect(ray, address, workers, gpus_per_worker)
    actor_cls = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0)(RecoverWorker)
    # a local instance shares this machine's cores between the actors; on a cluster each actor reserves
    # one CPU and Ray limits its threads to that
    threads = max(1, (os.cpu_count() or 1) // workers) if address is None else 1
    settings_dict = settings.to_dict()
    live: list[Any] = []  # every actor started and not yet killed
    pids: dict[Any, int] = {}  # actor handle -> worker pid, once its models are loaded
    in_flight: dict[Any, tuple[Any, BatchItem]] = {}
    attempts: dict[int, int] = {}

    def spawn(count: int) -> list[Any]:
        """Start ``count`` actors; their models load in parallel, and while they load the driver goes on
        collecting results (method calls queue behind the constructor)."""
        new = [actor_cls.remote(settings_dict, threads) for _ in range(count)]
        live.extend(new)
        for actor, ref in zip(new, [a.ready.remote() for a in new], strict=True):
            pending_ready[ref] = actor
        return new

    def check_ready(refs: list[Any]) -> None:
        for ref in refs:
            pid, error = ray.get(ref)
            pids[pending_ready.pop(ref)] = pid
            if error is not None:
                raise_worker_error(error)

    pending_ready: dict[Any, Any] = {}
    try:
        idle = spawn(workers)
        check_ready(list(pending_ready))
        while todo or in_flight:
            while idle and todo:
                actor, item = idle.pop(), todo.popleft()
                attempts[id(item)] = attempts.get(id(item), 0) + 1
                in_flight[actor.run.remote(item, force, all_faces)] = (actor, item)
                if on_dispatch:
                    if actor not in pids:
                        check_ready([ref for ref, a in pending_ready.items() if a is actor])
                    on_dispatch(item, attempts[id(item)], pids[actor])
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            actor, item = in_flight.pop(ref)
            try:
                record(ray.get(ref))
                idle.append(actor)
                continue
            except (RayActorError, WorkerCrashedError) as exc:
                crash = f"worker crashed: {type(exc).__name__}"
            except RayTaskError as exc:  # run_item turns every ordinary error into a result; this is not one
                record(ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "failed",
                                  f"internal error in worker: {type(exc.cause).__name__}", int(ExitCode.INTERNAL)))
                idle.append(actor)
                continue
            live.remove(actor)
            ray.kill(actor)
            remove_staging(item.out_dir)
            if attempts[id(item)] < MAX_ATTEMPTS:
                todo.appendleft(item)
            else:
                record(ItemResult(item.display, _printable(item.source), _printable(item.out_dir), "failed",
                                  f"{crash} (twice)", int(ExitCode.INTERNAL)))
            if todo:
                idle += spawn(1)
    except BaseException:
        for actor in live:
            ray.kill(actor)
        if address is None:
            _wait_exit([pids[a] for a in live if a in pids])
        for _, item in in_flight.values():
            remove_staging(item.out_dir)
        raise
    finally:
        for actor in live:
            ray.kill(actor)
        if started:
            ray.shutdown()
    return results
