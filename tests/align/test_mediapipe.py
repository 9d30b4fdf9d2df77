"""MediaPipe backend on real photos: every shared face is found, face order, retries, no face."""

from __future__ import annotations

import numpy as np
import pytest

from mvinvert_cli.align.mediapipe_backend import Attempt, _view_matrix
from mvinvert_cli.errors import NoFaceError
from mvinvert_cli.io.images import load_image

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def test_every_shared_photo_has_a_face(mp_aligner, faces_dir):
    photos = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    assert len(photos) >= 10
    for path in photos:
        faces = mp_aligner.detect(load_image(path))
        assert faces, f"no face in {path.name}"
        obs = faces[0]
        assert obs.landmarks.shape == (68, 2) and obs.dense.shape == (478, 3)
        assert obs.crop.shape == (224, 224, 3) and obs.head_pose.shape == (4, 4)
        h, w = obs.photo.rgb.shape[:2]
        assert np.all(obs.landmarks > -0.1 * max(h, w)) and np.all(obs.landmarks < 1.1 * max(h, w))


def test_profile_needs_retry(mp_aligner, faces_dir):
    obs = mp_aligner.align(load_image(faces_dir / "aflw2000_image00181.jpg"))
    assert obs.aligner.startswith("mediapipe (retry:") and obs.notes
    # the big profile face on the right, not a small face at the back
    assert obs.box[2] - obs.box[0] > 80 and (obs.box[0] + obs.box[2]) / 2 > 200


def test_two_faces_and_face_index(mp_aligner, faces_dir):
    photo = load_image(faces_dir / "3ddfav2_trump_hillary.jpg")
    faces = mp_aligner.detect(photo)
    assert len(faces) == 2 and [f.index for f in faces] == [0, 1]
    assert faces[0].box_area >= faces[1].box_area
    second = mp_aligner.align(photo, face_index=1)
    assert np.abs(second.box - faces[0].box).max() > 50
    np.testing.assert_allclose(second.box, faces[1].box)
    with pytest.raises(NoFaceError, match="out of range"):
        mp_aligner.align(photo, face_index=2)


def test_no_face(mp_aligner):
    grey = np.full((240, 320, 3), 0.5, dtype=np.float32)
    assert mp_aligner.detect(grey) == []
    with pytest.raises(NoFaceError, match="no face"):
        mp_aligner.align(grey)


@pytest.mark.parametrize("attempt", [Attempt(pad=0.33, angle=-20), Attempt(scale=0.5), Attempt(pad=0.25, angle=30)])
def test_view_matrix_maps_photo_into_view(attempt):
    m, (w, h) = _view_matrix(attempt, 400, 300)
    corners = np.array([[0, 0], [400, 0], [0, 300], [400, 300], [200, 150]], dtype=np.float64)
    mapped = corners @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped[4], [w / 2, h / 2], atol=1e-9)  # centre stays centred
    theta = np.deg2rad(attempt.angle)  # counter-clockwise on screen (y down)
    np.testing.assert_allclose(m[:, 0], attempt.scale * np.array([np.cos(theta), -np.sin(theta)]), atol=1e-12)
    assert attempt.label != "as is"


def test_low_confidence_pass_needs_agreeing_views(faces_dir):
    """Without the views that succeed at normal confidence, pass 2 still finds the profile."""
    from mvinvert_cli.align.mediapipe_backend import RETRIES, MediaPipeLandmarker

    working = (Attempt(pad=0.33, angle=-20),)
    landmarker = MediaPipeLandmarker(retries=tuple(a for a in RETRIES if a not in working))
    faces = landmarker.detect(load_image(faces_dir / "aflw2000_image00181.jpg").rgb)
    assert len(faces) == 1 and faces[0].confirmed_by == 2 and "low confidence" in faces[0].how
    x1, y1, x2, y2 = faces[0].box
    assert x2 - x1 > 80 and (x1 + x2) / 2 > 200  # the big profile face


def test_cat_is_not_a_face(mp_aligner):
    """A cat photo gives a one-view false positive at low confidence; agreement rejects it."""
    skimage_data = pytest.importorskip("skimage.data")
    assert mp_aligner.detect(skimage_data.chelsea()) == []
