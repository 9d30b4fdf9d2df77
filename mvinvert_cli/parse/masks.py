"""Face-region masks: BiSeNet class sets, and the embedded polygon + skin-colour parser.

The polygon parser (embedded default) works from the 478 MediaPipe points, or from the 68 iBUG
landmarks of the FAN aligner: it fills the face oval and the feature polygons (brows, eyes, nose,
lips) from them, fits a Gaussian skin-colour model in
CIE Lab to patches that are almost always bare skin (cheeks, nose, chin), and removes oval pixels
whose colour is unlike skin (beard, a hand, a hair fringe) unless they lie in a feature polygon.
Its face mask matches BiSeNet's face classes {1,2,3,4,5,10,12,13}: no mouth interior, no ears,
no neck, no hair.
"""

from __future__ import annotations

import cv2
import numpy as np

# face-parsing.PyTorch classes (FORMATS.md §4)
BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
FACE_CLASSES = (1, 2, 3, 4, 5, 10, 12, 13)  # MvInvert auxiliary/face_mask.py
HAIR_CLASSES = (17,)
GLASSES_CLASSES = (6,)
HAT_CLASSES = (18,)
OCCLUDER_CLASSES = (0, 14, 15, 16)  # background / neck / necklace / cloth seen inside the face oval

# MediaPipe vertex loops (from FaceLandmarksConnections; tests/parse check every edge).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64)
# centres of skin sample patches: both cheeks (×2 each), nose bridge, nose back (not the chin:
# a beard there would be modelled as skin)
SKIN_SAMPLES = (50, 280, 205, 425, 197, 5)
SKIN_SAMPLE_PAIRS = ((50, 280), (205, 425))  # (subject's right, left) cheek samples
SKIN_MAHALANOBIS = 4.0  # colour distance (in robust std units) above which a pixel is not skin
L_SPREAD = 3.0  # lightness varies with shading far more than chroma: widen its std by this
WORK_SIDE = 256  # the masks are computed with the face region resampled to at most this side (px)


def fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one polygon (N, 2) in pixel-centre coordinates into a bool (H, W) mask."""
    out = np.zeros(shape, dtype=np.uint8)
    shift = 4
    fixed = np.round((np.asarray(points, dtype=np.float64) - 0.5) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(out, [fixed], 1, lineType=cv2.LINE_8, shift=shift)
    return out.astype(bool)


def fill_hull(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Convex hull of (N, 2) points as a bool (H, W) mask."""
    hull = cv2.convexHull(np.ascontiguousarray(points, dtype=np.float32)).reshape(-1, 2)
    return fill_polygon(hull, shape)


