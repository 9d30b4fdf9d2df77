"""Silhouette check: IoU of the fitted mesh's coverage and the face region, and the degraded note."""

from __future__ import annotations

from dataclasses import replace

import torch

from mvinvert_cli.morphable.fit import Fitter
from mvinvert_cli.morphable.silhouette import (
    MIN_SILHOUETTE_IOU,
    convex_region,
    mask_iou,
    silhouette_iou,
    silhouette_note,
)
from mvinvert_cli.render.camera import Camera

from .conftest import make_observation
from .test_dense_fit import model, synthetic  # noqa: F401 - the module-scoped model fixture


def test_mask_iou_and_convex_region():
    a = torch.zeros(10, 10, dtype=torch.bool)
    a[2:6, 2:6] = True
    b = torch.zeros_like(a)
    b[4:8, 2:6] = True
    assert mask_iou(a, b) == 8 / 24 and mask_iou(a, a) == 1.0
    assert mask_iou(torch.zeros_like(a), torch.zeros_like(a)) == 0.0
    ring = a.clone()
    ring[3:5, 3:5] = False  # a hole: the convex region fills it
    assert torch.equal(convex_region(ring), a)


def test_fit_reports_silhouette_iou_and_flags_an_off_face_mesh(model):  # noqa: F811
    angles, trans = torch.tensor([0.05, 0.5, 0.0]), torch.tensor([0.0, 0.0, 0.0])
    image, mask, dense, landmarks, _ = synthetic(model, angles, trans)
    result = Fitter(model).fit(make_observation(image, landmarks, face_mask=mask, dense=dense))
    assert result.silhouette_iou is not None and result.silhouette_iou > 0.95
    assert result.summary()["silhouette_iou"] == round(result.silhouette_iou, 4)
    assert not any("silhouette" in n for n in result.notes)
    # the same mesh a quarter of the face width to the side no longer covers the face
    shifted = result.world_vertices.clone()
    shifted[:, 0] += 0.25 * float(shifted[:, 0].max() - shifted[:, 0].min())
    iou = silhouette_iou(Camera(), model.triangles, shifted, torch.from_numpy(mask))
    assert iou < MIN_SILHOUETTE_IOU and "silhouette IoU" in silhouette_note(iou)
    # no face mask: nothing to compare with
    bare = Fitter(model).fit(replace(make_observation(image, landmarks, dense=dense), crop_face_mask=None))
    assert bare.silhouette_iou is None and bare.summary()["silhouette_iou"] is None
