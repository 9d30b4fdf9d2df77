"""Polygon parser: loops follow MediaPipe's connections, rasterisation, skin model, real photo masks."""

from __future__ import annotations

import numpy as np

from mvinvert_cli.parse import masks

LOOPS = {
    "FACE_LANDMARKS_FACE_OVAL": masks.FACE_OVAL,
    "FACE_LANDMARKS_RIGHT_EYE": masks.RIGHT_EYE,
    "FACE_LANDMARKS_LEFT_EYE": masks.LEFT_EYE,
    "FACE_LANDMARKS_LIPS": masks.LIPS_OUTER + masks.LIPS_INNER,
}


def test_loops_follow_mediapipe_connections():
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as C

    for name, ids in LOOPS.items():
        edges = {frozenset((c.start, c.end)) for c in getattr(C, name)}
        loops = [masks.LIPS_OUTER, masks.LIPS_INNER] if name == "FACE_LANDMARKS_LIPS" else [ids]
        for loop in loops:
            for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
                assert frozenset((a, b)) in edges, f"{name}: {a}-{b} is not a MediaPipe edge"
    brows = {frozenset((c.start, c.end)) for n in ("FACE_LANDMARKS_RIGHT_EYEBROW", "FACE_LANDMARKS_LEFT_EYEBROW")
             for c in getattr(C, n)}
    for brow in (masks.RIGHT_BROW, masks.LEFT_BROW):
        upper, lower = brow[:5], brow[5:][::-1]
        for line in (upper, lower):
            for a, b in zip(line, line[1:], strict=False):
                assert frozenset((a, b)) in brows


def test_fill_polygon_area_and_centre_convention():
    square = np.array([[10.0, 20.0], [30.0, 20.0], [30.0, 50.0], [10.0, 50.0]])
    mask = masks.fill_polygon(square, (64, 64))
    assert abs(int(mask.sum()) - 20 * 30) <= 20 + 30 + 1
    ys, xs = np.nonzero(mask)
    assert xs.min() == 10 and ys.min() == 20  # pixel (row 20, col 10) has its centre at (10.5, 20.5)


def test_skin_model_rejects_beard():
    import cv2

    rng = np.random.default_rng(0)
    image = np.empty((100, 100, 3), dtype=np.float32)
    image[:] = (0.85, 0.65, 0.55)
    image[60:] = (0.18, 0.14, 0.12)  # dark beard in the lower part
    image = np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1).astype(np.float32)
    lab = masks.rgb_to_lab(image)
    error = np.abs(lab - cv2.cvtColor(image, cv2.COLOR_RGB2Lab))  # 8-bit path vs float path
    assert error.mean() < 0.5 and error.max() < 4.0
    sample = np.zeros((100, 100), dtype=bool)
    sample[10:30, 10:30] = True
    sample[62:64, 10:12] = True  # a few contaminated sample pixels
    centres, inv_cov = masks.skin_model(lab, [sample, np.zeros_like(sample)])  # empty patch: ignored
    assert centres.shape == (1, 3)
    dist = masks.skin_distance(lab, centres, inv_cov)
    assert (dist[:60] < masks.SKIN_MAHALANOBIS).mean() > 0.99
    assert (dist[60:] > masks.SKIN_MAHALANOBIS).mean() > 0.99


def test_class_masks():
    labels = np.array([[1, 17, 6], [18, 0, 11], [13, 16, 10]])
    oval = np.ones((3, 3), dtype=bool)
    out = masks.class_masks(labels, oval)
    assert out["face"].tolist() == [[True, False, False], [False, False, False], [True, False, True]]
    assert out["hair"].sum() == 1 and out["glasses"].sum() == 1 and out["hat"].sum() == 1
    assert out["occluder"].tolist() == [[False, False, False], [False, True, False], [False, True, False]]


def test_polygon_parser_on_photo(examples_dir):
    from mvinvert_cli.align import Aligner
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.parse import FaceParser

    parser = FaceParser("auto")
    assert parser.backend == "polygon" and parser.notes  # no BiSeNet weights in the test weights dir
    obs = parser.parse(Aligner("mediapipe").align(load_image(examples_dir / "skimage_astronaut.png")))
    face = obs.face_mask
    assert obs.parser == "polygon" and face.shape == (512, 512) and face.dtype == bool
    lm = obs.landmarks
    inside = lambda p: face[int(p[1]), int(p[0])]  # noqa: E731
    assert inside(lm[30]) and inside(lm[51] * 0.5 + lm[33] * 0.5)  # nose tip, upper lip area
    assert not inside(lm[62] * 0.5 + lm[66] * 0.5)  # mouth interior (teeth) excluded
    assert not face[:40].any() and not face[:, :150].any()  # nothing far from the face
    hull = masks.fill_hull(obs.dense[:468, :2], face.shape)
    assert not (face & ~hull).any() and face.sum() > 0.7 * (hull.sum() - obs.masks["occluder"].sum()) * 0.8
    assert {"skin", "brows", "eyes", "nose", "lips", "occluder"} == set(obs.masks)
    assert 0.2 < obs.crop_face_mask.mean() < 0.8


def test_polygon_parser_from_68_landmarks(examples_dir):
    """Without dense points (FAN aligner) the polygon parser works from the 68 landmarks."""
    from dataclasses import replace

    from mvinvert_cli.align import Aligner
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.parse import FaceParser

    obs = Aligner("mediapipe").align(load_image(examples_dir / "skimage_astronaut.png"))
    parser = FaceParser("polygon")
    dense_result = parser.parse(obs)
    ibug_result = parser.parse(replace(obs, dense=None))
    assert any("68 landmarks" in n for n in ibug_result.notes)
    lm = obs.landmarks
    assert ibug_result.face_mask[int(lm[30, 1]), int(lm[30, 0])]
    forehead = (lm[21] + lm[22]) / 2 - np.array([0, 0.15 * (lm[8, 1] - lm[27, 1])])
    assert ibug_result.face_mask[int(forehead[1]), int(forehead[0])]  # the lifted oval covers the forehead
    a, b = dense_result.face_mask, ibug_result.face_mask
    assert (a & b).sum() / (a | b).sum() > 0.6  # both describe the same face region
