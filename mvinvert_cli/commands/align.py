"""`'mvinvert align'`: face box, 68 landmarks, 224² fitting crop and face mask of one photo.

Examples:
    mvinvert align photo.jpg -o out/
    mvinvert align group.jpg -o out/ --face-index 1
    mvinvert align photo.jpg -o out/ --aligner fan --parser bisenet --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..align.backends import AlignerBackend
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
    output: output_option("<photo>_align/ next to the photo") = None,
    aligner: AlignerOpt = AlignerBackend.auto,
    parser: ParserOpt = ParserBackend.auto,
    face_index: FaceIndexOpt = 0,
    json_out: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Find the face and write landmarks.json, crop.png, crop_mask.png, mask.png and overlay.png.

    landmarks.json holds the box, 68 iBUG landmarks, 5 points, the 478 dense points (MediaPipe),
    the photo → crop matrix, the head pose and the backend names. 'auto' backends use the official
    FAN / BiSeNet weights when present in weights/, else the embedded MediaPipe landmarker and
    polygon parser. Exit code 4 when no face is found.
    """
    from ..io.images import load_image
    from ..io.paths import check_output_dir

    out_dir = output if output is not None else photo.with_name(photo.stem + "_align")
    picture = load_image(photo)  # bad input and bad -o are reported before any model loads
    check_output_dir(out_dir, force, [photo])

    # lazy: torch and the models, for start-up speed
    from ..align.aligner import Aligner, select_face
    from ..align.overlay import draw_overlay
    from ..config import resolve_device
    from ..io.atomic import atomic_dir, atomic_write_text
    from ..io.images import save_image
    from ..parse.parser import FaceParser

    dev = resolve_device(OPTIONS.device)
    face_aligner = Aligner(aligner.value, device=dev, trust_pickle=OPTIONS.trust_pickle)
    face_parser = FaceParser(parser.value, device=dev, trust_pickle=OPTIONS.trust_pickle)
    faces = face_aligner.detect(picture)
    observation = face_parser.parse(select_face(faces, face_index, photo.name, face_aligner.backend))
    for note in face_aligner.notes + face_parser.notes:
        log(note)
    for note in observation.notes:
        warn(note)
    record = {
        "photo": str(photo),
        "size": list(picture.size),
        "faces_found": len(faces),
        **observation.summary(),
        "photo_notes": picture.notes,
    }
    with atomic_dir(out_dir, overwrite=force) as stage:
        atomic_write_text(stage / "landmarks.json", json.dumps(record, indent=1) + "\n")
        save_image(stage / "crop.png", observation.crop)
        save_image(stage / "crop_mask.png", observation.crop_face_mask.astype("uint8") * 255)
        save_image(stage / "mask.png", observation.face_mask.astype("uint8") * 255)
        save_image(stage / "overlay.png", draw_overlay(observation))
    outputs = {name: str(out_dir / name) for name in
               ("landmarks.json", "crop.png", "crop_mask.png", "mask.png", "overlay.png")}
    if json_out:
        emit_json({"output": absolute(out_dir), "outputs": outputs, "faces_found": len(faces),
                   "face_index": face_index, "aligner": observation.aligner, "parser": observation.parser,
                   "box": record["box"], "notes": list(observation.notes)})
    elif OPTIONS.quiet:
        typer.echo(str(out_dir))
    else:
        log(f"{len(faces)} face(s); face {face_index}: {observation.aligner} landmarks, {observation.parser} mask")
        typer.echo(str(out_dir))
