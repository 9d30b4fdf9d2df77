"""One settings dataclass for the whole pipeline, plus device resolution.

Defaults follow the paper and the authors' code (DESIGN.md §4): views yaw 0/±30° and pitch −15°,
λ = 0.1 for the screened Poisson stitch, visibility thresholds T = 50 px (photo) and 3 px
(synthetic views) at 224 px, 50 rigid + 50 non-rigid fitting steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import UsageError

DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (30.0, 0.0), (-30.0, 0.0), (0.0, -15.0))
MAX_TEXTURE_SIZE = 4096  # photos are capped at 2048 px (io.images): a larger texture adds no detail
TEXTURE_SIZE_HELP = ("UV texture side, 64–4096. Peak memory of `recover` (2 cores, no refinement): "
                     "≈ 1.3 GB at 1024, ≈ 1.9 GB at 4096.")


@dataclass
class Settings:
    """Every tunable of a recovery run; serialised into result.json.

    Attributes:
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seed for every random choice (noise maps, optimisation inits).
        views: (yaw, pitch) in degrees of the synthetic views rendered and inverted (§3.2).
        render_size: side of the crop the face is fitted and rendered at (Deep3DFaceRecon: 224).
        texture_size: side of the UV texture written to texture.png.
        stitch_lambda: λ of Eq. 6, weight of the anchor to the photo's visible colours.
        vis_threshold_photo: silhouette-distance threshold T (px at render_size) for the photo (Eq. 4).
        vis_threshold_view: the same threshold for synthetic views.
        fit_rigid_steps / fit_nonrigid_steps / fit_lr: fitting schedule (Adam).
        w_landmark / w_photo / w_reg: fitting loss weights.
        invert_iterations: ReStyle residual iterations (Eq. 2), default 5.
        optimize_steps: latent-optimisation steps when no encoder is available.
        refine: run the multi-view GAN-inversion refinement (needs a generator).
        aligner / parser: backend names or "auto".
        face_index: which detected face to use (0 = largest).
        trust_pickle: allow checkpoints that are pickles able to execute code (``--trust-pickle``).
        encoder: path of a ReStyle-layout encoder checkpoint to use instead of weights/ (``--encoder``).
    """

    device: str = "auto"
    seed: int = 0
    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    render_size: int = 224
    texture_size: int = 1024
    stitch_lambda: float = 0.1
    vis_threshold_photo: float = 50.0
    vis_threshold_view: float = 3.0
    fit_rigid_steps: int = 50
    fit_nonrigid_steps: int = 50
    fit_lr: float = 0.01
    w_landmark: float = 100.0
    w_photo: float = 1.6
    w_reg: float = 1e-3
    invert_iterations: int = 5
    optimize_steps: int = 100
    refine: bool = True
    aligner: str = "auto"
    parser: str = "auto"
    face_index: int = 0
    trust_pickle: bool = False
    encoder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["views"] = [list(v) for v in self.views]
        return data


def parse_views(text: str) -> tuple[tuple[float, float], ...]:
    """Parse ``"0,30,-30"`` (yaws) or ``"0:0,30:0,0:-15"`` (yaw:pitch pairs) into (yaw, pitch) tuples."""
    views = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        yaw, _, pitch = item.partition(":")
        try:
            views.append((float(yaw), float(pitch) if pitch else 0.0))
        except ValueError as exc:
            raise UsageError(f"bad view {item!r}: use yaw or yaw:pitch in degrees, e.g. 0,30,-30,0:-15") from exc
    if not views:
        raise UsageError("--views needs at least one view")
    for yaw, pitch in views:
        if abs(yaw) > 90 or abs(pitch) > 90:
            raise UsageError(f"view ({yaw}, {pitch}) out of range: yaw and pitch must be within ±90°")
    return tuple(views)


def resolve_device(name: str = "auto") -> Any:
    """Map "auto"/"cpu"/"cuda[:N]" to a ``torch.device``; "cuda" without a GPU is a usage error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available (use --device cpu)")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
