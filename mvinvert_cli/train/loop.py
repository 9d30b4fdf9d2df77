"""The training loop of MvInvert §3.3: the residual encoder learns end to end, the generator stays frozen.

One step (:meth:`Trainer.step`):

1. a batch of prepared photos and real UV textures is drawn with a generator seeded by
   (seed, step), so a run and its resumed continuation see the same data and random renders;
2. the differentiable path (:class:`~mvinvert_cli.train.path.InversionPath`) produces the
   re-rendered, blended face, K random-pose renders and the UV texture; every output depends on
   the encoder through the frozen generator, the resampling and the screened Poisson stitch;
3. encoder update: 1.9·L_rec + 0.2·L_perc + 0.8·L_id + 0.1·(L_adv^tex + L_adv^face) (Adam);
4. discriminator update: logistic loss of both discriminators on real vs detached fake samples,
   plus a lazy R1 penalty every ``r1_every`` steps.

Checkpoints use the ReStyle layout (``state_dict`` with ``encoder.``/``decoder.`` prefixes,
``latent_avg``, ``opts``) so the inference loader reads them as it reads the official files, and
add the training state (optimisers, discriminators, step) for ``--resume``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UsageError, WeightsError
from ..invert.encoder import load_restyle, restyle_checkpoint
from ..io.atomic import atomic_write, atomic_write_text
from ..io.images import save_image
from ..weights import load_state_dict_strict
from . import losses as L
from .data import FaceImageFolder, TextureFolder, stack_items
from .discriminators import FaceDiscriminator, TextureDiscriminator

CHECKPOINT_FORMAT = "mvinvert-train-1"


@dataclass
class TrainSettings:
    """Every tunable of a training run (stored in the checkpoint's ``opts['train']``).

    Attributes:
        steps: total optimisation steps (a resumed run continues up to this number).
        batch_size: photos per step.
        lr: Adam learning rate of the encoder; ``betas`` its Adam betas.
        disc_lr / disc_betas: Adam settings of both discriminators.
        seed: seeds model initialisation, data order and random renders (per step).
        weights: loss weights (paper: 1.9 / 0.2 / 0.8 / 0.1).
        identity_renders: K of Eq. 9, random pose/expression/lighting renders per photo.
        r1_gamma / r1_every: lazy R1 regularisation of the discriminators (0 disables).
        texture_size: side of the UV textures the texture discriminator compares.
        disc_size / disc_channels: resolution and channel base of the discriminators.
        central_crop: fraction of the UV texture seen by the central head (Eq. 10).
        checkpoint_every / sample_every / log_every: in steps (0 = only at the end).
    """

    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    disc_lr: float = 2e-4
    disc_betas: tuple[float, float] = (0.0, 0.99)
    seed: int = 0
    weights: L.LossWeights = field(default_factory=L.LossWeights)
    identity_renders: int = 2
    r1_gamma: float = 1.0
    r1_every: int = 16
    texture_size: int = 256
    disc_size: int = 128
    disc_channels: int = 8192
    central_crop: float = 0.5
    checkpoint_every: int = 500
    sample_every: int = 100
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"], data["disc_betas"] = list(self.betas), list(self.disc_betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "weights" in values:
            values["weights"] = L.LossWeights(**values["weights"])
        for key in ("betas", "disc_betas"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of one step: a function of (seed, step) only, so resuming is exact."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return gen


class Trainer:
    """Owns the path (encoder + frozen generator + stitch + renderer), discriminators, optimisers.

    Args:
        path: an :class:`~mvinvert_cli.train.path.InversionPath` (or anything with the same
            ``encoder``, ``decoder``, ``latent_avg``, ``settings`` and ``forward(batch, gen)``).
        face_net: :class:`~mvinvert_cli.train.losses.FaceFeatures` for Eq. 8–9.
        photos: prepared photos (fields the path reads, e.g. ``photo``, ``mask``).
        textures: real UV textures for Eq. 10, or None (the term is then left out and reported).
        settings: :class:`TrainSettings`.
        device: where everything runs.
        init_opts: ``opts`` of the ReStyle checkpoint the encoder started from (kept in ours).
    """

    def __init__(self, path: nn.Module, face_net: L.FaceFeatures, photos: FaceImageFolder | Any,
                 textures: TextureFolder | Any | None, settings: TrainSettings, device: torch.device,
                 init_opts: Mapping[str, Any] | None = None) -> None:
        self.path = path.to(device)
        self.face_net = face_net.to(device)
        self.photos = photos
        self.textures = textures
        self.settings = settings
        self.device = device
        self.step_count = 0
        self.init_opts = {k: v for k, v in dict(init_opts or {}).items()
                          if k not in ("train", "train_path", "trained_steps")}
        self.notes: list[str] = []
        if textures is None:
            self.notes.append("no real textures: texture adversarial term (Eq. 10) left out")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            self.tex_disc = TextureDiscriminator(settings.disc_size, settings.central_crop,
                                                 settings.disc_channels).to(device)
            self.face_disc = FaceDiscriminator(settings.disc_size, channel_base=settings.disc_channels).to(device)
        self.opt = torch.optim.Adam(self.path.encoder.parameters(), lr=settings.lr, betas=settings.betas)
        disc_params = list(self.face_disc.parameters())
        if textures is not None:
            disc_params += list(self.tex_disc.parameters())
        self.disc_opt = torch.optim.Adam(disc_params, lr=settings.disc_lr, betas=settings.disc_betas)

    # ------------------------------------------------------------------ one step
    def batch_indices(self, step: int) -> list[int]:
        """Photos of ``step``: consecutive slots of per-epoch permutations seeded by (seed, epoch),
        so every photo is seen once per epoch and the order depends on (seed, step) only."""
        n, size = len(self.photos), self.settings.batch_size
        slots = range(step * size, (step + 1) * size)
        perms: dict[int, list[int]] = {}
        for slot in slots:
            epoch = slot // n
            if epoch not in perms:
                perms[epoch] = torch.randperm(n, generator=step_generator(self.settings.seed, -1 - epoch)).tolist()
        return [perms[slot // n][slot % n] for slot in slots]

    def _batch(self, gen: torch.Generator) -> tuple[dict[str, Tensor], Tensor | None]:
        idx = self.batch_indices(self.step_count)
        batch = {k: v.to(self.device) for k, v in stack_items(self.photos[i] for i in idx).items()}
        real_tex = None
        if self.textures is not None:
            tidx = torch.randint(len(self.textures), (len(idx),), generator=gen).tolist()
            real_tex = torch.stack([self.textures[i] for i in tidx]).to(self.device)
        return batch, real_tex

    def encoder_losses(self, out: Any, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The generator-side terms of Eq. 7–11 for one path output (see :meth:`step`)."""
        photo, mask = out.photo, out.mask
        points5 = batch.get("points5")
        terms: dict[str, Tensor] = {"rec": L.reconstruction_loss(photo, out.blended, mask)}  # Eq. 7
        (feat_photo, emb_photo) = self.face_net(photo, points5)
        (feat_blend, _) = self.face_net(out.blended, points5)
        terms["perc"] = L.perceptual_loss(feat_photo, feat_blend, mask)  # Eq. 8
        b, k = out.identity_renders.shape[:2]
        pts_k = None if out.identity_points5 is None else out.identity_points5.flatten(0, 1)
        _, emb_renders = self.face_net(out.identity_renders.flatten(0, 1), pts_k)
        terms["id"] = L.identity_loss(emb_photo, emb_renders.view(b, k, -1))  # Eq. 9
        if self.textures is not None:
            terms["adv_tex"] = L.generator_adversarial_loss(self.tex_disc(out.uv_texture))  # Eq. 10
        terms["adv_face"] = L.generator_adversarial_loss(self.face_disc(out.blended))  # Eq. 11
        return terms

    def step(self) -> dict[str, float]:
        """One encoder update and one discriminator update; returns the logged values."""
        s = self.settings
        start = time.perf_counter()
        gen = step_generator(s.seed, self.step_count)
        batch, real_tex = self._batch(gen)
        self.path.train()
        self.tex_disc.requires_grad_(False)
        self.face_disc.requires_grad_(False)
        out = self.path(batch, gen)
        terms = self.encoder_losses(out, batch)
        total = L.total_loss(terms, s.weights)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = _grad_norm(self.path.encoder.parameters())
        self.opt.step()

        self.tex_disc.requires_grad_(True)
        self.face_disc.requires_grad_(True)
        d_terms = {"d_face": L.discriminator_adversarial_loss(self.face_disc(batch["photo"]),
                                                              self.face_disc(out.blended.detach()))}
        if real_tex is not None:
            d_terms["d_tex"] = L.discriminator_adversarial_loss(self.tex_disc(real_tex),
                                                                self.tex_disc(out.uv_texture.detach()))
        d_total = torch.stack(list(d_terms.values())).sum()
        if s.r1_gamma > 0 and s.r1_every > 0 and self.step_count % s.r1_every == 0:
            real = batch["photo"].detach().requires_grad_(True)
            r1 = L.r1_penalty(self.face_disc(real), real)
            if real_tex is not None:
                real_t = real_tex.detach().requires_grad_(True)
                r1 = r1 + L.r1_penalty(self.tex_disc(real_t), real_t)
            d_terms["r1"] = r1
            d_total = d_total + 0.5 * s.r1_gamma * s.r1_every * r1
        self.disc_opt.zero_grad(set_to_none=True)
        d_total.backward()
        self.disc_opt.step()

        self.step_count += 1
        row = {"step": self.step_count, "total": total.item()}
        row.update({k: v.item() for k, v in terms.items()})
        row.update({k: v.item() for k, v in d_terms.items()})
        row.update(encoder_grad_norm=grad_norm, seconds=time.perf_counter() - start)
        self.last_output = out
        return row

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """ReStyle-layout checkpoint (``invert.encoder.restyle_checkpoint``) plus the training state.

        ``invert.encoder.load_restyle`` (hence ``recover --encoder``) reads it like an official
        file; the extra entries (step, optimisers, discriminators, settings) serve ``--resume``.
        Everything is tensors, numbers, strings and dicts, so it loads with ``weights_only=True``.
        """
        opts = {"n_iters_per_batch": 5, **self.init_opts, "train": self.settings.to_dict(),
                "train_path": self.path.settings.to_opts(),
                "trained_steps": self.step_count}
        ckpt = restyle_checkpoint(self.path.encoder, self.path.decoder, self.path.latent_avg, opts)
        ckpt.update({
            "format": CHECKPOINT_FORMAT,
            "step": self.step_count,
            "optimizer": self.opt.state_dict(),
            "discriminators": {"texture": self.tex_disc.state_dict(), "face": self.face_disc.state_dict()},
            "disc_optimizer": self.disc_opt.state_dict(),
        })
        return ckpt

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`checkpoint` atomically to ``path``."""
        ckpt = _to_cpu(self.checkpoint())
        return atomic_write(path, lambda tmp: torch.save(ckpt, tmp))

    def load(self, ckpt: Mapping[str, Any], source: str | os.PathLike) -> None:
        """Restore encoder, discriminators, optimisers and step from a :meth:`checkpoint` dict.

        Raises:
            WeightsError: not a training checkpoint of this project, or of other model sizes.
        """
        missing = [k for k in ("state_dict", "step", "optimizer", "discriminators", "disc_optimizer")
                   if k not in ckpt]
        if missing or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise WeightsError(f"{source}: not a resumable `mvinvert train` checkpoint "
                               f"(missing {', '.join(missing) or 'format tag'})")
        enc = {k.removeprefix("encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
        load_state_dict_strict(self.path.encoder, enc, source, "encoder")
        load_state_dict_strict(self.tex_disc, ckpt["discriminators"]["texture"], source, "texture discriminator")
        load_state_dict_strict(self.face_disc, ckpt["discriminators"]["face"], source, "face discriminator")
        try:
            self.opt.load_state_dict(ckpt["optimizer"])
            self.disc_opt.load_state_dict(ckpt["disc_optimizer"])
        except (ValueError, KeyError) as exc:
            raise WeightsError(f"{source}: optimiser state does not match this model ({exc})") from exc
        self.step_count = int(ckpt["step"])


def _grad_norm(parameters) -> float:
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------- logs and samples

class LossLog:
    """Loss rows kept in memory and written atomically as ``loss.csv`` and ``loss.jsonl``.

    On resume the existing ``loss.jsonl`` is read back and rows after the resumed step dropped,
    so the log always describes exactly the steps the checkpoint has seen.
    """

    def __init__(self, out_dir: Path, resume_step: int | None = None) -> None:
        self.csv_path, self.jsonl_path = out_dir / "loss.csv", out_dir / "loss.jsonl"
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and self.jsonl_path.is_file():
            for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if row.get("step", math.inf) <= resume_step:
                    self.rows.append(row)

    def append(self, row: Mapping[str, float]) -> None:
        self.rows.append(dict(row))

    def flush(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv_path, buffer.getvalue())
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in self.rows))


def sample_grid(out: Any, max_rows: int = 4) -> np.ndarray:
    """(H', W', 3) float image: per sample, photo | views | inverted views | blended | UV texture."""
    rows = []
    size = out.photo.shape[-1]
    for b in range(min(max_rows, out.photo.shape[0])):
        tiles = [out.photo[b]]
        tiles += list(_resize(out.views[b], size))
        tiles += list(_resize(out.inverted[b], size))
        tiles += [out.blended[b], _resize(out.uv_texture[b:b + 1], size)[0]]
        rows.append(torch.cat([t.detach().float().clamp(0, 1).cpu() for t in tiles], dim=2))
    return torch.cat(rows, dim=1).permute(1, 2, 0).numpy()


def _resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def save_samples(out: Any, path: Path) -> Path:
    return save_image(path, sample_grid(out))


# ----------------------------------------------------------------------------- the run

@dataclass
class RunResult:
    """What :func:`run` did: output folder, steps, last losses, checkpoints, notes."""

    out_dir: Path
    start_step: int
    end_step: int
    last: dict[str, float]
    first: dict[str, float]
    checkpoints: list[Path]
    samples: list[Path]
    notes: list[str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["checkpoints"] = [str(p) for p in self.checkpoints]
        data["samples"] = [str(p) for p in self.samples]
        return data


def run(trainer: Trainer, out_dir: str | os.PathLike, on_step: Callable[[dict[str, float]], None] | None = None,
        log: LossLog | None = None) -> RunResult:
    """Train from ``trainer.step_count`` up to ``settings.steps``, logging, sampling, checkpointing.

    Writes under ``out_dir``: ``checkpoints/step_NNNNNN.pt`` and ``checkpoints/last.pt``,
    ``samples/step_NNNNNN.png``, ``loss.csv`` / ``loss.jsonl``. The last step always gets a
    checkpoint, a sample grid and a flushed log.
    """
    s = trainer.settings
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    log = log or LossLog(out_dir)
    start, begin = trainer.step_count, time.perf_counter()
    checkpoints: list[Path] = []
    samples: list[Path] = []
    first: dict[str, float] = {}
    row: dict[str, float] = {}
    if start >= s.steps:
        raise UsageError(f"nothing to do: the run is already at step {start} of --steps {s.steps}")
    while trainer.step_count < s.steps:
        row = trainer.step()
        first = first or row
        log.append(row)
        step, last = trainer.step_count, trainer.step_count == s.steps
        if on_step:
            on_step(row)
        if last or (s.sample_every and step % s.sample_every == 0):
            samples.append(save_samples(trainer.last_output, out_dir / "samples" / f"step_{step:06d}.png"))
        if last or (s.log_every and step % s.log_every == 0):
            log.flush()
        if last or (s.checkpoint_every and step % s.checkpoint_every == 0):
            path = trainer.save(out_dir / "checkpoints" / f"step_{step:06d}.pt")
            checkpoints.append(path)
            data = path.read_bytes()
            atomic_write(out_dir / "checkpoints" / "last.pt", lambda tmp, data=data: tmp.write_bytes(data))
    return RunResult(out_dir, start, trainer.step_count, row, first, checkpoints, samples,
                     list(trainer.notes), time.perf_counter() - begin)


def settings_from_checkpoint(ckpt: Mapping[str, Any], **overrides: Any) -> TrainSettings:
    """The :class:`TrainSettings` a checkpoint was trained with, updated by ``overrides``."""
    train = ckpt.get("opts", {}).get("train") if isinstance(ckpt.get("opts"), Mapping) else None
    if not isinstance(train, Mapping):
        raise WeightsError("checkpoint has no training settings (opts['train'])")
    return replace(TrainSettings.from_dict(train), **{k: v for k, v in overrides.items() if v is not None})


def load_trained_encoder(path: str | os.PathLike, device: torch.device | str = "cpu", trust_pickle: bool = False):
    """A `mvinvert train` checkpoint (or any ReStyle checkpoint) loaded for inference.

    The checkpoint is in the ReStyle layout, so this is ``invert.encoder.load_restyle`` (strict
    encoder and generator loading, ``weights_only``); the training step it was saved at is added
    to ``notes``. This is what ``mvinvert recover --encoder CKPT`` needs.

    Returns:
        :class:`mvinvert_cli.invert.encoder.RestyleModel` (encoder in eval mode, frozen generator).

    Raises:
        WeightsError: unreadable or not a ReStyle-layout checkpoint.
    """
    model = load_restyle(path, device, trust_pickle=trust_pickle)
    step = model.opts.get("trained_steps")
    if step is not None:
        model.notes.append(f"encoder fine-tuned by `mvinvert train` for {int(step)} steps")
    return model
