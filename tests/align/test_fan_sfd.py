"""align.fan_backend.sfd_boxes: the same boxes as face-alignment's own SFDDetector.detect_from_image for
an RGB photo (random SFD weights; a colourful image so a channel flip changes the boxes)."""

from __future__ import annotations

import numpy as np
import torch


def test_sfd_boxes_match_face_alignment_detect_from_image(tmp_path):
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    from mvinvert_cli.align.fan_backend import sfd_boxes

    torch.manual_seed(0)
    net = s3fd().eval()
    path = tmp_path / "s3fd-random.pth"
    torch.save(net.state_dict(), path)
    reference = SFDDetector("cpu", path_to_detector=str(path))
    rng = np.random.default_rng(0)
    rgb8 = np.zeros((128, 160, 3), np.uint8)
    rgb8[..., 0] = np.linspace(0, 255, 160)[None, :]  # red ramp across, blue ramp down, green noise
    rgb8[..., 2] = np.linspace(255, 0, 128)[:, None]
    rgb8[..., 1] = rng.integers(0, 256, (128, 160))

    def as_array(boxes):
        return np.array(sorted(tuple(np.round(np.r_[box, score], 4)) for box, score in boxes))

    ours = as_array(sfd_boxes(net, rgb8, "cpu"))
    theirs = as_array([(b[:4], b[4]) for b in reference.detect_from_image(rgb8.copy())])
    assert len(theirs) > 0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)
    flipped = as_array([(b[:4], b[4]) for b in reference.detect_from_image(rgb8[..., ::-1].copy())])
    assert flipped.shape != theirs.shape or not np.allclose(flipped, theirs, atol=1e-3)  # the test can fail
