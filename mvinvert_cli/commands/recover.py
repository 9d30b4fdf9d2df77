"""``mvinvert recover``: one portrait in, a complete textured 3D face out.

Examples:
    mvinvert recover photo.jpg                      # writes ./photo_mvinvert/
    mvinvert recover photo.jpg -o out/ --force
    mvinvert recover photo.jpg --views 0,45,-45,0:-15 --texture-size 2048
    mvinvert recover photo.jpg --json -q | jq .outputs
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..align.backends import AlignerBackend
from ..config import MAX_TEXTURE_SIZE, TEXTURE_SIZE_HELP, Settings, parse_views
from ..parse.backends import ParserBackend
from ._common import (
    OPTIONS,
    AlignerOpt,
    DeviceOpt,
    FaceIndexOpt,
    ForceOpt,
    JsonOpt,
    ParserOpt,
    QuietOpt,
    device_name,
    emit_json,
    log,
    warn,
)


def command(
    photo: Annotated[Path, typer.Argument(help="Portrait photo (JPEG, PNG, WebP, TIFF, ...).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: ./<stem>_mvinvert/].")] = None,
    views: Annotated[
        str | None, typer.Option("--views", help="Synthetic views as yaw or yaw:pitch degrees [default: 0,30,-30,0:-15].")
    ] = None,
    texture_size: Annotated[int, typer.Option("--texture-size", min=64, max=MAX_TEXTURE_SIZE, help=TEXTURE_SIZE_HELP)] = 1024,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip the GAN-inversion refinement (coarse texture).")] = False,
    face_index: FaceIndexOpt = 0,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    encoder: Annotated[
        Path | None, typer.Option("--encoder", help="ReStyle-layout encoder checkpoint (e.g. from `mvinvert train`).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (noise, optimisation).")] = 0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Recover mesh + complete UV texture from one photo.

    Writes mesh.obj/.mtl + texture.png, mesh.ply (vertex colours), mesh.glb, coarse_texture.png,
    renders/, preview.png and result.json (stages, backends, degradations, timings). The output
    folder appears only when everything is written.
    """
    from ..pipeline import Recoverer, recover_to_directory

    OPTIONS.quiet = OPTIONS.quiet or quiet
    settings = Settings(device=device_name(device), texture_size=texture_size, refine=not no_refine, seed=seed,
                        aligner=aligner.value, parser=parser.value, face_index=face_index)
    if views:
        settings.views = parse_views(views)
    settings.trust_pickle = OPTIONS.trust_pickle
    if encoder is not None:
        settings.encoder = str(encoder)
    out_dir = out if out is not None else Path.cwd() / f"{photo.stem}_mvinvert"
    recoverer = Recoverer(settings)
    summary = recover_to_directory(recoverer, photo, out_dir, force=force)
    for note in summary.get("degraded", []):  # also in result.json["degraded"]
        warn(f"degraded: {note}")
    if json_out:
        emit_json(summary)
    elif OPTIONS.quiet:
        typer.echo(str(out_dir))
    else:
        log(f"[green]done[/] in {summary['timings']['total']:.1f} s → {out_dir}")
        typer.echo(str(out_dir))
