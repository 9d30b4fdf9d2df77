"""The records stages hand each other (DESIGN.md §1), and the per-stage bookkeeping of one run.

Every stage of :class:`~mvinvert_cli.pipeline.Recoverer` returns one frozen record; :class:`Recovery`
bundles them for the writer (``io.outputs``), eval and training. Tensors live on the Recoverer's
device unless noted; V is the model's vertex count, S the UV texture side.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .align.observation import Observation
from .io.images import Photo
from .morphable.result import FitResult

ProgressCallback = Callable[[str, str], None]
"""``callback(stage_name, event)`` with event "start" then "done" for every stage of a run."""


@dataclass
class StageRecord:
    """One stage of one run, for result.json: name, seconds, backend, status (ok | degraded |
    skipped) and a one-line note."""

    name: str
    seconds: float = 0.0
    backend: str = ""
    status: str = "ok"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class StageLog:
    """Per-stage timing and backend bookkeeping; tells ``progress`` when each stage starts and ends."""

    progress: ProgressCallback | None = None
    records: list[StageRecord] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str, backend: str = "") -> Iterator[StageRecord]:
        record = StageRecord(name, backend=backend)
        self._tell(name, "start")
        start = time.perf_counter()
        try:
            yield record
        finally:
            record.seconds = time.perf_counter() - start
            self.records.append(record)
        self._tell(name, "done")

    def skip(self, name: str, note: str) -> None:
        self.records.append(StageRecord(name, status="skipped", note=note))

    def timings(self) -> dict[str, float]:
        return {r.name: round(r.seconds, 4) for r in self.records}

    def _tell(self, name: str, event: str) -> None:
        if self.progress is not None:
            self.progress(name, event)


@dataclass(frozen=True)
class PhotoSamples:
    """Output of the sample stage (``texture.photo.sample_photo``).

    Attributes:
        t_uv: (V, 3) photo colours per vertex (full-resolution photo).
        photo_scores: (V,) Eq. 4 scores with the photo threshold T (anchor of Eq. 6).
        coarse_scores: (V,) the looser visibility used for T_coarse and the texel detail.
        photo_screen: (1, V, 3) vertices in photo pixels (x, y, depth).
    """

    t_uv: torch.Tensor
    photo_scores: torch.Tensor
    coarse_scores: torch.Tensor
    photo_screen: torch.Tensor


@dataclass(frozen=True)
class CoarseTexture:
    """Output of the coarse stage (§3.1): T_pca lit like the photo and T_coarse, both (V, 3) in
    [0, 1], and the blend's notes."""

    t_pca: torch.Tensor
    t_coarse: torch.Tensor
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refinement:
    """Output of the refine stage (§3.2): T_refine (V, 3), the coarse view renders I_R^i and their
    GAN inversions I_inv^i (N, 3, S, S), the inversion backend and the stitch's notes."""

    colors: torch.Tensor
    view_renders: torch.Tensor
    inverted: torch.Tensor
    backend: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class UVTextures:
    """Output of the bake stage: final and coarse UV textures (S, S, 3) float numpy in [0, 1] and
    the (S, S) bool mask of texels inside UV islands."""

    texture: np.ndarray
    coarse_texture: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Recovery:
    """Everything one run produced.

    Attributes:
        photo / observation / fit: the input and the aligned, parsed, fitted face.
        samples / coarse / refinement / textures: the stage records (refinement None when skipped).
        views: (yaw, pitch) of the synthetic views.
        stages: per-stage records; degraded: human-readable degradations (also on stderr).
        model_summary: the morphable model's summary for result.json.
        triangles: (F, 3) long and uvs: (V, 2) of the model topology.
    """

    photo: Photo
    observation: Observation
    fit: FitResult
    samples: PhotoSamples
    coarse: CoarseTexture
    refinement: Refinement | None
    textures: UVTextures
    views: tuple[tuple[float, float], ...]
    stages: tuple[StageRecord, ...]
    degraded: tuple[str, ...]
    model_summary: dict[str, Any]
    triangles: torch.Tensor
    uvs: torch.Tensor

    @property
    def colors(self) -> torch.Tensor:
        """(V, 3) final per-vertex colours: T_refine if refinement ran, else T_coarse."""
        return self.refinement.colors if self.refinement is not None else self.coarse.t_coarse
