"""GAN-invert one face image and write the inversion folder (``mvinvert invert``; MvInvert §3.2).

The face is FFHQ-aligned from its 68 landmarks, inverted by the ReStyle encoder (Eq. 2, residual
passes) or, without one, by latent optimisation with the StyleGAN2 generator, and warped back.
Writes inverted.png, aligned.png, iterations.png (the aligned input, then every pass or optimisation
snapshot), latent.npy and inversion.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..align.aligner import Aligner, select_face
from ..config import resolve_device
from ..errors import InputError, UsageError, WeightsError
from ..invert.ffhq_align import quad_size
from ..invert.inverter import Inverter
from ..invert.optimize import OptimizeSettings
from ..io.atomic import atomic_dir, atomic_open, atomic_write_text
from ..io.images import Photo, save_image

OUTPUTS = ("inverted.png", "aligned.png", "iterations.png", "latent.npy", "inversion.json")


@dataclass(frozen=True)
class InvertRun:
    """What :func:`invert_to_directory` did: inversion.json's body (+ outputs), the loader's notes,
    the inversion's own warnings and the number of recorded passes."""

    record: dict[str, Any]
    loaded: tuple[str, ...]
    warnings: tuple[str, ...]
    passes: int


def read_landmarks(path: Path) -> np.ndarray:
    """(68,2) float32 from landmarks.json (``landmarks68``) or a .npy / whitespace .txt file.

    Raises:
        InputError: unreadable, or not 68 finite (x, y) points.
    """
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


def detect_landmarks(picture: Photo, device: torch.device, trust_pickle: bool = False) -> np.ndarray:
    """68 landmarks of the largest face (``auto`` aligner backend)."""
    aligner = Aligner("auto", device=device, trust_pickle=trust_pickle)
    face = select_face(aligner.detect(picture), 0, str(picture.path or "image"), aligner.backend)
    return face.landmarks.astype("float32")


def check_stop_at(stop_at: int | None) -> None:
    """Raise :class:`UsageError` unless ``stop_at`` is None or a power of two ≥ 8."""
    if stop_at is not None and (stop_at < 8 or stop_at & (stop_at - 1)):
        raise UsageError(f"--stop-at {stop_at}: expected a power of two ≥ 8")


def invert_to_directory(picture: Photo, out_dir: Path, landmarks: np.ndarray | None = None,
                        generator: Path | None = None, encoder: Path | None = None, iterations: int = 5,
                        steps: int = 100, stop_at: int | None = None, device: str = "auto",
                        trust_pickle: bool = False, force: bool = False) -> InvertRun:
    """Invert ``picture`` (its largest face, or the face at ``landmarks``) and write :data:`OUTPUTS`.

    Raises:
        WeightsError: no generator available. UsageError: ``stop_at`` above the generator's size.
        InputError: landmarks that give an implausible crop. OutputError: ``out_dir`` not writable.
    """
    check_stop_at(stop_at)
    dev = resolve_device(device)
    points = landmarks if landmarks is not None else detect_landmarks(picture, dev, trust_pickle)
    kwargs = {"iterations": iterations, "optimize": OptimizeSettings(steps=steps), "stop_at": stop_at}
    start = time.perf_counter()
    if generator is not None or encoder is not None:
        inverter = Inverter.from_paths(generator, encoder, dev, trust_pickle, **kwargs)
    else:
        inverter = Inverter.from_weights(dev, trust_pickle, **kwargs)
    if inverter is None:
        raise WeightsError("no generator: put stylegan2-ffhq-config-f.pt (or a ReStyle restyle_psp_ffhq_encode.pt) "
                           "in weights/, or pass --generator/--encoder")
    if stop_at is not None and stop_at > inverter.generator.size:
        raise UsageError(f"--stop-at {stop_at}: the generator's resolution is {inverter.generator.size}")
    loaded = time.perf_counter()
    rgb = torch.from_numpy(picture.rgb).permute(2, 0, 1)[None]
    side = float(quad_size(torch.from_numpy(points)[None])[0])
    if not 8 <= side <= 4 * max(picture.size):
        raise InputError(f"landmarks give a {side:.0f}px face crop in a {picture.size[0]}x{picture.size[1]} image "
                         "(wrong landmarks or frame?)")
    result = inverter.invert(rgb, torch.from_numpy(points)[None])
    done = time.perf_counter()

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().permute(1, 2, 0).numpy()

    strip = torch.cat([result.aligned[0], *result.per_iteration[:, 0]], dim=-1)
    record = {"image": str(picture.path), "backend": result.backend, **inverter.describe(),
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
    record = {"outputs": {name: str(out_dir / name) for name in OUTPUTS}, **record}
    return InvertRun(record, tuple(inverter.notes), tuple(result.notes[len(inverter.notes):]),
                     int(result.per_iteration.shape[0]))
