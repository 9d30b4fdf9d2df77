"""Per-photo preparation for training: the inference pipeline's stages up to T_coarse, as arrays.

``mvinvert train`` runs align → parse → fit → sample → coarse once per photo with the same
:class:`~mvinvert_cli.pipeline.Recoverer` that ``recover`` uses (refinement off), and caches the
result (:class:`~mvinvert_cli.train.data.FaceImageFolder`). The record holds exactly what
:class:`~mvinvert_cli.train.path.InversionPath` reads:

=============  ==============  ==========================================================
field          shape           meaning
=============  ==============  ==========================================================
photo          (3, 224, 224)   5-point aligned crop in [0, 1] (``Observation.crop``)
mask           (1, 224, 224)   face-parsing mask of the crop (1 inside)
points5        (5, 2)          [eyeL, eyeR, nose, mouthL, mouthR] in crop pixels
vertices       (V, 3)          fitted model-space shape (Eq. 1, or the default model's)
angles         (3,)            fitted rotation, radians
translation    (3,)            fitted translation
gamma          (27,)           fitted SH lighting
coarse         (V, 3)          T_coarse (§3.1)
t_uv           (V, 3)          photo colours per vertex, sampled at full resolution
photo_scores   (V,)            Eq. 4 scores of the photo (T = 50 px) × face mask
=============  ==============  ==========================================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from ..align.observation import transform_points
from ..io.images import Photo

PREPARE_TEXTURE_SIZE = 256  # UV bake size of the (unused) preparation textures: keep it cheap


def record_from_recovery(recovery) -> dict[str, np.ndarray]:
    """The training record (module table) of a :class:`~mvinvert_cli.records.Recovery`."""
    obs, fit = recovery.observation, recovery.fit

    def arr(t) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    crop_mask = obs.crop_face_mask if obs.crop_face_mask is not None else np.ones(obs.crop.shape[:2], bool)
    return {
        "photo": np.ascontiguousarray(obs.crop.transpose(2, 0, 1), dtype=np.float32),
        "mask": crop_mask[None].astype(np.float32),
        "points5": transform_points(obs.crop_matrix, obs.points5),
        "vertices": arr(fit.vertices),
        "angles": arr(fit.angles),
        "translation": arr(fit.translation),
        "gamma": arr(fit.gamma),
        "coarse": arr(recovery.coarse.t_coarse),
        "t_uv": arr(recovery.samples.t_uv),
        "photo_scores": arr(recovery.samples.photo_scores),
    }


def pipeline_preparation(recoverer) -> tuple[Callable[[Photo], dict[str, np.ndarray]], str]:
    """``(prepare, version)`` for :class:`~mvinvert_cli.train.data.FaceImageFolder` from a Recoverer.

    ``recoverer`` must be built with ``refine=False`` (no inversion during preparation). The
    version string names the model, backends and every setting, so a change re-prepares.
    """

    def prepare(photo: Photo) -> dict[str, np.ndarray]:
        return record_from_recovery(recoverer.recover(photo))

    described = {
        "model": recoverer.model.summary(),
        "aligner": recoverer.aligner.backend,
        "parser": recoverer.parser.backend,
        "settings": recoverer.settings.to_dict(),
    }
    version = hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return prepare, version
