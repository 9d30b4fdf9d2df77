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

from ._common import OPTIONS, ForceOpt, JsonOpt, absolute, emit_json, log, output_option, warn


def command(
    image: Annotated[Path, typer.Argument(help="Face image (a coarse render or a photo).")],
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
    import json
    import time

    import numpy as np
    import torch

    from ..config import resolve_device
    from ..errors import InputError, UsageError, WeightsError
    from ..invert.ffhq_align import quad_size
    from ..invert.inverter import Inverter
    from ..invert.optimize import OptimizeSettings
    from ..io.atomic import atomic_dir, atomic_open, atomic_write_text
    from ..io.images import load_image, save_image

    if stop_at is not None and (stop_at < 8 or stop_at & (stop_at - 1)):
        raise UsageError(f"--stop-at {stop_at}: expected a power of two ≥ 8")
    out_dir = output if output is not None else image.with_name(image.stem + "_invert")
    picture = load_image(image)
    dev = resolve_device(OPTIONS.device)
    points = _read_landmarks(landmarks) if landmarks is not None else _detect_landmarks(picture, dev)
    kwargs = {"iterations": iterations, "optimize": OptimizeSettings(steps=steps), "stop_at": stop_at}
    start = time.perf_counter()
    if generator is not None or encoder is not None:
        inverter = Inverter.from_paths(generator, encoder, dev, OPTIONS.trust_pickle, **kwargs)
    else:
        inverter = Inverter.from_weights(dev, OPTIONS.trust_pickle, **kwargs)
    if inverter is None:
        raise WeightsError("no generator: put stylegan2-ffhq-config-f.pt (or a ReStyle restyle_psp_ffhq_encode.pt) "
                           "in weights/, or pass --generator/--encoder")
    if stop_at is not None and stop_at > inverter.generator.size:
        raise UsageError(f"--stop-at {stop_at}: the generator's resolution is {inverter.generator.size}")
    loaded = time.perf_counter()
    for note in inverter.notes:
        log(note)
    rgb = torch.from_numpy(picture.rgb).permute(2, 0, 1)[None]
    side = float(quad_size(torch.from_numpy(points)[None])[0])
    if not 8 <= side <= 4 * max(picture.size):
        raise InputError(f"landmarks give a {side:.0f}px face crop in a {picture.size[0]}x{picture.size[1]} image "
                         "(wrong landmarks or frame?)")
    result = inverter.invert(rgb, torch.from_numpy(points)[None])
    done = time.perf_counter()
    for note in result.notes[len(inverter.notes):]:
        warn(note)

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().permute(1, 2, 0).numpy()

    strip = torch.cat([result.aligned[0], *result.per_iteration[:, 0]], dim=-1)
    record = {"image": str(image), "backend": result.backend, **inverter.describe(),
              "latent_shape": list(result.latents.shape[1:]), "coverage": float(result.coverage.mean()),
              "seconds": {"load": round(loaded - start, 3), "invert": round(done - loaded, 3)},
              "notes": result.notes}
    with atomic_dir(out_dir, overwrite=force) as stage:
        save_image(stage / "inverted.png", to_numpy(result.images[0]))
        save_image(stage / "aligned.png", to_numpy(result.aligned[0]))
        save_image(stage / "iterations.png", to_numpy(strip))
        with atomic_open(stage / "latent.npy", "wb") as handle:
            np.save(handle, result.latents[0].cpu().numpy())
        atomic_write_text(stage / "inversion.json", json.dumps(record, indent=1) + "\n")
    outputs = {name: str(out_dir / name) for name in
               ("inverted.png", "aligned.png", "iterations.png", "latent.npy", "inversion.json")}
    if json_out:
        emit_json({"output": absolute(out_dir), "outputs": outputs, **record})
    else:
        log(f"{result.backend}: {result.per_iteration.shape[0]} steps recorded in {done - loaded:.1f}s")
        typer.echo(str(out_dir))


def _read_landmarks(path: Path):
    """(68,2) float32 from landmarks.json (``landmarks68``) or a .npy / whitespace .txt file."""
    import json

    import numpy as np

    from ..errors import InputError

    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            points = np.asarray(data["landmarks68"] if isinstance(data, dict) else data, dtype=np.float32)
        elif path.suffix.lower() == ".npy":
            points = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            points = np.loadtxt(path, dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot read 68 landmarks ({type(exc).__name__})") from exc
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise InputError(f"{path}: expected 68 finite (x, y) landmarks, got shape {points.shape}")
    return points


def _detect_landmarks(picture, device):
    """68 landmarks of the largest face ('auto' aligner backend)."""
    from ..align.aligner import Aligner, select_face

    aligner = Aligner("auto", device=device, trust_pickle=OPTIONS.trust_pickle)
    face = select_face(aligner.detect(picture), 0, str(picture.path or "image"), aligner.backend)
    return face.landmarks.astype("float32")
