"""``mvinvert recover``: one portrait in, a complete textured 3D face out.

Examples:
    mvinvert recover photo.jpg                      # writes ./photo_mvinvert/
    mvinvert recover photo.jpg -o out/ --force
    mvinvert recover photo.jpg --views 0,45,-45,0:-15 --texture-size 2048
    mvinvert recover photo.jpg --json -q | jq .outputs
    mvinvert recover a.jpg b.jpg c.jpg -o out/      # several photos of one person: one mesh + texture
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
    FaceIndexOpt,
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
from ._progress import StageProgress, wall_seconds


def command(
    photos: Annotated[list[Path], typer.Argument(
        help="Portrait photo (JPEG, PNG, WebP, TIFF, ...); several photos of one person (the first is the "
             "colour reference) give one mesh and one texture.", readable=False)],
    output: output_option("./<stem>_mvinvert/") = None,
    views: Annotated[
        str | None, typer.Option("--views", show_default=False,
                                 help="Synthetic views as yaw or yaw:pitch degrees [default: 0,30,-30,0:-15].")
    ] = None,
    texture_size: Annotated[int, typer.Option("--texture-size", min=64, max=MAX_TEXTURE_SIZE, help=TEXTURE_SIZE_HELP)] = 1024,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip the GAN-inversion refinement (coarse texture).")] = False,
    face_index: FaceIndexOpt = 0,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    encoder: Annotated[
        Path | None, typer.Option("--encoder", help="ReStyle-layout encoder checkpoint (e.g. from 'mvinvert train').")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (noise, optimisation).")] = 0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Recover mesh + complete UV texture from one photo (or several photos of one person).

    Writes mesh.obj/.mtl + texture.png, mesh.ply (vertex colours), mesh.glb, coarse_texture.png,
    renders/, preview.png and result.json (stages, backends, degradations, timings). The output
    folder appears only when everything is written. Stage progress goes to stderr; the output folder
    (or the --json document) to stdout. With several photos, one that cannot be read, shows no face
    or shows someone else is reported and left out, and the run goes on with the others.
    """
    from ..io.images import load_image
    from ..io.paths import check_output_dir

    settings = Settings(device=OPTIONS.device, texture_size=texture_size, refine=not no_refine, seed=seed,
                        aligner=aligner.value, parser=parser.value, face_index=face_index,
                        trust_pickle=OPTIONS.trust_pickle, encoder=str(encoder) if encoder is not None else None)
    if views:
        settings.views = parse_views(views)
    photo, multi = photos[0], len(photos) > 1
    out_dir = output if output is not None else Path.cwd() / f"{photo.stem}_mvinvert"
    if not multi:
        load_image(photo)  # bad input and bad -o are reported before any model loads
    check_output_dir(out_dir, force, photos)
    if encoder is not None and not encoder.is_file():
        from ..errors import WeightsError

        raise WeightsError(f"--encoder {encoder}: no such file")

    from ..pipeline import Recoverer, recover_to_directory  # lazy: torch and the models, for start-up speed

    with StageProgress(console, enabled=not OPTIONS.quiet) as progress:
        progress("load models", "start")
        recoverer = Recoverer(settings)
        progress("load models", "done")
        for note in recoverer.degraded:  # known once the models are loaded; also in result.json["degraded"]
            warn(f"degraded: {note}")
        if multi:  # issue 17: several photos of one person → one mesh, one texture
            from ..multiview import MultiRecoverer, recover_photos_to_directory

            summary = recover_photos_to_directory(MultiRecoverer(recoverer), photos, out_dir, force=force,
                                                  progress=progress)
        else:
            summary = recover_to_directory(recoverer, photo, out_dir, force=force, progress=progress)
    left_out = [item for item in summary.get("inputs", []) if item["status"] != "used"]  # multi-photo
    for item in left_out:  # also in result.json (inputs, degraded)
        warn(f"left out {item['path']}: {item['reason']}")
    for note in summary.get("degraded", []):
        if note not in recoverer.degraded and not any(item["reason"] in note for item in left_out):
            warn(f"degraded: {note}")
    for note in summary.get("face", {}).get("notes", []):  # several faces, detector retries
        warn(note)
    pipeline = sum(s for name, s in progress.stage_seconds.items() if name != "load models")
    wall = wall_seconds()
    if json_out:
        emit_json({**summary, "output": absolute(out_dir),
                   "wall_seconds": {"total": round(wall, 3), "pipeline": round(pipeline, 3)}})
        return
    log(f"[green]done[/] in {wall:.1f} s wall (pipeline {pipeline:.1f} s, model load "
        f"{progress.stage_seconds.get('load models', 0.0):.1f} s) → {out_dir}")
    typer.echo(str(out_dir))
