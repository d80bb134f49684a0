"""Message types of the bus contract (docs/design.md, "Bus contract").

Field names follow ROS `sensor_msgs` / Foxglove. Every message carries `seq`, `stamp_ns` (nanoseconds,
wall clock or sim clock) and `frame_id`; the publisher fills `seq` and `stamp_ns` when they are left at 0.
Arrays are numpy arrays; on receipt they are read-only views of the received buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

_F64 = np.dtype(np.float64)


def _f64(x: Any) -> np.ndarray:
    if type(x) is np.ndarray and x.dtype is _F64:  # already what it should be: a driver's hot path
        return x
    return np.zeros(0) if x is None else np.asarray(x, dtype=np.float64)


@dataclass(kw_only=True)
class Message:
    seq: int = 0
    stamp_ns: int = 0
    frame_id: str = ""
    # fields that hold a 1-D float64 array, made from any sequence of numbers given (the codec packs such
    # sequences straight to the wire: `codec.encode_fields`, `Publisher.publish_fields`)
    VECTORS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.VECTORS:
            setattr(self, name, _f64(getattr(self, name)))


@dataclass
class JointState(Message):
    name: list[str] = field(default_factory=list)
    position: np.ndarray = field(default_factory=lambda: np.zeros(0))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    effort: np.ndarray = field(default_factory=lambda: np.zeros(0))
    VECTORS: ClassVar[tuple[str, ...]] = ("position", "velocity", "effort")


@dataclass
class JointCommand(Message):
    """Target for named joints: `position` (rad or m) or `velocity` (rad/s); the other is left empty."""

    name: list[str] = field(default_factory=list)
    position: np.ndarray = field(default_factory=lambda: np.zeros(0))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    VECTORS: ClassVar[tuple[str, ...]] = ("position", "velocity")


@dataclass
class GripperState(Message):
    position: float = 0.0  # finger opening, metres
    velocity: float = 0.0  # m/s
    effort: float = 0.0  # grip force, newtons
    object_detected: bool = False
    ready: bool = False  # activated and not faulted
    fault: str = ""  # empty when healthy


@dataclass
class GripperCommand(Message):
    position: float = 0.0  # requested opening, metres
    speed: float = 0.05  # m/s
    force: float = 20.0  # newtons


@dataclass
class Wrench(Message):
    force: np.ndarray = field(default_factory=lambda: np.zeros(3))  # N, in frame_id
    torque: np.ndarray = field(default_factory=lambda: np.zeros(3))  # N·m
    VECTORS: ClassVar[tuple[str, ...]] = ("force", "torque")


@dataclass
class Image(Message):
    """Raw image. `data` is an (H, W[, C]) array; `encoding` as in ROS/Foxglove: rgb8, bgr8, mono8, 32FC1."""

    height: int = 0
    width: int = 0
    encoding: str = "rgb8"
    step: int = 0
    data: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8))

    @classmethod
    def from_array(cls, arr: np.ndarray, encoding: str | None = None, **kw: Any) -> Image:
        arr = np.ascontiguousarray(arr)
        if encoding is None:
            encoding = {
                np.dtype(np.uint8): "rgb8" if arr.ndim == 3 else "mono8",
                np.dtype(np.float32): "32FC1",
                np.dtype(np.uint16): "16UC1",
            }[arr.dtype]
        return cls(height=arr.shape[0], width=arr.shape[1], encoding=encoding, step=arr.strides[0], data=arr, **kw)


@dataclass
class CameraInfo(Message):
    width: int = 0
    height: int = 0
    K: np.ndarray = field(default_factory=lambda: np.eye(3))  # 3x3 intrinsics
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))  # plumb_bob k1 k2 p1 p2 k3
    distortion_model: str = "plumb_bob"
    T_base_camera: np.ndarray = field(default_factory=lambda: np.eye(4))  # camera pose in the robot base frame

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, np.float64).reshape(3, 3)
        self.D = _f64(self.D)
        self.T_base_camera = np.asarray(self.T_base_camera, np.float64).reshape(4, 4)


@dataclass
class ObjectPose:
    id: int = 0
    label: str = ""
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))  # metres, base frame
    orientation: np.ndarray = field(default_factory=lambda: np.array([0, 0, 0, 1.0]))  # xyzw
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))  # x y z rx ry rz

    def __post_init__(self) -> None:
        self.position, self.orientation = _f64(self.position), _f64(self.orientation)
        self.covariance = np.asarray(self.covariance, np.float64).reshape(6, 6)


@dataclass
class ObjectPoses(Message):
    objects: list[ObjectPose] = field(default_factory=list)

    def get(self, label: str) -> ObjectPose | None:
        return next((o for o in self.objects if o.label == label), None)


@dataclass
class SafetyState(Message):
    estop: bool = False  # latched until safety/reset
    reason: str = ""  # why the last intervention happened
    deadman_ok: bool = True
    clamped_count: int = 0
    rejected_count: int = 0
    protective_stop: bool = False  # joint_state heartbeat lost, or a device fault (below) stops the arm
    fault: str = ""  # the active device fault by class, e.g. "arm: no_response(3)"; "" when none


@dataclass
class DeviceFault(Message):
    """`<device>/fault` (latched): a driver's fault by class; `active=False` says it has cleared. The gate
    relays the arm's on `safety/state`."""

    device: str = ""  # arm | gripper | mcu | wrist | <modbus device name>
    active: bool = False  # False: the device is healthy again
    code: str = ""  # no_response | corrupt | protocol_error | motor_error | port_lost | calibration |
    # configuration | estop | watchdog | device_fault
    motor_ids: list[int] = field(default_factory=list)
    message: str = ""
    label: str = ""  # the class with its details: no_response(3), protocol_error(3, 0x03), motor_error(1, 0x20)

    def describe(self) -> str:
        """The class with its details (`label`, else `code` with the motors)."""
        if self.label:
            return self.label
        return f"{self.code}({','.join(map(str, self.motor_ids))})" if self.motor_ids else self.code


@dataclass
class NotebookEntry(Message):
    """One step of an investigation: `kind` is question|scene|hypothesis|experiment|observation|belief|conclusion."""

    investigation: str = ""
    step: int = 0
    kind: str = ""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Heartbeat(Message):
    node: str = ""
    pid: int = 0
    period_s: float = 0.1
    status: str = "ok"


MESSAGE_TYPES: dict[str, type] = {
    c.__name__: c
    for c in (
        JointState,
        JointCommand,
        GripperState,
        GripperCommand,
        Wrench,
        Image,
        CameraInfo,
        ObjectPose,
        ObjectPoses,
        SafetyState,
        DeviceFault,
        NotebookEntry,
        Heartbeat,
    )
}


def register_message(cls: type) -> type:
    """Register an extra message dataclass so that the codec can carry it (usable as a decorator)."""
    MESSAGE_TYPES[cls.__name__] = cls
    return cls


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
