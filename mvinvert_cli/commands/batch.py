"""``mvinvert batch``: recover every photo in folders (or from stdin), models loaded once.

Examples:
    mvinvert batch photos/ -o out/
    mvinvert batch photos/ -o out/ --jobs 2 --json > summary.json
    find . -name '*.jpg' | mvinvert batch - -o out/
    mvinvert batch photos/ -o out/ --engine ray --jobs 2
    mvinvert batch people/ -o out/ --group-by-folder   # one sub-folder per person: one mesh + texture each
    mvinvert batch /shared/photos -o /shared/out --engine ray --address auto --jobs 8 --gpus-per-worker 0.5
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..batch import ItemResult, discover, run_batch
from ..config import MAX_TEXTURE_SIZE, TEXTURE_SIZE_HELP, Settings, parse_views
from ..errors import ExitCode, OutputError, UsageError
from ._common import (
    OPTIONS,
    ForceOpt,
    JsonOpt,
    absolute,
    console,
    emit_json,
    log,
    output_option,
    stdout,
    warn,
)
from ._progress import wall_seconds


class Engine(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Where batch items run: worker processes on this machine, or Ray actors (local or a cluster)."""

    local = "local"
    ray = "ray"


def command(
    inputs: Annotated[list[str], typer.Argument(help="Folders, image files, or - to read paths from stdin.")],
    output: output_option("./mvinvert_batch/ (one sub-folder per photo)") = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes or Ray actors (each loads models once).")] = 1,
    engine: Annotated[Engine, typer.Option("--engine", help="local, or ray (needs: pip install 'mvinvert[ray]').")] = Engine.local,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster: auto or ray://host:port [default: start a local Ray].")] = None,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="GPUs reserved per Ray actor (0.5 = two per GPU).")] = 0.0,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Recover every face in each photo.")] = False,
    views: Annotated[str | None, typer.Option("--views", show_default=False,
                                              help="Synthetic views, yaw or yaw:pitch list [default: 0,30,-30,0:-15].")] = None,
    texture_size: Annotated[int, typer.Option("--texture-size", min=64, max=MAX_TEXTURE_SIZE, help=TEXTURE_SIZE_HELP)] = 1024,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip GAN-inversion refinement.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    group_by_folder: Annotated[bool, typer.Option(
        "--group-by-folder", help="Each sub-folder is one person: recover its photos together (local engine).")] = False,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Recover a folder of portraits; resumable, a bad file never stops the run.

    Each photo gets OUTPUT/<relative path>/<stem>/ with the same files as 'mvinvert recover'.
    OUTPUT/batch.jsonl has one line per photo. Photos already done (complete result.json) are
    skipped unless --force. Progress: a bar on a terminal, one line per photo otherwise (stderr).
    Exit code 1 when any photo failed. With --group-by-folder, each sub-folder of an input folder is
    one person: OUTPUT/<folder>/ gets one mesh and texture from all its photos (OUTPUT/groups.jsonl).
    """
    out = output if output is not None else Path("mvinvert_batch")
    if engine is Engine.local and (address or gpus_per_worker):
        raise UsageError("--address and --gpus-per-worker need --engine ray")
    if engine is Engine.ray:
        from ..batch_ray import import_ray

        import_ray()  # fail before any work when the extra is missing
    settings = Settings(device=OPTIONS.device, texture_size=texture_size, refine=not no_refine, seed=seed,
                        trust_pickle=OPTIONS.trust_pickle)
    if views:
        settings.views = parse_views(views)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from exc
    if group_by_folder:  # multi-photo path (issue 17), separate from the per-photo engines below
        _group_batch(inputs, out, settings, force, json_out, engine)
        return
    items = discover(inputs, out)
    if not items:
        console.print("no images found")
        if json_out:
            emit_json({"output": absolute(out), "total": 0, "ok": 0, "failed": 0, "skipped": 0, "items": []})
        return
    with _ItemProgress(len(items)) as on_result:
        if engine is Engine.ray:
            from ..batch_ray import run_batch_ray  # lazy: Ray is an optional extra

            results = run_batch_ray(items, settings, out, force=force, all_faces=all_faces, workers=jobs,
                                    address=address, gpus_per_worker=gpus_per_worker, on_result=on_result)
        else:
            results = run_batch(items, settings, out, force=force, all_faces=all_faces, jobs=jobs, on_result=on_result)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    for note in dict.fromkeys(n for r in results for n in r.degraded):  # also in each result.json
        warn(f"degraded: {note}")
    if json_out:
        emit_json({"output": absolute(out), "total": len(results), **counts, "log": str(out / "batch.jsonl"),
                   "wall_seconds": round(wall_seconds(), 3), "items": [r.to_json() for r in results]})
    elif not OPTIONS.quiet:
        table = Table(title=f"batch: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
                            f"in {wall_seconds():.1f} s", title_justify="left")
        for col in ("photo", "status", "seconds", "error"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r.status != "skipped" or len(results) <= 50:
                table.add_row(r.display, r.status, f"{r.seconds:.1f}" if r.seconds else "-", r.error or "")
        stdout.print(table)
        stdout.print(f"log: {out / 'batch.jsonl'}")
    if counts["failed"]:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def _group_batch(inputs: list[str], out: Path, settings: Settings, force: bool, json_out: bool,
                 engine: Engine) -> None:
    """``--group-by-folder``: one multi-photo recovery per person folder (``batch_groups``)."""
    if engine is not Engine.local:
        raise UsageError("--group-by-folder runs on the local engine only")
    # lazy: torch and the models, for start-up speed
    from ..batch_groups import LOG_NAME, discover_groups, run_groups
    from ..multiview import MultiRecoverer
    from ..pipeline import Recoverer

    groups = discover_groups(inputs)
    results = run_groups(MultiRecoverer(Recoverer(settings)), groups, out, force=force)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    for r in results:
        log(f"{r.group}: {r.status} ({r.used}/{r.photos} photos){' ' + r.error if r.error else ''}")
        for reason in r.excluded:
            warn(f"{r.group}: left out {reason}")
    if json_out:
        emit_json({"output": absolute(out), "groups": len(results), **counts, "log": str(out / LOG_NAME),
                   "wall_seconds": round(wall_seconds(), 3), "items": [vars(r) for r in results]})
    if counts["failed"]:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


class _ItemProgress:
    """Per-photo progress on stderr: a rich bar on a terminal, one plain line per photo otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.enabled, self.tty = not OPTIONS.quiet, console.is_terminal
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
            console=console, disable=not (self.enabled and self.tty), transient=False,
        )
        self.task = self.bar.add_task("recover", total=total, current="")

    def __enter__(self) -> _ItemProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, result: ItemResult) -> None:
        self.done += 1
        mark = {"ok": "[green]ok[/]", "skipped": "[blue]skip[/]", "failed": "[red]failed[/]"}[result.status]
        self.bar.update(self.task, advance=1, current=f"{mark} {result.display}")
        if self.enabled and not self.tty:
            took = f" {result.seconds:.1f} s" if result.seconds else ""
            console.print(f"[{wall_seconds():7.1f} s] {self.done}/{self.total} {result.status}{took} {result.display}",
                          markup=False, highlight=False, soft_wrap=True)
