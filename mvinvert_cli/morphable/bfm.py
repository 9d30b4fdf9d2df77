"""Basel Face Model 2009 loaders: the Deep3DFaceRecon 35,709-vertex front model (FORMATS.md §1).

Two sources, both located through :mod:`mvinvert_cli.weights`:

1. the user's ``01_MorphableModel.mat`` (keys shapeMU/shapePC/shapeEV/texMU/texPC/texEV) +
   ``Exp_Pca.bin`` + the small public files ``BFM_front_idx.mat`` (idx), ``BFM_exp_idx.mat``
   (trimIndex), ``facemodel_info.mat`` (tri, point_buf, keypoints, skinmask, frontmask2_idx,
   tri_mask2), ``std_exp.txt`` and ``BFM_UV.mat`` (UV), converted exactly like Deep3DFaceRecon's
   ``util/load_mats.py:transferBFM09`` (§1c);
2. a ready ``BFM_model_front.mat`` (meanshape, idBase, exBase, meantex, texBase + the facemodel_info
   keys; MvInvert's variant adds ``tcoords``).

Both go through the same arrays (:data:`FRONT_KEYS`, the BFM_model_front.mat layout, 1-based
indices) and :func:`model_from_front`, which applies Deep3DFaceRecon's interpretation (§1d): indices
−1, shape (V, 3) in decimetres recentred on its mean vertex, albedo /255. The converted arrays are
cached as ``<stem>_mvinvert.npz`` next to the source file, keyed by the sources' sizes and mtimes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from ..errors import OutputError, WeightsError
from ..io.atomic import atomic_open
from ..weights import ASSET_BY_KEY, locate, require
from .model import MorphableModel, model_from_arrays

N_ID, N_EXP, N_TEX = 80, 64, 80  # components kept (Deep3DFaceRecon)
SHAPE_SCALE = 1e5  # BFM micrometres → decimetres
EXP_TOPOLOGY_VERTICES = 53215  # vertices of the BFM_exp_idx (Exp_Pca.bin) topology
# face3d generate.m: three vertices (1-based, 53215 topology) whose 3DMMasSTN UVs are replaced by
# the mean of their neighbours' UVs.
UV_FIX = ((10032, (10033, 10158)), (10155, (10534, 10157, 10661)), (10280, (10916, 10286)))
FRONT_KEYS = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "point_buf", "keypoints",
              "frontmask2_idx", "skinmask")
CACHE_VERSION = 1


def loadmat(path: str | os.PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``scipy.io.loadmat`` restricted to ``keys``, with one-line errors.

    Raises:
        WeightsError: unreadable file or a missing key.
    """
    try:
        data = scipy.io.loadmat(str(path), variable_names=list(keys))
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError/MatReadError on bad files
        raise WeightsError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in keys if k not in data]
    if missing:
        raise WeightsError(f"{path}: missing key(s) {', '.join(missing)}")
    return {k: np.asarray(data[k]) for k in keys}


