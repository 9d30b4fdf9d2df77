"""``mvinvert batch``: recover every photo in folders (or from stdin), models loaded once.

Examples:
    mvinvert batch photos/ -o out/
    mvinvert batch photos/ -o out/ --jobs 2 --json > summary.json
    find . -name '*.jpg' | mvinvert batch - -o out/
    mvinvert batch photos/ -o out/ --engine ray --jobs 2
    mvinvert batch /shared/photos -o /shared/out --engine ray --address auto --jobs 8 --gpus-per-worker 0.5
"""

from __future__ import annotations

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
from ._common import OPTIONS, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, console, device_name, emit_json, warn


def command(
    inputs: Annotated[list[str], typer.Argument(help="Folders, image files, or - to read paths from stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per photo).")] = Path(
        "mvinvert_batch"
    ),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes or Ray actors (each loads models once).")] = 1,
    engine: Annotated[str, typer.Option("--engine", help="local, or ray (needs pip install 'mvinvert[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster: auto or ray://host:port (default: start a local Ray).")] = None,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="GPUs reserved per Ray actor (0.5 = two per GPU).")] = 0.0,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Recover every face in each photo.")] = False,
    views: Annotated[str | None, typer.Option("--views", help="Synthetic views, yaw or yaw:pitch list.")] = None,
    texture_size: Annotated[int, typer.Option("--texture-size", min=64, max=MAX_TEXTURE_SIZE, help=TEXTURE_SIZE_HELP)] = 1024,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip GAN-inversion refinement.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Recover a folder of portraits; resumable, a bad file never stops the run.

    Each photo gets OUT/<relative path>/<stem>/ with the same files as `mvinvert recover`.
    OUT/batch.jsonl has one line per photo. Photos already done (complete result.json) are skipped
    unless --force. Exit code 1 when any photo failed.
    """
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (address or gpus_per_worker):
        raise UsageError("--address and --gpus-per-worker need --engine ray")
    if engine == "ray":
        from ..batch_ray import import_ray

        import_ray()  # fail before any work when the extra is missing
    OPTIONS.quiet = OPTIONS.quiet or quiet
    settings = Settings(device=device_name(device), texture_size=texture_size, refine=not no_refine, seed=seed)
    if views:
        settings.views = parse_views(views)
    settings.trust_pickle = OPTIONS.trust_pickle
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from exc
    items = discover(inputs, out)
    if not items:
        console.print("no images found")
        if json_out:
            emit_json({"total": 0, "ok": 0, "failed": 0, "skipped": 0, "items": []})
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
        console=console, disable=OPTIONS.quiet, transient=False,
    )
    with progress:
        task = progress.add_task("recover", total=len(items), current="")

        def on_result(result: ItemResult) -> None:
            mark = {"ok": "[green]ok[/]", "skipped": "[blue]skip[/]", "failed": "[red]failed[/]"}[result.status]
            progress.update(task, advance=1, current=f"{mark} {result.display}")

        if engine == "ray":
            from ..batch_ray import run_batch_ray

            results = run_batch_ray(items, settings, out, force=force, all_faces=all_faces, workers=jobs,
                                    address=address, gpus_per_worker=gpus_per_worker, on_result=on_result)
        else:
            results = run_batch(items, settings, out, force=force, all_faces=all_faces, jobs=jobs, on_result=on_result)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    for note in dict.fromkeys(n for r in results for n in r.degraded):  # also in each result.json
        warn(f"degraded: {note}")
    if not OPTIONS.quiet:
        table = Table(title=f"batch: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped",
                      title_justify="left")
        for col in ("photo", "status", "seconds", "error"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r.status != "skipped" or len(results) <= 50:
                table.add_row(r.display, r.status, f"{r.seconds:.1f}" if r.seconds else "-", r.error or "")
        console.print(table)
        console.print(f"log: {out / 'batch.jsonl'}")
    if json_out:
        emit_json({"total": len(results), **counts, "log": str(out / "batch.jsonl"),
                   "items": [r.to_json() for r in results]})
    if counts["failed"]:
        raise typer.Exit(int(ExitCode.SOME_FAILED))
