"""``mvinvert fit``: fit the 3D face model to one photo (shape, expression, albedo, pose, SH light).

Examples:
    mvinvert fit photo.jpg -o out/
    mvinvert fit photo.jpg -o out/ --model default --json
    mvinvert fit group.jpg -o out/ --face-index 1 --force
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..align.backends import AlignerBackend
from ..morphable import ModelChoice
from ..parse.backends import ParserBackend
from ._common import (
    OPTIONS,
    AlignerOpt,
    DeviceOpt,
    FaceIndexOpt,
    ForceOpt,
    JsonOpt,
    ParserOpt,
    device_name,
    emit_json,
    log,
    warn,
)

OUTPUTS = ("fit.npz", "fit.json", "overlay.png", "overlay_textured.png", "mesh.obj", "mesh.mtl", "mesh.ply")


def command(
    photo: Annotated[Path, typer.Argument(help="Portrait photo (JPEG, PNG, ...).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output directory (default: <photo>_fit/).")] = None,
    model: Annotated[ModelChoice, typer.Option("--model", help="Face model: BFM (weights/) or the embedded default.")] = ModelChoice.auto,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    face_index: FaceIndexOpt = 0,
    json_out: JsonOpt = False,
    force: ForceOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Fit the face model and write fit.npz, fit.json, overlays and the fitted mesh.

    fit.npz holds the coefficients (Deep3DFaceRecon order id | exp | tex | angles | gamma | trans),
    model-space and camera-space vertices, normals, T_pca and landmarks; fit.json the same numbers in
    readable form with the backends, losses, timings and notes. overlay.png shows the fitted shape
    (grey albedo, fitted light) over the 224² crop, overlay_textured.png the T_pca albedo; mesh.obj
    (UVs + vertex colours) and mesh.ply (vertex colours) hold the model-space mesh coloured by T_pca.
    ``auto`` uses BFM when its files are in weights/ (and the Deep3DFaceRecon regressor epoch_20.pth
    for the initialisation when present), else the embedded default model.
    """
    import numpy as np

    from ..align.aligner import Aligner, select_face
    from ..config import Settings, resolve_device
    from ..io.atomic import atomic_dir, atomic_open, atomic_write_text
    from ..io.images import load_image, save_image
    from ..io.meshes import TexturedMesh, write_obj, write_ply
    from ..morphable.fit import Fitter, render_overlay
    from ..morphable.loading import load_face_model
    from ..parse.parser import FaceParser

    out_dir = output if output is not None else photo.with_name(photo.stem + "_fit")
    picture = load_image(photo)
    dev = resolve_device(device_name(device))
    loaded = load_face_model(model, device=dev, trust_pickle=OPTIONS.trust_pickle)
    face_model, regressor, notes = loaded.model, loaded.regressor, [*loaded.degraded, *loaded.notes]
    face_aligner = Aligner(aligner.value, device=dev, trust_pickle=OPTIONS.trust_pickle)
    face_parser = FaceParser(parser.value, device=dev, trust_pickle=OPTIONS.trust_pickle)
    observation = face_parser.parse(select_face(face_aligner.detect(picture), face_index, photo.name,
                                                face_aligner.backend))
    for note in notes + face_aligner.notes + face_parser.notes:
        log(note)
    result = Fitter(face_model, Settings(device=str(dev)), regressor=regressor).fit(observation)
    for note in observation.notes + result.notes:
        warn(note)

    crop = observation.crop_tensor(dev)
    overlay = render_overlay(face_model, result, crop, textured=False)[0].permute(1, 2, 0).cpu().numpy()
    textured = render_overlay(face_model, result, crop, textured=True)[0].permute(1, 2, 0).cpu().numpy()
    arrays = result.arrays()
    mesh = TexturedMesh(arrays["vertices"], face_model.triangles.cpu().numpy(), uvs=face_model.uvs.cpu().numpy(),
                        vertex_colors=np.nan_to_num(arrays["t_pca"], nan=0.5))
    record = {
        "photo": str(photo),
        "model": face_model.summary(),
        "fit": result.summary(),
        "face": {"index": observation.index, "box": [round(float(v), 2) for v in observation.box],
                 "aligner": observation.aligner, "parser": observation.parser,
                 "crop_matrix": np.round(observation.crop_matrix, 6).tolist()},
        "notes": notes + list(observation.notes) + list(result.notes),
    }
    with atomic_dir(out_dir, overwrite=force) as stage:
        with atomic_open(stage / "fit.npz", "wb") as handle:
            np.savez(handle, **arrays, crop_matrix=observation.crop_matrix, triangles=mesh.faces)
        atomic_write_text(stage / "fit.json", json.dumps(record, indent=1) + "\n")
        save_image(stage / "overlay.png", overlay)
        save_image(stage / "overlay_textured.png", textured)
        write_obj(stage / "mesh.obj", mesh)
        write_ply(stage / "mesh.ply", mesh)
    if json_out:
        emit_json({"output": str(out_dir), "outputs": {n: str(out_dir / n) for n in OUTPUTS},
                   "model": face_model.name, **result.summary()})
    elif OPTIONS.quiet:
        typer.echo(str(out_dir))
    else:
        log(f"{face_model.name}: {result.backend} fit, init {result.init}, landmark error "
            f"{result.losses['landmark_px']:.2f} px, {result.timings['total']:.2f} s")
        typer.echo(str(out_dir))