def read_exp_pca(path: str | os.PathLike, num_vertices: int = EXP_TOPOLOGY_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """Read ``Exp_Pca.bin`` (FORMATS.md §1b, Deep3DFaceRecon ``LoadExpBasis``).

    Layout, little-endian, no header beyond the first value: int32 exp_dim; float32 expMU (3N);
    float32 expPC (3N·exp_dim) stored PC-major, i.e. reshape (exp_dim, 3N) then transpose.

    Returns:
        expMU (3N,) and expPC (3N, exp_dim), rows xyz-interleaved per vertex.

    Raises:
        WeightsError: the size does not match the layout for ``num_vertices``.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 4:
        raise WeightsError(f"{path}: too short for Exp_Pca.bin ({len(raw)} bytes)")
    exp_dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    n3 = 3 * num_vertices
    expected = 4 + 4 * n3 + 4 * n3 * exp_dim
    if exp_dim <= 0 or len(raw) != expected:
        raise WeightsError(f"{path}: {len(raw)} bytes with exp_dim {exp_dim}; expected {expected} for "
                           f"{num_vertices} vertices (truncated or not Exp_Pca.bin?)")
    floats = np.frombuffer(raw, dtype="<f4", offset=4)
    exp_mu = floats[:n3].copy()
    exp_pc = floats[n3:].reshape(exp_dim, n3).T.copy()
    return exp_mu, exp_pc


def read_std_exp(path: str | os.PathLike) -> np.ndarray:
    """``std_exp.txt``: whitespace-separated expression standard deviations (79 for the real file)."""
    try:
        values = np.loadtxt(str(path), dtype=np.float64).reshape(-1)
    except ValueError as exc:
        raise WeightsError(f"{path}: not a list of numbers ({exc})") from exc
    if values.size == 0:
        raise WeightsError(f"{path}: empty")
    return values


def front_uvs(uv: np.ndarray, front_idx: np.ndarray, trim_index: np.ndarray | None) -> np.ndarray:
    """Per-vertex UVs (V, 2) of the front model from a ``BFM_UV.mat`` array (FORMATS.md §1f).

    ``uv`` is either on the expression topology (3DDFA_V2, len(trimIndex) rows, already fixed) and is
    indexed by ``idx − 1``, or on the full BFM09 topology (3DMMasSTN): then it is first taken through
    ``trimIndex − 1``, the three bad vertices of face3d are replaced by their neighbours' mean (only on
    the real 53,215-vertex topology, where those ids exist), and then indexed by ``idx − 1``.

    Args:
        uv: (N, 2) float; front_idx: 1-based (V,) into the expression topology; trim_index: 1-based
            (N_exp,) into BFM09, or None when ``uv`` is on the expression topology.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    idx = np.asarray(front_idx).reshape(-1).astype(np.int64) - 1
    if trim_index is not None and len(uv) != len(np.asarray(trim_index).reshape(-1)):
        trim = np.asarray(trim_index).reshape(-1).astype(np.int64) - 1
        if trim.max() >= len(uv):
            raise WeightsError(f"BFM_UV.mat: {len(uv)} rows, fewer than BFM_exp_idx needs ({trim.max() + 1})")
        uv = uv[trim]
        if len(uv) == EXP_TOPOLOGY_VERTICES:
            for bad, ring in UV_FIX:
                uv[bad - 1] = uv[[r - 1 for r in ring]].mean(axis=0)
    if idx.max() >= len(uv):
        raise WeightsError(f"BFM_UV.mat: {len(uv)} rows, fewer than BFM_front_idx needs ({idx.max() + 1})")
    return uv[idx].astype(np.float32)


