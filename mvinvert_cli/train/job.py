"""``mvinvert train`` as one library call: folders in, a training run out (:func:`run_job`).

Loads the starting ReStyle checkpoint (the registry's ``restyle_psp``, ``--init``, or the
``--resume`` checkpoint), prepares every photo once with the inference pipeline (cached under
``OUT/cache``), builds :class:`~mvinvert_cli.train.path.InversionPath` on the pipeline's morphable
model and runs :func:`~mvinvert_cli.train.loop.run`. Every degraded choice (tiny face network
without ArcFace weights, no real textures, skipped photos, pipeline fallbacks) is returned in
``RunResult.notes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..align.observation import CROP_SIZE
from ..config import Settings, resolve_device
from ..errors import OutputError, UsageError
from ..invert.encoder import load_restyle
from ..pipeline import Recoverer
from ..refine import refine_settings
from ..weights import load_checkpoint, locate, require
from .data import FaceImageFolder, TextureFolder
from .loop import LossLog, RunResult, Trainer, TrainSettings, run, settings_from_checkpoint
from .losses import face_network
from .path import InversionPath, PathSettings
from .prepare import PREPARE_TEXTURE_SIZE, pipeline_preparation

FACE_NET_CHOICES = ("auto", "arcface", "tiny")


@dataclass
class TrainJob:
    """What to train on and where to write.

    Attributes:
        images: folder of face photos.
        real_textures: folder of real UV textures (Eq. 10), or None to leave that term out.
        out_dir: run folder (checkpoints/, samples/, loss.csv, loss.jsonl, cache/).
        init: ReStyle checkpoint to start from; None = the registry's ``restyle_psp``.
        resume: a ``mvinvert train`` checkpoint to continue (overrides ``init``).
        settings: :class:`TrainSettings` (with ``resume``, the stored ones are used and only
            ``steps`` is taken from here).
        face_net: "auto" (ArcFace when present, else the built-in tiny net), "arcface" or "tiny".
        iterations: ReStyle passes per view during training.
        device / aligner / parser / trust_pickle: as for ``recover``.
        force: reuse an output folder that already holds checkpoints without resuming.
    """

    images: Path
    real_textures: Path | None
    out_dir: Path
    init: Path | None = None
    resume: Path | None = None
    settings: TrainSettings = field(default_factory=TrainSettings)
    face_net: str = "auto"
    iterations: int = 1
    device: str = "auto"
    aligner: str = "auto"
    parser: str = "auto"
    trust_pickle: bool = False
    force: bool = False


def _face_network(choice: str, device: torch.device, trust_pickle: bool, notes: list[str]):
    reason = "--face-net tiny"
    if choice == "auto":
        choice = "arcface" if locate("arcface") is not None else "tiny"
        reason = "no ArcFace backbone.pth in weights/"
    if choice == "tiny":
        notes.append(f"perceptual/identity losses (Eq. 8-9) use the built-in tiny network ({reason}): "
                     "smoke-test quality only")
    return face_network(choice, device, trust_pickle=trust_pickle)


def _check_output(job: TrainJob) -> None:
    existing = sorted((job.out_dir / "checkpoints").glob("step_*.pt")) if job.out_dir.is_dir() else []
    if existing and job.resume is None and not job.force:
        raise OutputError(f"{job.out_dir} already holds checkpoints; continue with --resume "
                          f"{job.out_dir / 'checkpoints' / 'last.pt'} or start over with --force")


def run_job(job: TrainJob, on_item: Callable[[int, int, Path, str], None] | None = None,
            on_step: Callable[[dict[str, float]], None] | None = None,
            on_ready: Callable[[Trainer], None] | None = None) -> RunResult:
    """Prepare the data, build the models and train; see the module docstring.

    Args:
        on_item: progress of the photo preparation ``(index, total, path, status)``.
        on_step: called with each step's logged row.
        on_ready: called with the trainer before the first step (e.g. to size a progress bar).

    Raises:
        InputError: unreadable folders, no usable photo. WeightsError: missing/corrupt checkpoints.
        OutputError: the run folder is not writable or already used. UsageError: bad options.
    """
    if job.face_net not in FACE_NET_CHOICES:
        raise UsageError(f"--face-net {job.face_net!r}: expected one of {', '.join(FACE_NET_CHOICES)}")
    size = job.settings.disc_size
    if size < 4 or size & (size - 1):
        raise UsageError(f"--disc-size {size}: must be a power of two ≥ 4")
    device = resolve_device(job.device)
    _check_output(job)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    settings = job.settings
    ckpt = None
    if job.resume is not None:
        ckpt = load_checkpoint(job.resume, trust_pickle=job.trust_pickle)
        settings = settings_from_checkpoint(ckpt, steps=job.settings.steps)
        source = job.resume
    else:
        source = job.init if job.init is not None else require("restyle_psp")
    restyle = load_restyle(source, device, trust_pickle=job.trust_pickle)
    notes += restyle.notes

    recoverer = Recoverer(Settings(device=str(device), refine=False, texture_size=PREPARE_TEXTURE_SIZE,
                                   aligner=job.aligner, parser=job.parser, seed=settings.seed,
                                   trust_pickle=job.trust_pickle))
    notes += [f"prepare: {note}" for note in recoverer.degraded]
    prepare, version = pipeline_preparation(recoverer)
    photos = FaceImageFolder(job.images, job.out_dir / "cache", prepare, version, on_item=on_item)
    notes += [f"skipped {path.name}: {reason}" for path, reason in photos.skipped]
    textures = TextureFolder(job.real_textures, settings.texture_size) if job.real_textures is not None else None

    path_settings = PathSettings(
        refine=refine_settings(recoverer.settings), render_size=CROP_SIZE,
        encoder_size=restyle.encoder.config.input_size, iterations=job.iterations,
        texture_size=settings.texture_size, identity_renders=settings.identity_renders)
    if ckpt is not None and isinstance(ckpt.get("opts", {}).get("train_path"), dict):
        path_settings = path_settings.updated(ckpt["opts"]["train_path"])
    path = InversionPath(recoverer.model, restyle.encoder, restyle.decoder, restyle.latent_avg, path_settings)
    face_net = _face_network(job.face_net, device, job.trust_pickle, notes)
    trainer = Trainer(path, face_net, photos, textures, settings, device, init_opts=restyle.opts)
    if ckpt is not None:
        trainer.load(ckpt, job.resume)
    trainer.notes = notes + trainer.notes
    if on_ready:
        on_ready(trainer)
    log = LossLog(job.out_dir, resume_step=trainer.step_count if ckpt is not None else None)
    return run(trainer, job.out_dir, on_step=on_step, log=log)


def default_out_dir() -> Path:
    """``./mvinvert_train`` in the current directory."""
    return Path(os.getcwd()) / "mvinvert_train"
