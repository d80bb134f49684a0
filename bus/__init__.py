"""bus: the ZeroMQ transport of loopylab — message types, wire codec, Node runtime (publishers,
subscriptions, services, timers, heartbeats), the graph directory, the graph launcher and MCAP
record/replay. It knows nothing about robots, models or money.

    from loopylab.bus import Node, JointState
    node = Node("my_node")                      # graph from $LOOPYLAB_BUS, default ipc://default
    pub = node.publisher("arm/joint_state", JointState)
    sub = node.subscribe("arm/joint_command", JointCommand, callback=print)
"""

from loopylab.bus.access import GraphKeys
from loopylab.bus.config import BusConfig
from loopylab.bus.messages import (
    CameraInfo,
    DeviceFault,
    GripperCommand,
    GripperState,
    Heartbeat,
    Image,
    JointCommand,
    JointState,
    Message,
    NotebookEntry,
    ObjectPose,
    ObjectPoses,
    SafetyState,
    Wrench,
    register_message,
)
from loopylab.bus.node import Node
from loopylab.bus.pubsub import Publisher, Subscription
from loopylab.bus.services import AccessDenied, ServiceClient, ServiceError, ServiceTimeout

__all__ = [
    "AccessDenied",
    "BusConfig",
    "CameraInfo",
    "DeviceFault",
    "GraphKeys",
    "GripperCommand",
    "GripperState",
    "Heartbeat",
    "Image",
    "JointCommand",
    "JointState",
    "Message",
    "Node",
    "NotebookEntry",
    "ObjectPose",
    "ObjectPoses",
    "Publisher",
    "SafetyState",
    "ServiceClient",
    "ServiceError",
    "ServiceTimeout",
    "Subscription",
    "Wrench",
    "register_message",
]
