"""Diagnostic picture of an Observation: face mask tint, box, 68 landmarks and 5 points on the photo."""

from __future__ import annotations

import cv2
import numpy as np

from .observation import Observation

MASK_TINT = np.array([0.0, 1.0, 0.0], dtype=np.float32)  # face: green
OCCLUDER_TINT = np.array([1.0, 0.0, 0.0], dtype=np.float32)  # occluder: red
HAIR_TINT = np.array([0.0, 0.3, 1.0], dtype=np.float32)  # hair: blue


def draw_overlay(observation: Observation, alpha: float = 0.35) -> np.ndarray:
    """uint8 (H, W, 3): the photo with masks tinted, the box, landmarks (yellow) and 5 points (red)."""
    rgb = observation.photo.rgb.copy()
    for mask, tint in ((observation.face_mask, MASK_TINT), (observation.masks.get("occluder"), OCCLUDER_TINT),
                       (observation.masks.get("hair"), HAIR_TINT)):
        if mask is not None:
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    image = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    size = max(image.shape[:2])
    radius = max(1, round(size / 400))
    x1, y1, x2, y2 = (round(float(v)) for v in observation.box)
    cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 255), max(1, radius // 2), cv2.LINE_AA)
    for x, y in observation.landmarks:
        cv2.circle(image, (int(x), int(y)), radius, (255, 230, 0), -1, cv2.LINE_AA)
    for x, y in observation.points5:
        cv2.circle(image, (int(x), int(y)), radius + 1, (255, 0, 0), -1, cv2.LINE_AA)
    return image
