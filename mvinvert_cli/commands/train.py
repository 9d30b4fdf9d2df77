"""`'mvinvert train'`: fine-tune the residual encoder end to end on your own face photos (MvInvert §3.3).

Examples:
    mvinvert train --images faces/ --real-textures uv_textures/ --steps 20000 -o runs/ffhq
    mvinvert train --images faces/ --resume runs/ffhq/checkpoints/last.pt --steps 40000 -o runs/ffhq
    mvinvert recover photo.jpg --encoder runs/ffhq/checkpoints/last.pt
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..align.backends import AlignerBackend
from ..parse.backends import ParserBackend
from ._common import (
    OPTIONS,
    AlignerOpt,
    ForceOpt,
    JsonOpt,
    ParserOpt,
    absolute,
    console,
    emit_json,
    log,
    output_option,
    warn,
)


class FaceNet(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Feature network of Eq. 8-9: ArcFace (weights/backbone.pth), the built-in tiny net, or auto."""

    auto = "auto"
    arcface = "arcface"
    tiny = "tiny"


LOSS_COLUMNS = ("total", "rec", "perc", "id", "adv_tex", "adv_face", "d_face", "d_tex")


def _weights(text: str):
    from ..errors import UsageError
    from ..train.losses import LossWeights

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"--loss-weights {text!r}: expected four numbers rec,perc,id,adv") from exc
    if len(values) != 4 or any(v < 0 for v in values):
        raise UsageError(f"--loss-weights {text!r}: expected four non-negative numbers rec,perc,id,adv")
    return LossWeights(*values)


def command(
    images: Annotated[Path, typer.Option("--images", help="Folder of face photos (searched recursively).")],
    real_textures: Annotated[
        Path | None, typer.Option("--real-textures", help="Folder of real UV textures for the texture discriminator.")
    ] = None,
    output: output_option("./mvinvert_train/") = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Train up to this step (resumed runs continue).")] = 1000,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue from a 'mvinvert train' checkpoint.")] = None,
    init: Annotated[
        Path | None, typer.Option("--init", help="ReStyle checkpoint to start from (default: restyle_psp in weights/).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Photos per step.")] = 2,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Encoder learning rate (Adam).")] = 1e-4,
    loss_weights: Annotated[
        str, typer.Option("--loss-weights", help="rec,perc,id,adv weights (paper: 1.9,0.2,0.8,0.1).")
    ] = "1.9,0.2,0.8,0.1",
    identity_renders: Annotated[int, typer.Option("--identity-renders", min=1, help="K random renders of Eq. 9.")] = 2,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="ReStyle passes per view while training.")] = 1,
    texture_size: Annotated[int, typer.Option("--texture-size", min=16, help="UV side seen by the texture discriminator.")] = 256,
    disc_size: Annotated[int, typer.Option("--disc-size", min=4, help="Input side of both discriminators (power of 2).")] = 128,
    disc_channels: Annotated[
        int, typer.Option("--disc-channels", min=16, help="Discriminator width: channels = min(256, N / resolution).")
    ] = 8192,
    face_net: Annotated[FaceNet, typer.Option("--face-net", help="Network of the perceptual and identity losses (Eq. 8-9).")] = FaceNet.auto,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=0, help="Steps between checkpoints.")] = 500,
    sample_every: Annotated[int, typer.Option("--sample-every", min=0, help="Steps between sample grids.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, data order and random renders.")] = 0,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the residual encoder with the paper's losses (reconstruction, perceptual, identity, texture
    and face adversarial) through the differentiable render → invert → stitch → re-render path.

    Photos are aligned, parsed and fitted once (cached in OUTPUT/cache). Writes OUTPUT/checkpoints/step_N.pt
    and last.pt (ReStyle layout: 'recover --encoder' reads them), OUTPUT/samples/step_N.png, OUTPUT/loss.csv
    and OUTPUT/loss.jsonl. Progress with loss columns goes to stderr; the run summary (or OUTPUT) to stdout.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..train.job import TrainJob, default_out_dir, run_job
    from ..train.loop import TrainSettings

    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed, weights=_weights(loss_weights),
                             identity_renders=identity_renders, texture_size=texture_size,
                             disc_size=disc_size, disc_channels=disc_channels,
                             checkpoint_every=checkpoint_every, sample_every=sample_every)
    out_dir = output if output is not None else default_out_dir()
    job = TrainJob(images=images, real_textures=real_textures, out_dir=out_dir, init=init, resume=resume,
                   settings=settings, face_net=face_net.value, iterations=iterations, device=OPTIONS.device,
                   aligner=aligner.value, parser=parser.value, trust_pickle=OPTIONS.trust_pickle, force=force)
    if real_textures is None:
        warn("no --real-textures: the texture adversarial term (Eq. 10) is left out")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[losses]}"), console=console, disable=OPTIONS.quiet)
    tasks: dict[str, int] = {}

    def on_item(index: int, total: int, path: Path, status: str) -> None:
        if "prepare" not in tasks:
            tasks["prepare"] = progress.add_task("prepare", total=total, losses="")
        progress.update(tasks["prepare"], completed=index + 1, losses=f"{path.name}: {status}"[:60])

    def on_ready(trainer) -> None:
        tasks["train"] = progress.add_task("train", total=trainer.settings.steps, completed=trainer.step_count,
                                           losses="")

    def on_step(row: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {row[k]:.4f}" for k in LOSS_COLUMNS if k in row)
        progress.update(tasks["train"], completed=int(row["step"]), losses=shown)

    with progress:
        result = run_job(job, on_item=on_item, on_step=on_step, on_ready=on_ready)
    for note in result.notes:
        warn(note)
    if json_out:
        emit_json({"output": absolute(result.out_dir), **result.to_json()})
        return
    log(f"[green]trained[/] steps {result.start_step}→{result.end_step} in {result.seconds:.1f} s; "
        f"total loss {result.first.get('total', float('nan')):.4f} → {result.last.get('total', float('nan')):.4f}")
    typer.echo(str(result.checkpoints[-1]) if result.checkpoints else str(result.out_dir))
