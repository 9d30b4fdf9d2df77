"""The fixed 478 → 68 map: shape, mirror symmetry and anatomical order on MediaPipe's canonical mesh."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest

from mvinvert_cli.align.ibug import (
    IBUG_FROM_MEDIAPIPE,
    IBUG_MIRROR,
    MEDIAPIPE_TO_IBUG,
    five_points,
    ibug_from_dense,
)
from mvinvert_cli.weights import face_landmarker_task


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(wire)
        yield number, value


@pytest.fixture(scope="module")
def canonical() -> np.ndarray:
    """(468, 3) canonical face mesh vertices from the .task file (FORMATS.md §8)."""
    task = face_landmarker_task()
    if task is None:
        pytest.skip("face_landmarker.task not installed")
    with zipfile.ZipFile(task) as archive:
        blob = archive.read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh = next(v for n, v in _fields(blob) if n == 1)
    # vertex_buffer: repeated float, packed (one bytes field) or not (one fixed32 per value)
    buffer = b"".join(v for n, v in _fields(mesh) if n == 3)
    floats = np.array(struct.unpack(f"<{len(buffer) // 4}f", buffer)).reshape(-1, 5)
    return floats[:, :3]


def test_cardinality():
    assert len(IBUG_FROM_MEDIAPIPE) == 68 and MEDIAPIPE_TO_IBUG.shape == (68, 478)
    np.testing.assert_allclose(MEDIAPIPE_TO_IBUG.sum(axis=1), 1.0, rtol=1e-6)
    assert all(0 <= i < 468 for ids in IBUG_FROM_MEDIAPIPE for i in ids)  # no iris points
    assert sorted(IBUG_MIRROR) == list(range(68))
    assert all(IBUG_MIRROR[IBUG_MIRROR[i]] == i for i in range(68))
    dense = np.random.default_rng(0).normal(size=(478, 3)).astype(np.float32)
    assert ibug_from_dense(dense).shape == (68, 3)
    with pytest.raises(ValueError):
        ibug_from_dense(dense[:468])


def test_mirror_symmetric_on_canonical_mesh(canonical):
    points = ibug_from_dense(np.vstack([canonical, np.zeros((10, 3))]))
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    err = np.linalg.norm(mirrored - points[list(IBUG_MIRROR)], axis=1)
    face_width = np.ptp(canonical[:, 0])
    assert err.max() < 0.02 * face_width, f"asymmetric iBUG point {int(err.argmax())}: {err.max():.3f}"


def test_anatomical_order(canonical):
    p = ibug_from_dense(np.vstack([canonical, np.zeros((10, 3))]))
    x, y = p[:, 0], p[:, 1]  # canonical mesh: x to the subject's left (image right), y up
    assert np.all(np.diff(x[0:9]) > 0) and np.all(np.diff(x[8:17]) > 0)  # jaw sweeps right → left
    assert y[8] == y[:17].min()  # chin lowest
    assert np.all(np.diff(x[17:27]) > 0)  # brows
    assert np.all(np.diff(y[27:31]) < 0)  # nose bridge goes down
    assert x[36] < x[39] < x[42] < x[45]  # eye corners
    assert y[37] > y[41] and y[44] > y[46]  # upper lids above lower lids
    assert x[48] < x[51] < x[54] and y[51] > y[62] > y[66] > y[57]  # lips: top to bottom
    assert y[30] > y[33] > y[51]  # nose tip above subnasale above the lip


def test_five_points():
    lm = np.zeros((68, 2), dtype=np.float32)
    lm[36], lm[39], lm[42], lm[45] = (0, 0), (2, 0), (4, 0), (6, 2)
    lm[30], lm[48], lm[54] = (3, 3), (1, 5), (5, 5)
    np.testing.assert_allclose(five_points(lm), [[1, 0], [5, 1], [3, 3], [1, 5], [5, 5]])
