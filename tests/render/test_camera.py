"""Deep3DFaceRecon camera and pose: R = Rz·Ry·Rx, v·Rᵀ + t, projection in our screen convention."""

from __future__ import annotations

import math

import torch

from mvinvert_cli.render.camera import (
    Camera,
    deep3d_pixels_to_screen,
    facing,
    rotation_matrix,
    rotation_to_angles,
    transform,
)


def test_rotation_is_rz_ry_rx():
    a, b, c = 0.3, -0.4, 0.5
    rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    torch.testing.assert_close(rotation_matrix(torch.tensor([a, b, c])), rz @ ry @ rx)


def test_rotation_feature_yaw_and_pitch_directions():
    nose = torch.tensor([0.0, 0.0, 1.0])
    # Positive yaw turns the nose (+z) toward +x; negative pitch lifts it (+y): seen from below.
    torch.testing.assert_close(
        rotation_matrix(torch.tensor([0.0, math.pi / 2, 0.0])) @ nose,
        torch.tensor([1.0, 0.0, 0.0]),
        atol=1e-6,
        rtol=0,
    )
    lifted = rotation_matrix(torch.tensor([-math.radians(15), 0.0, 0.0])) @ nose
    assert lifted[1] > 0.25


def test_rotation_round_trip():
    angles = (torch.rand(50, 3, dtype=torch.float64) - 0.5) * torch.tensor(
        [6.0, 3.0, 6.0], dtype=torch.float64
    )
    rot = rotation_matrix(angles)
    torch.testing.assert_close(
        rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    )
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(rotation_to_angles(rot), angles)


def test_transform_row_vectors():
    v = torch.rand(2, 5, 3)
    angles, t = torch.rand(2, 3), torch.rand(2, 3)
    expect = torch.einsum("bij,bvj->bvi", rotation_matrix(angles), v) + t[:, None]
    torch.testing.assert_close(transform(v, angles, t), expect)


def test_projection_values():
    cam = Camera()
    screen = cam.project(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]]))
    torch.testing.assert_close(screen[0], torch.tensor([112.0, 112.0, 10.0]))  # principal point = centre
    torch.testing.assert_close(screen[1], torch.tensor([112.0 + 101.5, 112.0 - 101.5, 10.0]))  # y down
    assert screen[2, 2] == 5.0
    assert abs(cam.fov_degrees - 12.5936) < 1e-3


def test_projection_round_trip_and_resize():
    cam = Camera()
    world = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(cam.unproject(cam.project(world)), world)
    big = cam.resized(512)
    assert big.center == 256.0 and big.size == 512
    torch.testing.assert_close(big.project(world)[:, :2], cam.project(world)[:, :2] * (512 / 224))


def test_deep3d_pixel_convention():
    # Deep3DFaceRecon's integer-centred, v-up landmark of the top-left pixel centre.
    torch.testing.assert_close(
        deep3d_pixels_to_screen(torch.tensor([[0.0, 223.0], [223.0, 0.0]])),
        torch.tensor([[0.5, 0.5], [223.5, 223.5]]),
    )


def test_view_direction_points_to_camera():
    cam = Camera()
    d = cam.view_direction(torch.tensor([[0.0, 0.0, 1.0], [3.0, 0.0, 10.0]]))
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]))


def test_facing_is_cosine_to_the_camera_clamped():
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 9.0], [float("nan"), 0.0, 0.0]])
    normals = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(facing(normals, points), torch.tensor([1.0, 0.0, 2**-0.5, 0.0]))
    torch.testing.assert_close(facing(normals, points, two_sided=True), torch.tensor([1.0, 1.0, 2**-0.5, 0.0]))
    # the camera centre is at (0, 0, distance): a point beside it on z = 0 sees it at 45° when x = distance
    side = facing(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[4.0, 0.0, 0.0]]), distance=4.0)
    torch.testing.assert_close(side, torch.tensor([2**-0.5]))