def feature_polygons(dense: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Oval, brows, eyes, nose, lips (outer minus inner) and mouth interior from (478, ≥2) points."""
    xy = dense[:, :2]

    def poly(ids: tuple[int, ...]) -> np.ndarray:
        return fill_polygon(xy[list(ids)], shape)

    mouth = poly(LIPS_INNER)
    return {
        # the hull of all points is the oval for frontal faces and stays valid for profiles,
        # where the projected FACE_OVAL loop folds over itself
        "oval": fill_hull(xy[:468], shape),
        "brows": poly(RIGHT_BROW) | poly(LEFT_BROW),
        "eyes": poly(RIGHT_EYE) | poly(LEFT_EYE),
        "nose": fill_hull(xy[list(NOSE)], shape),
        "lips": poly(LIPS_OUTER) & ~mouth,
        "mouth": mouth,
    }


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) RGB in [0, 1] → CIE Lab float32 (L 0–100, a and b around 0).

    Through OpenCV's 8-bit table path (several times faster than its float path, and the colour
    model needs no more than 8-bit precision).
    """
    lab = cv2.cvtColor(cv2.convertScaleAbs(rgb, alpha=255.0), cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def skin_model(lab: np.ndarray, patches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Skin colour model from sample patches: one centre per patch, one shared robust covariance.

    Each patch (bool (H, W) mask) gets its own trimmed-mean Lab colour, so a lit and a shaded cheek
    are both skin; the covariance is that of all kept pixels (within and between patches). Pixels
    beyond 2.5 robust std of their patch's median are dropped first, so a few hair or shadow
    pixels do not widen it.

    Returns:
        centres (P, 3) for patches with ≥ 10 pixels, inverse covariance (3, 3) with the lightness
        variance widened by :data:`L_SPREAD`².

    Raises:
        ValueError: no patch has 10 pixels.
    """
    centres, samples = [], []
    for patch in patches:
        pixels = lab[patch].astype(np.float64)
        if len(pixels) < 10:
            continue
        centre = np.median(pixels, axis=0)
        spread = 1.4826 * np.median(np.abs(pixels - centre), axis=0) + 1.0
        keep = (np.abs(pixels - centre) / spread < 2.5).all(axis=1)
        kept = pixels[keep] if keep.sum() >= 10 else pixels
        centres.append(kept.mean(axis=0))
        samples.append(kept)
    if not centres:
        raise ValueError("too few skin sample pixels")
    kept_all = np.concatenate(samples)
    cov = np.cov(kept_all.T) + np.eye(3) * 1.0 if len(kept_all) > 1 else np.eye(3)  # +1 Lab²: flat patches
    cov[0, :] *= L_SPREAD
    cov[:, 0] *= L_SPREAD
    return np.array(centres), np.linalg.inv(cov)


def skin_distance(lab: np.ndarray, centres: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    """Mahalanobis distance (H, W) of every Lab pixel to the nearest skin centre."""
    flat = lab.reshape(-1, 3).astype(np.float32)
    inv = inv_cov.astype(np.float32)
    best = np.full(len(flat), np.inf, dtype=np.float32)
    for centre in np.atleast_2d(centres).astype(np.float32):
        diff = flat - centre
        np.minimum(best, ((diff @ inv) * diff).sum(axis=1), out=best)
    return np.sqrt(np.maximum(best, 0.0)).reshape(lab.shape[:2])


Layout = tuple[dict[str, np.ndarray], np.ndarray, float, np.ndarray]


def _dense_layout(local: np.ndarray, shape: tuple[int, int]) -> Layout:
    """Regions, skin sample centres (K, 2), eye distance and nose tip from 478 MediaPipe points.

    ``local`` (478, 3) keeps the depth column: on a turned head the cheek samples of the far side
    (deeper than their mirror by more than 15 % of the eye distance) are hidden and dropped.
    """
    parts = feature_polygons(local, shape)
    eye_dist = float(np.linalg.norm(local[33, :2] - local[263, :2]))
    ids = list(SKIN_SAMPLES)
    if local.shape[1] > 2:
        z = local[:, 2]
        for right, left in SKIN_SAMPLE_PAIRS:
            if z[right] - z[left] > 0.15 * eye_dist:
                ids.remove(right)
            elif z[left] - z[right] > 0.15 * eye_dist:
                ids.remove(left)
    return parts, local[ids, :2], eye_dist, local[4, :2]


def _ibug_layout(local: np.ndarray, shape: tuple[int, int]) -> Layout:
    """The same regions from 68 iBUG points: oval = hull with the brows lifted to the forehead,
    brows drawn as thick lines, cheeks sampled between the lower eyelids and the mouth corners."""
    local = np.ascontiguousarray(local[:, :2])
    eye_dist = float(np.linalg.norm(local[36] - local[45]))
    lift = 0.33 * (local[8, 1] - local[17:27, 1].mean())
    forehead = local[17:27] - np.array([0.0, lift], dtype=np.float32)
    brows = np.zeros(shape, dtype=np.uint8)
    thickness = max(1, round(0.08 * eye_dist))
    for line in (local[17:22], local[22:27]):
        cv2.polylines(brows, [np.round(line - 0.5).astype(np.int32)], False, 1, thickness)
    mouth = fill_polygon(local[60:68], shape)
    parts = {
        "oval": fill_hull(np.concatenate([local, forehead]), shape),
        "brows": brows.astype(bool),
        "eyes": fill_polygon(local[36:42], shape) | fill_polygon(local[42:48], shape),
        "nose": fill_hull(local[27:36], shape),
        "lips": fill_polygon(local[48:60], shape) & ~mouth,
        "mouth": mouth,
    }
    samples = np.stack([
        (local[40] + local[48] + local[2]) / 3, (local[47] + local[54] + local[14]) / 3,  # cheeks
        (local[41] + local[31] + local[1]) / 3, (local[46] + local[35] + local[15]) / 3,  # upper cheeks
        local[28], local[29],  # nose bridge
    ])
    return parts, samples, eye_dist, local[30]


def polygon_face_masks(rgb: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
    """The embedded parser: face mask and extra masks from the photo and landmark polygons.

    Args:
        rgb: float32 (H, W, 3) in [0, 1].
        points: (478, ≥2) MediaPipe points or (68, ≥2) iBUG landmarks, in photo pixels.

    Returns:
        bool (H, W) masks: "face" (skin+brows+eyes+nose+lips, BiSeNet face classes), "skin",
        "brows", "eyes", "nose", "lips", "occluder" (non-skin colours inside the oval).
    """
    height, width = rgb.shape[:2]
    xy = points[:, :2].astype(np.float32)
    layout = _dense_layout if len(xy) >= 468 else _ibug_layout
    if layout is _ibug_layout:  # the oval reaches above the brows: include the forehead in the box
        lift = 0.33 * (xy[8, 1] - xy[17:27, 1].mean())
        xy_box = np.concatenate([xy, xy[17:27] - np.array([0.0, lift], dtype=np.float32)])
    else:
        xy_box = xy
    # work inside the oval's bounding box (plus a margin) only
    lo = np.floor(xy_box.min(axis=0)).astype(int) - 2
    hi = np.ceil(xy_box.max(axis=0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], width), min(hi[1], height)
    full = {k: np.zeros((height, width), dtype=bool) for k in
            ("face", "skin", "brows", "eyes", "nose", "lips", "occluder")}
    if x1 - x0 < 2 or y1 - y0 < 2:
        return full
    roi = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    local = points.astype(np.float32).copy()  # (N, 2 or 3); depth in the same pixel scale
    local[:, :2] -= np.array([x0, y0], dtype=np.float32)
    scale = min(1.0, WORK_SIDE / max(x1 - x0, y1 - y0))
    if scale < 1.0:  # big faces: work at WORK_SIDE, upsample the masks at the end
        small = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
        roi = cv2.resize(roi, small, interpolation=cv2.INTER_AREA)
        local *= small[0] / (x1 - x0)
        local[:, 1] *= (small[1] / (y1 - y0)) / (small[0] / (x1 - x0))
    shape = roi.shape[:2]
    parts, centres, eye_dist, nose_tip = layout(local, shape)
    features = parts["brows"] | parts["eyes"] | parts["nose"] | parts["lips"]

    # skin patches: disks of radius ~ 6% of the inter-ocular distance around the sample centres
    radius = max(2, round(0.06 * eye_dist))
    patches = []
    for cx, cy in centres:
        disk = np.zeros(shape, dtype=np.uint8)
        cv2.circle(disk, (int(cx), int(cy)), radius, 1, thickness=-1)
        patches.append(disk.astype(bool) & parts["oval"] & ~features)
    lab = rgb_to_lab(roi)
    skin_like = np.ones(shape, dtype=bool)
    if sum(int(p.sum()) >= 10 for p in patches):
        skin_centres, inv_cov = skin_model(lab, patches)
        skin_like = skin_distance(lab, skin_centres, inv_cov) < SKIN_MAHALANOBIS
        k = max(1, round(0.02 * eye_dist)) * 2 + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        skin_like = cv2.morphologyEx(skin_like.astype(np.uint8), cv2.MORPH_OPEN, kernel)
        skin_like = cv2.morphologyEx(skin_like, cv2.MORPH_CLOSE, kernel).astype(bool)
    skin = parts["oval"] & skin_like & ~features & ~parts["mouth"]
    face = (skin | features) & ~parts["mouth"]
    face = _component_with(face, nose_tip)
    occluder = parts["oval"] & ~skin_like & ~features & ~parts["mouth"]
    named = {"face": face, "skin": skin & face, "brows": parts["brows"], "eyes": parts["eyes"],
             "nose": parts["nose"], "lips": parts["lips"], "occluder": occluder}
    if scale < 1.0:  # back to photo resolution: the face mask smoothly, the others as one bit-packed image
        size = (x1 - x0, y1 - y0)
        named["face"] = cv2.resize(face.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) >= 128
        others = [k for k in named if k != "face"]
        packed = np.zeros(shape, dtype=np.uint8)
        for bit, key in enumerate(others):
            packed |= named[key].astype(np.uint8) << bit
        packed = cv2.resize(packed, size, interpolation=cv2.INTER_NEAREST)
        for bit, key in enumerate(others):
            named[key] = (packed >> bit) & 1 == 1
        named["skin"] &= named["face"]
    for name, mask in named.items():
        full[name][y0:y1, x0:x1] = mask
    return full


def _component_with(mask: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Keep the connected component of ``mask`` containing ``point`` (x, y px); else the largest."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    x = int(np.clip(point[0], 0, mask.shape[1] - 1))
    y = int(np.clip(point[1], 0, mask.shape[0] - 1))
    label = labels[y, x]
    if label == 0:
        label = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return labels == label


def class_masks(labels: np.ndarray, oval: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """BiSeNet label map (H, W) int → bool masks "face", "hair", "glasses", "hat", "occluder".

    ``occluder`` needs the face ``oval`` (bool (H, W)) to know where the face should be; it is
    the oval's pixels labelled background, neck, necklace or cloth.
    """
    out = {
        "face": np.isin(labels, FACE_CLASSES),
        "hair": np.isin(labels, HAIR_CLASSES),
        "glasses": np.isin(labels, GLASSES_CLASSES),
        "hat": np.isin(labels, HAT_CLASSES),
    }
    if oval is not None:
        out["occluder"] = oval & np.isin(labels, OCCLUDER_CLASSES)
    return out
