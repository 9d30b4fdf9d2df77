"""``mvinvert fit``: fit the 3D face model to one photo (shape, expression, albedo, pose, SH light).

Examples:
    mvinvert fit photo.jpg -o out/
    mvinvert fit photo.jpg -o out/ --model default --json
    mvinvert fit group.jpg -o out/ --face-index 1 --force
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..align.backends import AlignerBackend
from ..morphable import ModelChoice
from ..parse.backends import ParserBackend
from ._common import (
    OPTIONS,
    AlignerOpt,
    FaceIndexOpt,
    ForceOpt,
    JsonOpt,
    ParserOpt,
    absolute,
    emit_json,
    log,
    output_option,
    warn,
)


def command(
    photo: Annotated[Path, typer.Argument(help="Portrait photo (JPEG, PNG, ...).", readable=False)],
    output: output_option("<photo>_fit/ next to the photo") = None,
    model: Annotated[ModelChoice, typer.Option("--model", help="Face model: BFM (weights/) or the embedded default.")] = ModelChoice.auto,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    face_index: FaceIndexOpt = 0,
    json_out: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Fit the face model and write fit.npz, fit.json, overlays and the fitted mesh.

    fit.npz holds the coefficients (Deep3DFaceRecon order id | exp | tex | angles | gamma | trans),
    model-space and camera-space vertices, normals, T_pca and landmarks; fit.json the same numbers in
    readable form with the backends, losses, timings and notes. overlay.png shows the fitted shape
    (grey albedo, fitted light) over the 224² crop, overlay_textured.png the T_pca albedo; mesh.obj
    (UVs + vertex colours) and mesh.ply (vertex colours) hold the model-space mesh coloured by T_pca.
    'auto' uses BFM when its files are in weights/ (and the Deep3DFaceRecon regressor epoch_20.pth
    for the initialisation when present), else the embedded default model.
    """
    from ..io.images import load_image
    from ..io.paths import check_output_dir

    out_dir = output if output is not None else photo.with_name(photo.stem + "_fit")
    picture = load_image(photo)  # bad input and bad -o are reported before any model loads
    check_output_dir(out_dir, force, [photo])

    from ..tools.fit_photo import fit_to_directory  # lazy: torch and the models, for start-up speed

    run = fit_to_directory(picture, out_dir, model=model, aligner=aligner.value, parser=parser.value,
                           face_index=face_index, device=OPTIONS.device, trust_pickle=OPTIONS.trust_pickle,
                           force=force)
    for note in run.loaded:
        log(escape(note))
    for note in run.warnings:
        warn(note)
    if json_out:
        emit_json({"output": absolute(out_dir), **run.summary})
        return
    summary = run.summary
    log(escape(f"{summary['model']}: {summary['backend']} fit, init {summary['init']}, landmark error "
               f"{summary['losses']['landmark_px']:.2f} px, {summary['timings']['total']:.2f} s"))
    typer.echo(str(out_dir))
