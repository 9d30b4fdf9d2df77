"""face-alignment FAN 2D backend, from local files only (FORMATS.md §5).

The ``face_alignment.FaceAlignment`` constructor downloads its weights, so we assemble the same
pipeline from the package's parts: the SFD detector network (``s3fd-619a316812.pth``) and
``FAN(4)`` (``2DFAN4-11f355bf06.pth.tar`` state dict, or the TorchScript ``2DFAN4-cd938726ad.zip``),
both found in weights/ or the torch hub cache and loaded through the weights registry. Without
the SFD file the MediaPipe landmarker supplies the face boxes (reported in ``notes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..weights import ASSET_BY_KEY, load_checkpoint, load_state_dict_strict, locate

CROP_RESOLUTION = 256  # FAN input side
REFERENCE_SCALE = 195.0  # SFD box → FAN scale
CENTER_Y_OFFSET = 0.12  # FAN centre shift up, as a fraction of the box height
SFD_THRESHOLD = 0.5


def _hub_file(key: str) -> Path | None:
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"  # honours $TORCH_HOME
    for name in ASSET_BY_KEY[key].filenames:
        if (hub / name).is_file():
            return hub / name
    return None


def fan_files() -> tuple[Path, Path | None] | None:
    """(FAN file, SFD file or None) from weights/ or the torch hub cache; None without FAN."""
    fan = locate("fan2d") or _hub_file("fan2d")
    if fan is None:
        return None
    return fan, locate("sfd") or _hub_file("sfd")


def sfd_boxes(net: Any, rgb8: np.ndarray, device: Any = "cpu") -> list[tuple[np.ndarray, float]]:
    """SFD face boxes (x1, y1, x2, y2) and scores for an RGB uint8 photo.

    face-alignment ≥ 1.3's ``batch_detect`` flips RGB → BGR itself before subtracting its BGR mean,
    so the photo goes in as RGB (as ``SFDDetector.detect_from_image`` is given it by the package's own
    API); then NMS at IoU 0.3 and the 0.5 score threshold, as ``SFDDetector._filter_bboxes``.
    """
    from face_alignment.detection.sfd.bbox import nms
    from face_alignment.detection.sfd.detect import detect

    found = detect(net, np.ascontiguousarray(rgb8), device=str(device))[0]
    if len(found) == 0:
        return []
    found = found[nms(found, 0.3)]
    return [(b[:4].astype(np.float32), float(b[4])) for b in found if b[4] > SFD_THRESHOLD]


class FanLandmarker:
    """SFD boxes (or MediaPipe boxes) → FAN heatmaps → 68 iBUG points in photo pixels."""

    name = "fan"

    def __init__(self, device: Any = "cpu", trust_pickle: bool = False) -> None:
        import torch
        from face_alignment.models import FAN

        from ..errors import WeightsError

        files = fan_files()
        if files is None:
            raise WeightsError("FAN weights not found: put 2DFAN4-11f355bf06.pth.tar (or 2DFAN4-cd938726ad.zip) "
                               "in weights/ (from https://www.adrianbulat.com/downloads/python-fan/)")
        fan_path, sfd_path = files
        self.device = torch.device(device)
        self.notes: list[str] = []
        if fan_path.suffix == ".zip":  # TorchScript archive (face-alignment 1.3–1.5)
            try:
                self.net = torch.jit.load(str(fan_path), map_location=self.device)
            except Exception as exc:
                raise WeightsError(f"{fan_path}: not a TorchScript FAN archive ({type(exc).__name__})") from exc
        else:
            self.net = FAN(4)
            load_state_dict_strict(self.net, load_checkpoint(fan_path, trust_pickle), fan_path, "FAN 2D")
        self.net.to(self.device).eval()
        self.detector: Any
        if sfd_path is not None:
            from face_alignment.detection.sfd.net_s3fd import s3fd

            self.detector = s3fd()
            load_state_dict_strict(self.detector, load_checkpoint(sfd_path, trust_pickle), sfd_path, "SFD")
            self.detector.to(self.device).eval()
        else:
            from .mediapipe_backend import MediaPipeLandmarker

            self.detector = MediaPipeLandmarker()
            self.notes.append("SFD detector weights missing: MediaPipe boxes used for FAN")

    def boxes(self, rgb8: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        """Face boxes (x1, y1, x2, y2) with scores."""
        from .mediapipe_backend import MediaPipeLandmarker

        if isinstance(self.detector, MediaPipeLandmarker):
            return [(face.box, None) for face in self.detector.detect(rgb8)]
        return sfd_boxes(self.detector, rgb8, self.device)

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float | None]]:
        """[(landmarks (68, 2), box (4,), score)] for every face in ``rgb`` (H, W, 3)."""
        import torch
        from face_alignment.utils import crop, flip, get_preds_fromhm

        rgb8 = rgb if rgb.dtype == np.uint8 else cv2.convertScaleAbs(rgb, alpha=255.0)  # rounds, saturates
        results = []
        for box, score in self.boxes(rgb8):
            x1, y1, x2, y2 = (float(v) for v in box)
            centre = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0 - (y2 - y1) * CENTER_Y_OFFSET])
            scale = (x2 - x1 + y2 - y1) / REFERENCE_SCALE
            patch = crop(rgb8, centre, scale).transpose(2, 0, 1).astype(np.float32) / 255.0
            inp = torch.from_numpy(patch)[None].to(self.device)
            with torch.no_grad():
                heat = self.net(inp)
                heat = heat[-1] if isinstance(heat, list | tuple) else heat
                back = self.net(flip(inp))
                back = back[-1] if isinstance(back, list | tuple) else back
                heat = heat + flip(back, is_label=True)
            _, points, _ = get_preds_fromhm(heat.float().cpu().numpy(), centre, scale)
            results.append((points.reshape(68, 2).astype(np.float32), box, score))
        return results
