"""``mvinvert invert``: GAN-invert one face image (debug view of the refine stage, §3.2).

Examples:
    mvinvert invert render.png -o out/
    mvinvert invert photo.jpg -o out/ --landmarks photo_align/landmarks.json --iterations 5
    mvinvert invert face.png -o out/ --generator my/stylegan2.pt --steps 300 --json
    mvinvert --trust-pickle invert face.png -o out/ --generator ffhq.pkl
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ._common import OPTIONS, ForceOpt, JsonOpt, absolute, emit_json, log, output_option, warn


def command(
    image: Annotated[Path, typer.Argument(help="Face image (a coarse render or a photo).", readable=False)],
    output: output_option("<image>_invert/ next to the image") = None,
    landmarks: Annotated[
        Path | None,
        typer.Option("--landmarks", help="68 landmarks: landmarks.json of 'mvinvert align', or a (68,2) .npy/.txt "
                                         "(default: detect them)."),
    ] = None,
    generator: Annotated[
        Path | None, typer.Option("--generator", help="StyleGAN2 file (rosinality .pt, or NVIDIA .pkl with --trust-pickle).")
    ] = None,
    encoder: Annotated[Path | None, typer.Option("--encoder", help="ReStyle checkpoint (restyle_*_encode.pt layout).")] = None,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="ReStyle residual passes (Eq. 2).")] = 5,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Adam steps of the latent optimisation fallback.")] = 100,
    stop_at: Annotated[
        int | None, typer.Option("--stop-at", help="Stop the generator at this resolution (power of two).")
    ] = None,
    json_out: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Invert IMAGE with StyleGAN2 and write inverted.png, aligned.png, latent.npy, iterations.png, inversion.json.

    The face is FFHQ-aligned from its 68 landmarks, inverted by the ReStyle encoder (weights/
    restyle_psp_ffhq_encode.pt or restyle_e4e_ffhq_encode.pt, or --encoder) or, without one, by
    latent optimisation with the StyleGAN2 generator (weights/stylegan2-ffhq-config-f.pt or
    --generator), and warped back. iterations.png shows the aligned input, then every pass
    (or optimisation snapshot). Exit code 5 when no generator is available.
    """
    from ..errors import WeightsError
    from ..io.images import load_image
    from ..io.paths import check_output_dir

    out_dir = output if output is not None else image.with_name(image.stem + "_invert")
    picture = load_image(image)  # bad input, landmarks, paths and -o are reported before any model loads
    check_output_dir(out_dir, force, [image])
    for what, path in (("--generator", generator), ("--encoder", encoder)):
        if path is not None and not path.is_file():
            raise WeightsError(f"{what} {path}: no such file")

    from ..tools.invert_image import check_stop_at, invert_to_directory, read_landmarks  # lazy: torch

    check_stop_at(stop_at)
    points = read_landmarks(landmarks) if landmarks is not None else None
    run = invert_to_directory(picture, out_dir, points, generator=generator, encoder=encoder,
                              iterations=iterations, steps=steps, stop_at=stop_at, device=OPTIONS.device,
                              trust_pickle=OPTIONS.trust_pickle, force=force)
    for note in run.loaded:
        log(escape(note))
    for note in run.warnings:
        warn(note)
    if json_out:
        emit_json({"output": absolute(out_dir), **run.record})
        return
    log(escape(f"{run.record['backend']}: {run.passes} steps recorded in {run.record['seconds']['invert']:.1f}s"))
    typer.echo(str(out_dir))
