"""The inversion stage as the pipeline sees it: rendered views in, regenerated views out (§3.2).

:class:`Inverter` holds the generator (and the ReStyle encoder when one is available), aligns each
view FFHQ-style from its projected landmarks, inverts it (residual encoder, Eq. 2–3, or latent
optimisation when no encoder is present) and warps the result back into the render frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..weights import locate
from .encoder import load_restyle
from .ffhq_align import align_views, unalign
from .generator_files import load_rosinality
from .optimize import OptimizeSettings, optimize_latents
from .restyle import DEFAULT_ITERATIONS, average_image, residual_inversion
from .stylegan2 import Generator

ENCODER_SIZE = 256
"""FFHQ crop side fed to the official ReStyle encoders."""


@dataclass
class InversionResult:
    """One batch of inverted views (B views, T recorded steps).

    Attributes:
        images: (B,3,H,W) in [0,1], render frame: G(w) warped back where the FFHQ crop covers the
            render (``coverage``), the input render elsewhere.
        latents: (B,L,D) final w+ (L = 18, D = 512 for FFHQ).
        per_iteration: (T,B,3,S,S) in [0,1] in the aligned frame: ReStyle's ŷ_1…ŷ_T, or optimisation
            snapshots.
        backend: "restyle-psp", "restyle-e4e" or "optimisation".
        coverage: (B,1,H,W) 1 where ``images`` holds the generator's output.
        aligned: (B,3,S,S) the FFHQ-aligned inputs in [0,1].
        notes: degradations and choices worth reporting.
    """

    images: Tensor
    latents: Tensor
    per_iteration: Tensor
    backend: str
    coverage: Tensor
    aligned: Tensor
    notes: list[str] = field(default_factory=list)


class Inverter:
    """Loaded models + settings of the inversion stage.

    Args:
        generator: G (frozen, on ``device``).
        latent_avg: w̄ (L,D) or (D,).
        encoder: ReStyle encoder, or None for latent optimisation.
        backend: name reported in results.
        notes: why this backend was chosen (reported by the caller).
        iterations: ReStyle passes (default 5).
        optimize: settings of the encoder-less fallback.
        stop_at: stop G at this resolution (None: full output, pooled). The optimisation fallback
            defaults to the working size S to keep each step cheap.
    """

    def __init__(self, generator: Generator, latent_avg: Tensor, encoder: nn.Module | None = None,
                 backend: str = "optimisation", notes: list[str] | None = None,
                 iterations: int = DEFAULT_ITERATIONS, optimize: OptimizeSettings = OptimizeSettings(),
                 stop_at: int | None = None) -> None:
        self.generator = generator.eval().requires_grad_(False)
        self.latent_avg = latent_avg if latent_avg.ndim == 2 else latent_avg[None].expand(generator.n_latent, -1)
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.backend = backend
        self.notes = list(notes or [])
        self.iterations = iterations
        self.optimize = optimize
        if encoder is not None:
            self.size = int(getattr(getattr(encoder, "config", None), "input_size", ENCODER_SIZE))
        else:
            self.size = min(ENCODER_SIZE, generator.size)
        self.stop_at = stop_at if stop_at is not None or encoder is not None else self.size
        self._average: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    @classmethod
    def from_paths(cls, generator_path: str | os.PathLike | None, encoder_path: str | os.PathLike | None,
                   device: torch.device | str, trust_pickle: bool = False, **kwargs) -> Inverter | None:
        """Build from explicit files: a ReStyle checkpoint (encoder + its own decoder) and/or a StyleGAN2
        generator (rosinality ``.pt`` or, with ``trust_pickle``, NVIDIA ``.pkl``); None when neither."""
        notes: list[str] = []
        if encoder_path is not None:
            model = load_restyle(encoder_path, device, trust_pickle)
            notes += model.notes
            notes.append(f"ReStyle-{model.kind.name} encoder from {Path(encoder_path).name} "
                         f"with its own decoder ({model.decoder.size}²)")
            if generator_path is not None:
                notes.append(f"{Path(generator_path).name} not used: the encoder was trained with its own decoder")
            return cls(model.decoder, model.latent_avg, model.encoder, f"restyle-{model.kind.name}", notes, **kwargs)
        if generator_path is None:
            return None
        loaded = load_rosinality(generator_path, device, trust_pickle)
        notes += loaded.notes
        settings = kwargs.get("optimize", OptimizeSettings())
        notes.append(f"no ReStyle encoder: latent optimisation ({settings.steps} Adam steps, pixel loss) "
                     f"with {Path(generator_path).name}")
        return cls(loaded.generator, loaded.latent_avg, None, "optimisation", notes, **kwargs)

    @classmethod
    def from_weights(cls, device: torch.device | str, trust_pickle: bool = False, **kwargs) -> Inverter | None:
        """Build from the weights directory: ReStyle-pSp, else ReStyle-e4e, else the StyleGAN2 ``.pt``
        alone (optimisation); None when no generator of any kind is present (refine stage skipped).

        Raises:
            WeightsError: a present file is corrupt or does not match its model.
        """
        encoder_path = locate("restyle_psp") or locate("restyle_e4e")
        return cls.from_paths(locate("stylegan2"), encoder_path, device, trust_pickle, **kwargs)

    def average(self) -> Tensor:
        """The average image ŷ_0 (1,3,S,S) in [−1,1], computed once."""
        if self._average is None:
            with torch.no_grad():
                self._average = average_image(self.generator, self.latent_avg, self.size, self.stop_at)
        return self._average

    def invert(self, images: Tensor, landmarks: Tensor) -> InversionResult:
        """Invert rendered views.

        Args:
            images: (B,3,H,W) renders in [0,1].
            landmarks: (B,68,2) their projected iBUG-68 landmarks, px (screen convention).

        Returns:
            :class:`InversionResult` (images in the render frame, latents, per-iteration images).
        """
        if images.ndim != 4 or images.shape[1] != 3 or landmarks.shape != (images.shape[0], 68, 2):
            raise ValueError(
                f"expected images (B,3,H,W) and landmarks (B,68,2), got {tuple(images.shape)} and "
                f"{tuple(landmarks.shape)}")
        images = images.to(self.device, torch.float32)
        landmarks = landmarks.to(self.device, torch.float32)
        if self.encoder is not None:
            with torch.no_grad():
                result = encoder_inversion(self.encoder, self.generator, self.latent_avg, images, landmarks,
                                           self.size, self.iterations, self.stop_at, self.average(), self.backend)
        else:
            aligned = align_views(images, landmarks, self.size)
            optimised = optimize_latents(self.generator, aligned, self.latent_avg, settings=self.optimize,
                                         stop_at=self.stop_at)
            with torch.no_grad():
                composed, coverage = compose_back(optimised.images, images, landmarks)
            result = InversionResult(composed, optimised.latents, optimised.snapshots, self.backend, coverage, aligned)
        result.notes = list(self.notes)
        if self.stop_at is not None and self.stop_at < self.generator.size:
            result.notes.append(f"generator stopped at {self.stop_at}² (of {self.generator.size}²)")
        return result

    def describe(self) -> dict:
        """JSON-ready summary: backend, sizes, iterations/steps, notes."""
        return {"backend": self.backend, "generator_size": self.generator.size, "input_size": self.size,
                "stop_at": self.stop_at, "iterations": self.iterations if self.encoder is not None else None,
                "optimize_steps": self.optimize.steps if self.encoder is None else None, "notes": self.notes}


def compose_back(final: Tensor, images: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """G's aligned output (B,3,R,R) in [0,1] warped back into the render frame of ``images``
    (B,3,H,W) and composed over them where the FFHQ crop covers the render; returns
    (composed (B,3,H,W), coverage (B,1,H,W))."""
    warped, coverage = unalign(final, landmarks, tuple(images.shape[-2:]))
    return coverage * warped + (1 - coverage) * images, coverage


def encoder_inversion(encoder: nn.Module, generator: Generator, latent_avg: Tensor, images: Tensor,
                      landmarks: Tensor, size: int, iterations: int, stop_at: int | None = None,
                      average: Tensor | None = None, backend: str = "restyle",
                      last_pass_grad: bool = True) -> InversionResult:
    """Rendered views → FFHQ-aligned crops → residual encoder (Eq. 2–3) → warped back (§3.2).

    The one encoder inversion of the project: :meth:`Inverter.invert` runs it without gradients,
    the training path (:class:`~mvinvert_cli.train.path.InversionPath`) with them, on the last pass.

    Args:
        encoder, generator, latent_avg: E, G (frozen) and w̄ (L,D).
        images: (B,3,H,W) renders in [0,1]; landmarks: (B,68,2) their projected landmarks, px.
        size: S, the encoder's input side; iterations: T residual passes.
        stop_at: stop G at this resolution; average: precomputed ŷ_0 at S (else computed).
        backend: name reported in the result.
        last_pass_grad: see :func:`~mvinvert_cli.invert.restyle.residual_passes`.

    Returns:
        :class:`InversionResult` (no notes); differentiable w.r.t. the encoder when the caller
        enables gradients.
    """
    aligned = align_views(images, landmarks, size)
    trace = residual_inversion(encoder, generator, latent_avg, aligned, iterations, size, stop_at, average,
                               last_pass_grad)
    composed, coverage = compose_back(trace.final, images, landmarks)
    return InversionResult(composed, trace.latents[-1], trace.images, backend, coverage, aligned)