def convert_bfm09(
    morphable: str | os.PathLike,
    exp_pca: str | os.PathLike,
    front_idx: str | os.PathLike,
    exp_idx: str | os.PathLike,
    info: str | os.PathLike,
    std_exp: str | os.PathLike,
) -> dict[str, np.ndarray]:
    """Build the BFM_model_front arrays from BFM09 files (Deep3DFaceRecon ``transferBFM09``, §1c).

    idBase = shapePC·shapeEV / 1e5 (first 80 columns), exBase = expPC·std_exp / 1e5 (first 64),
    texBase = texPC·texEV (first 80); rows selected per vertex by ``index_shape =
    (trimIndex − 1)[idx − 1]`` (id, tex, means) and ``index_exp = idx − 1`` (expression).

    Returns:
        dict with the :data:`FRONT_KEYS` in the BFM_model_front.mat layout (1-based indices).
    """
    bfm = loadmat(morphable, ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV"))
    index_exp = loadmat(front_idx, ("idx",))["idx"].reshape(-1).astype(np.int64) - 1
    trim = loadmat(exp_idx, ("trimIndex",))["trimIndex"].reshape(-1).astype(np.int64) - 1
    facemodel = loadmat(info, ("tri", "point_buf", "keypoints", "frontmask2_idx", "skinmask"))
    exp_mu, exp_pc = read_exp_pca(exp_pca, num_vertices=len(trim))
    exp_ev = read_std_exp(std_exp)
    if exp_ev.size != exp_pc.shape[1]:
        raise WeightsError(f"{std_exp}: {exp_ev.size} values for {exp_pc.shape[1]} expression components")
    n_full = bfm["shapeMU"].size // 3
    if index_exp.min() < 0 or index_exp.max() >= len(trim):
        raise WeightsError(f"{front_idx}: indices outside 1..{len(trim)}")
    if trim.min() < 0 or trim.max() >= n_full:
        raise WeightsError(f"{exp_idx}: indices outside 1..{n_full}")
    index_shape = trim[index_exp]

    def rows(per_vertex: np.ndarray) -> np.ndarray:  # xyz-interleaved rows of the given vertices
        return (3 * per_vertex[:, None] + np.arange(3)).reshape(-1)

    shape_rows, exp_rows = rows(index_shape), rows(index_exp)
    shape_ev = bfm["shapeEV"].reshape(-1)
    tex_ev = bfm["texEV"].reshape(-1)
    n_id, n_tex, n_exp = min(N_ID, shape_ev.size), min(N_TEX, tex_ev.size), min(N_EXP, exp_ev.size)
    id_base = bfm["shapePC"][shape_rows, :n_id] * shape_ev[:n_id] / SHAPE_SCALE
    ex_base = exp_pc[exp_rows, :n_exp] * exp_ev[:n_exp] / SHAPE_SCALE
    tex_base = bfm["texPC"][shape_rows, :n_tex] * tex_ev[:n_tex]
    return {
        "meanshape": (bfm["shapeMU"].reshape(-1)[shape_rows] / SHAPE_SCALE).reshape(1, -1).astype(np.float32),
        "idBase": id_base.astype(np.float32),
        "exBase": ex_base.astype(np.float32),
        "meantex": bfm["texMU"].reshape(-1)[shape_rows].reshape(1, -1).astype(np.float32),
        "texBase": tex_base.astype(np.float32),
        **facemodel,
    }


def model_from_front(front: dict[str, np.ndarray], uvs: np.ndarray, name: str, notes: tuple[str, ...] = (),
                     device: Any = None) -> MorphableModel:
    """Interpret BFM_model_front arrays like Deep3DFaceRecon ``ParametricFaceModel`` (§1d).

    Indices −1; point_buf padding (F + 1, 1-based) becomes F; mean shape recentred on its mean vertex
    (``recenter=True``); albedo and its basis divided by 255.

    Raises:
        WeightsError: inconsistent sizes or indices.
    """
    mean = np.asarray(front["meanshape"], dtype=np.float64).reshape(-1, 3)
    v = len(mean)
    tri = np.asarray(front["tri"]).astype(np.int64) - 1
    point_buf = np.asarray(front["point_buf"]).astype(np.int64) - 1
    keypoints = np.asarray(front["keypoints"]).reshape(-1).astype(np.int64) - 1
    front_ids = np.asarray(front["frontmask2_idx"]).reshape(-1).astype(np.int64) - 1
    skin = np.asarray(front["skinmask"]).reshape(-1)
    problems = []
    if tri.min() < 0 or tri.max() >= v:
        problems.append(f"tri outside 1..{v}")
    if point_buf.shape[0] != v or point_buf.min() < 0 or point_buf.max() > len(tri):
        problems.append(f"point_buf not (V, P) within 1..{len(tri) + 1}")
    if keypoints.size != 68 or keypoints.min() < 0 or keypoints.max() >= v:
        problems.append("keypoints not 68 vertex ids")
    if skin.size != v or (front_ids.size and (front_ids.min() < 0 or front_ids.max() >= v)):
        problems.append("skinmask/frontmask2_idx do not match the vertex count")
    if np.asarray(uvs).reshape(-1, 2).shape[0] != v:
        problems.append(f"{np.asarray(uvs).reshape(-1, 2).shape[0]} UVs for {v} vertices")
    for key in ("idBase", "exBase", "meantex", "texBase"):
        if np.asarray(front[key]).reshape(-1).size % (3 * v):
            problems.append(f"{key} size not a multiple of 3·{v}")
    if problems:
        raise WeightsError(f"{name}: inconsistent front model: {'; '.join(problems)}")
    front_mask = np.zeros(v, dtype=bool)
    front_mask[front_ids] = True
    mean = mean - mean.mean(axis=0, keepdims=True)  # recenter=True
    return model_from_arrays(
        name=name,
        mean_shape=mean,
        id_base=np.asarray(front["idBase"]).reshape(v, 3, -1),
        exp_base=np.asarray(front["exBase"]).reshape(v, 3, -1),
        mean_albedo=np.asarray(front["meantex"], dtype=np.float64).reshape(v, 3) / 255.0,
        albedo_base=np.asarray(front["texBase"], dtype=np.float64).reshape(v, 3, -1) / 255.0,
        triangles=tri,
        uvs=uvs,
        landmark_ids=keypoints,
        skin_mask=skin > 0.5,
        front_mask=front_mask,
        point_buf=point_buf,
        notes=notes,
        device=device,
    )


# ---------------------------------------------------------------------- cache

def _signature(paths: list[Path]) -> str:
    return ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in paths) + f";v{CACHE_VERSION}"


def cache_path(source: Path) -> Path:
    """Where the converted arrays of ``source`` are cached: ``<stem>_mvinvert.npz`` next to it."""
    return source.with_name(f"{source.stem}_mvinvert.npz")


def _read_cache(path: Path, signature: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["signature"]) != signature:
                return None
            return {k: data[k] for k in data.files if k != "signature"}
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, signature: str, arrays: dict[str, np.ndarray]) -> str:
    try:
        with atomic_open(path, "wb") as handle:
            np.savez(handle, signature=np.asarray(signature), **arrays)
    except (OutputError, OSError) as exc:
        return f"cache not written ({exc})"
    return f"cached as {path.name}"


# ---------------------------------------------------------------------- entry points

