"""From images to object poses in the base frame: markers + colour blobs -> tracker -> ObjectPoses.

No bus here: `Perception.process(frame)` is called by the perception node, the benchmark and `camera
view` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from loopylab.bus import ObjectPose, ObjectPoses
from loopylab.perception.blobs import BlobTracker, BlobTrackerConfig, ColourObject
from loopylab.perception.camera_config import CameraCalibration
from loopylab.perception.geometry import (
    R_to_rvec,
    T_from_pose,
    make_T,
    pose_from_T,
    rotate_covariance,
    rotation_angle,
    rvec_to_R,
)
from loopylab.perception.markers import MarkerDetector, MarkerDetectorConfig, offset_pose
from loopylab.perception.tracking import ROT_UNKNOWN_VAR, Measurement, Tracker, TrackerConfig, choose_by_normal


@dataclass
class MarkerObject:
    """An object carrying a marker. `offset` places the object's frame in the marker's frame
    (e.g. [0, 0, -0.025] for the centre of a 5 cm cube with the marker on its top face)."""

    label: str
    marker_id: int
    size: float  # black square's side, m
    offset: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    offset_orientation_xyzw: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 1.0])
    expected_normal: list | None = None  # marker z axis in the base frame, when known (resting: up)

    def __post_init__(self):
        self.T_marker_object = T_from_pose(self.offset, self.offset_orientation_xyzw)


@dataclass
class Frame:
    rgb: np.ndarray
    depth: np.ndarray | None
    calibration: CameraCalibration  # K, D and T_base_camera at this frame's time
    stamp_ns: int
    camera: str = "camera"


@dataclass
class Detection:
    """One object seen in one frame (before tracking), for annotation and the benchmark."""

    label: str
    T: np.ndarray
    covariance: np.ndarray
    kind: str  # marker | blob
    orientation_known: bool
    corners: np.ndarray | None = None  # marker corners, px
    ambiguous: bool = False
    resolved_by: str = ""  # "", "reprojection", "track", "expected-normal", "unresolved"


@dataclass
class PerceptionConfig:
    markers: list[MarkerObject] = field(default_factory=list)
    objects: list[ColourObject] = field(default_factory=list)
    detector: MarkerDetectorConfig = field(default_factory=MarkerDetectorConfig)
    blobs: BlobTrackerConfig = field(default_factory=BlobTrackerConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    same_pose_deg: float = 5.0  # IPPE's two solutions closer than this are one pose, not a flip risk
    max_midpoint_half_gap_deg: float = 10.0  # unresolved: report the midpoint if both are this close to it

    @classmethod
    def from_dict(cls, d: dict) -> PerceptionConfig:
        d = dict(d or {})
        return cls(
            markers=[
                MarkerObject(**{k: v for k, v in m.items() if k != "T_marker_object"}) for m in d.get("markers", [])
            ],
            objects=[ColourObject(**o) for o in d.get("objects", [])],
            detector=MarkerDetectorConfig(**d.get("detector", {})),
            blobs=BlobTrackerConfig(**d.get("blobs", {})),
            tracker=TrackerConfig(**d.get("tracker", {})),
        )


class Perception:
    def __init__(self, config: PerceptionConfig | None = None):
        self.config = config or PerceptionConfig()
        self.detector = MarkerDetector(self.config.detector)
        self.blobs = BlobTracker(self.config.objects, self.config.blobs)
        self.tracker = Tracker(self.config.tracker)
        self._marker_by_id = {m.marker_id: m for m in self.config.markers}
        self._ids = {o.label: o.id or i + 1 for i, o in enumerate(self.config.objects)}
        self._ids.update({m.label: 1000 + m.marker_id for m in self.config.markers})

    # -- one frame ---------------------------------------------------------------------
    def detect(self, frame: Frame) -> list[Detection]:
        out = []
        cal = frame.calibration
        if self._marker_by_id:
            gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY) if frame.rgb.ndim == 3 else frame.rgb
            sizes = {m.marker_id: m.size for m in self.config.markers}
            for obs in self.detector.observe(gray, sizes, cal.K, cal.D):
                out.append(self._marker_detection(obs, self._marker_by_id[obs.id], cal))
        if self.config.objects:
            for b in self.blobs.observe(frame.rgb, frame.depth, cal.K, cal.T_base_camera):
                out.append(Detection(b.label, b.T, b.covariance, "blob", b.yaw is not None))
        return out

    def _marker_detection(self, obs, spec: MarkerObject, cal: CameraCalibration) -> Detection:
        Tbc = cal.T_base_camera
        cands = []
        for T_cm, cov in ((obs.T_camera_marker, obs.covariance), (obs.T_camera_marker_alt, obs.covariance_alt)):
            T_co, cov_co = offset_pose(T_cm, cov, spec.T_marker_object)
            cands.append((Tbc @ T_co, rotate_covariance(cov_co, Tbc[:3, :3]), Tbc @ T_cm))
        T, cov, _ = cands[0]
        resolved = "reprojection"
        if obs.ambiguous:
            gap = rotation_angle(cands[0][0][:3, :3], cands[1][0][:3, :3])
            if gap < np.radians(self.config.same_pose_deg):
                cov = cov.copy()  # both fits agree: keep the better one, widen by their difference
                cov[3:, 3:] += np.eye(3) * gap**2
                resolved = "agree"
            else:
                idx = self.tracker.choose(spec.label, [c[0] for c in cands])
                how = "track"
                if idx is None and spec.expected_normal is not None:
                    # the marker frames (not the object frames) are what an expected normal refers to
                    idx = choose_by_normal(
                        [c[2] for c in cands], spec.expected_normal, self.config.tracker.flip_margin_deg
                    )
                    how = "expected-normal"
                if idx is not None:
                    T, cov, _ = cands[idx]
                    resolved = how
                else:
                    T, cov = self._unresolved(obs, spec, Tbc, gap)
                    resolved = "unresolved"
        known = bool(np.trace(cov[3:, 3:]) < ROT_UNKNOWN_VAR)
        return Detection(spec.label, T, cov, "marker", known, obs.corners, obs.ambiguous, resolved)

    def _unresolved(self, obs, spec: MarkerObject, Tbc: np.ndarray, gap: float):
        """Nothing tells which IPPE solution is right. The truth lies near one of them, so the midpoint
        is within gap/2 of it: a usable orientation when the gap is small, 'unknown' otherwise."""
        T0, T1 = obs.T_camera_marker, obs.T_camera_marker_alt
        R_mid = T0[:3, :3] @ rvec_to_R(0.5 * R_to_rvec(T0[:3, :3].T @ T1[:3, :3]))
        T_mid = make_T(R_mid, (T0[:3, 3] + T1[:3, 3]) / 2)
        d = T0[:3, 3] - T1[:3, 3]
        cov = (obs.covariance + obs.covariance_alt) / 2
        cov[:3, :3] += np.outer(d, d) / 4
        half = gap / 2
        rot_var = half**2 if half < np.radians(self.config.max_midpoint_half_gap_deg) else ROT_UNKNOWN_VAR
        cov[3:, 3:] += np.eye(3) * rot_var
        cov[:3, 3:] = cov[3:, :3] = 0
        lever = float(np.linalg.norm(spec.T_marker_object[:3, 3]))
        if rot_var >= ROT_UNKNOWN_VAR:  # the object's centre may be anywhere within the lever arm
            T_co, cov_co = T_mid @ spec.T_marker_object, cov.copy()
            cov_co[:3, :3] += np.eye(3) * lever**2
            cov_co[3:, 3:] = np.eye(3) * ROT_UNKNOWN_VAR
        else:
            T_co, cov_co = offset_pose(T_mid, cov, spec.T_marker_object)
        return Tbc @ T_co, rotate_covariance(cov_co, Tbc[:3, :3])

    def process(self, frame: Frame) -> list[Detection]:
        """Detect, update the tracks, mark unseen tracks lost. Returns this frame's detections."""
        dets = self.detect(frame)
        for det in dets:
            self.tracker.update(
                det.label,
                Measurement(frame.stamp_ns, det.T, det.covariance, f"{det.kind}@{frame.camera}"),
                self._ids.get(det.label, 0),
            )
        self.tracker.tick(frame.stamp_ns)
        return dets

    def objects(self, stamp_ns: int = 0) -> ObjectPoses:
        objs = []
        for tr in self.tracker.tracked():
            pos, quat = pose_from_T(tr.T)
            objs.append(ObjectPose(id=tr.id, label=tr.label, position=pos, orientation=quat, covariance=tr.covariance))
        return ObjectPoses(objects=objs, stamp_ns=stamp_ns, frame_id="base")
