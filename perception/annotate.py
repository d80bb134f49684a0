"""Draw what perception saw: marker outlines and axes, blob centres, labels with their uncertainty."""

from __future__ import annotations

import cv2
import numpy as np

from loopylab.perception.geometry import invert
from loopylab.perception.pipeline import Detection

GREEN, ORANGE, CYAN = (40, 220, 40), (255, 150, 0), (0, 220, 255)


def annotate(
    rgb: np.ndarray,
    detections: list[Detection],
    K: np.ndarray,
    D: np.ndarray,
    T_base_camera: np.ndarray,
    axis_len: float = 0.03,
) -> np.ndarray:
    """An RGB copy with every detection drawn; orange = orientation not trusted (ambiguous marker)."""
    img = rgb.copy()
    T_cb = invert(T_base_camera)
    for d in detections:
        colour = GREEN if d.orientation_known else ORANGE
        if d.corners is not None:
            cv2.polylines(img, [d.corners.round().astype(np.int32)], True, colour, 2)
        T_co = T_cb @ d.T
        if T_co[2, 3] <= 0:
            continue
        rvec = cv2.Rodrigues(T_co[:3, :3])[0]
        if d.orientation_known:
            cv2.drawFrameAxes(img, K, D, rvec, T_co[:3, 3], axis_len, 2)
        uv = cv2.projectPoints(T_co[:3, 3].reshape(1, 3), np.zeros(3), np.zeros(3), K, D)[0].ravel()
        c = tuple(int(v) for v in uv.round())
        cv2.drawMarker(img, c, CYAN if d.kind == "blob" else colour, cv2.MARKER_CROSS, 12, 2)
        sigma_mm = 1000 * np.sqrt(max(np.linalg.eigvalsh(d.covariance[:3, :3]).max(), 0))
        text = f"{d.label} +-{sigma_mm:.1f}mm" + ("" if d.orientation_known else " (flip?)")
        cv2.putText(img, text, (c[0] + 8, c[1] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (c[0] + 8, c[1] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img