def _uv_for_front(front_idx: Path | None, exp_idx: Path | None, uv_path: Path | None) -> np.ndarray | None:
    if uv_path is None or front_idx is None:
        return None
    uv = loadmat(uv_path, ("UV",))["UV"]
    idx = loadmat(front_idx, ("idx",))["idx"]
    trim = loadmat(exp_idx, ("trimIndex",))["trimIndex"] if exp_idx is not None else None
    return front_uvs(uv, idx, trim)


def load_bfm09_files(
    morphable: Path, exp_pca: Path, front_idx: Path, exp_idx: Path, info: Path, std_exp: Path, uv: Path,
    device: Any = None, use_cache: bool = True,
) -> MorphableModel:
    """BFM 2009 → front model from explicit paths (cached next to ``morphable``)."""
    sources = [morphable, exp_pca, front_idx, exp_idx, info, std_exp, uv]
    signature = _signature(sources)
    cache = cache_path(morphable)
    arrays = _read_cache(cache, signature) if use_cache else None
    notes = [f"BFM 2009 from {morphable.name} + {exp_pca.name}, Deep3DFaceRecon front recipe"]
    if arrays is None:
        arrays = convert_bfm09(morphable, exp_pca, front_idx, exp_idx, info, std_exp)
        arrays["uvs"] = _uv_for_front(front_idx, exp_idx, uv)
        if use_cache:
            notes.append(_write_cache(cache, signature, arrays))
    else:
        notes.append(f"loaded from cache {cache.name}")
    uvs = arrays.pop("uvs")
    return model_from_front(arrays, uvs, "bfm09-front", tuple(notes), device)


def load_front_mat(path: Path, front_idx: Path | None = None, exp_idx: Path | None = None,
                   uv: Path | None = None, device: Any = None, use_cache: bool = True) -> MorphableModel:
    """A ready ``BFM_model_front.mat``; UVs from its ``tcoords`` (MvInvert variant) or BFM_UV.mat.

    Raises:
        WeightsError: unreadable, or no UVs (neither ``tcoords`` nor BFM_UV.mat + BFM_front_idx.mat).
    """
    sources = [p for p in (path, front_idx, exp_idx, uv) if p is not None]
    signature = _signature(sources)
    cache = cache_path(path)
    arrays = _read_cache(cache, signature) if use_cache else None
    notes = [f"ready front model {path.name}"]
    if arrays is None:
        try:
            has_tcoords = any(name == "tcoords" for name, *_ in scipy.io.whosmat(str(path)))
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
        arrays = loadmat(path, FRONT_KEYS + (("tcoords",) if has_tcoords else ()))
        if has_tcoords:
            arrays["uvs"] = arrays.pop("tcoords").reshape(-1, 2).astype(np.float32)
            notes.append("UVs from tcoords")
        else:
            uvs = _uv_for_front(front_idx, exp_idx, uv)
            if uvs is None:
                raise WeightsError(f"{path}: has no tcoords; put BFM_UV.mat and BFM_front_idx.mat in weights/ "
                                   "for its UVs (from cleardusk/3DDFA_V2 configs/ and the Deep3DFaceRecon BFM/ folder)")
            arrays["uvs"] = uvs
            notes.append(f"UVs from {uv.name if uv else ''} via BFM_front_idx")
        if use_cache:
            notes.append(_write_cache(cache, signature, arrays))
    else:
        notes.append(f"loaded from cache {cache.name}")
    uvs = arrays.pop("uvs")
    return model_from_front(arrays, uvs, "bfm-front", tuple(notes), device)


def bfm_available() -> bool:
    """True when :func:`load_bfm` can find a complete set of files."""
    if locate("bfm_front") is not None:
        return True
    return locate("bfm09") is not None and all(locate(k) is not None for k in ASSET_BY_KEY["bfm09"].needs)


def load_bfm(device: Any = None, use_cache: bool = True) -> MorphableModel:
    """The BFM front model from the weights directory: ``BFM_model_front.mat`` if present, else BFM 2009.

    Raises:
        WeightsError: neither source is complete (names the missing files), or a file is bad.
    """
    front = locate("bfm_front")
    if front is not None:
        return load_front_mat(front, locate("bfm_front_idx"), locate("bfm_exp_idx"), locate("bfm_uv"),
                              device=device, use_cache=use_cache)
    morphable = require("bfm09")
    needs = ASSET_BY_KEY["bfm09"].needs
    missing = [ASSET_BY_KEY[k].filenames[0] for k in needs if locate(k) is None]
    if missing:
        raise WeightsError(f"{morphable.name} found but BFM also needs {', '.join(missing)} in weights/")
    paths = {k: locate(k) for k in needs}
    return load_bfm09_files(morphable, paths["exp_pca"], paths["bfm_front_idx"], paths["bfm_exp_idx"],
                            paths["facemodel_info"], paths["std_exp"], paths["bfm_uv"], device=device,
                            use_cache=use_cache)
