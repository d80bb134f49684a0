"""MCAP recording and replay of bus traffic.

A recording holds one channel per topic, each with its schema:
- `Image` topics are written as `foxglove.RawImage` (message encoding `json`, schema encoding
  `jsonschema`, pixels base64) so the Foxglove app shows them as images;
- every other topic keeps the bus's own encoding: message encoding `msgpack`, one self-contained
  msgpack document per message (the header with its array frames folded in, `codec.inline`), and a
  schema `loopylab.<Type>` (encoding `jsonschema`) describing the fields.

The recorder is its own node: raw subscriptions (no decoding on the I/O thread) hand frames to a
bounded queue that a writer thread drains, so a slow disk never slows a publisher. Messages that do
not fit are dropped and counted (`dropped_queue`), and gaps in a publisher's `seq` reveal what the
transport dropped before us (`dropped_transit`).

    rec = Recorder(node, "run.mcap")            # every topic (new ones discovered), or topics=["arm/*"]
    ...; stats = rec.close()
    for topic, log_time_ns, msg in read_messages("run.mcap"): ...
    replay("run.mcap", rate=2.0)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fnmatch
import json
import logging
import queue
import struct
import threading
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Channel, Schema
from mcap.records import Message as McapMessage
from mcap.writer import CompressionType, Writer

from loopylab.bus import codec
from loopylab.bus.messages import MESSAGE_TYPES, Image
from loopylab.bus.node import Node

log = logging.getLogger("loopylab.record")
RAW_IMAGE = "foxglove.RawImage"
SCHEMA_PREFIX = "loopylab."
DISCOVER_S = 0.5

# Foxglove RawImage encodings -> (numpy dtype, channels)
IMAGE_LAYOUT = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "8UC3": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}

RAW_IMAGE_SCHEMA = {
    "title": RAW_IMAGE,
    "description": "A raw image",
    "type": "object",
    "properties": {
        "timestamp": {
            "type": "object",
            "title": "time",
            "properties": {
                "sec": {"type": "integer", "minimum": 0},
                "nsec": {"type": "integer", "minimum": 0, "maximum": 999999999},
            },
        },
        "frame_id": {"type": "string"},
        "width": {"type": "integer", "minimum": 0},
        "height": {"type": "integer", "minimum": 0},
        "encoding": {"type": "string"},
        "step": {"type": "integer", "minimum": 0},
        "data": {"type": "string", "contentEncoding": "base64"},
    },
}

_ND_SCHEMA = {
    "type": "object",
    "description": "numpy array",
    "properties": {"__nd__": {"type": "array", "description": "[dtype (numpy str), shape, raw bytes]"}},
}


def json_schema(cls: type) -> dict:
    """A JSON-schema description of a message dataclass (what `loopylab.<Type>` schemas hold)."""
    defs: dict[str, dict] = {}

    def of(tp: Any) -> dict:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is np.ndarray:
            return _ND_SCHEMA
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin is list:
            return {"type": "array", "items": of(args[0]) if args else {}}
        if origin is dict:
            return {"type": "object"}
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if tp.__name__ not in defs:
                defs[tp.__name__] = {}
                defs[tp.__name__] = obj(tp)
            return {"$ref": f"#/$defs/{tp.__name__}"}
        return {}

    def obj(c: type) -> dict:
        hints = typing.get_type_hints(c)
        props = {"__m__": {"const": c.__name__}}
        props.update({f.name: of(hints[f.name]) for f in dataclasses.fields(c)})
        return {
            "type": "object",
            "title": c.__name__,
            "description": (c.__doc__ or "").strip().split("\n")[0],
            "properties": props,
        }

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **obj(cls)}
    if defs:
        schema["$defs"] = defs
    return schema


def image_to_raw_image(img: Image) -> dict:
    data = np.ascontiguousarray(img.data)
    return {
        "timestamp": {"sec": img.stamp_ns // 1_000_000_000, "nsec": img.stamp_ns % 1_000_000_000},
        "frame_id": img.frame_id,
        "width": int(img.width),
        "height": int(img.height),
        "encoding": img.encoding,
        "step": int(img.step or (data.strides[0] if data.ndim else 0)),
        "data": base64.b64encode(data.data).decode("ascii"),
    }


def raw_image_to_image(d: dict, seq: int = 0) -> Image:
    dtype, ch = IMAGE_LAYOUT.get(d["encoding"], (np.uint8, 0))
    buf = np.frombuffer(base64.b64decode(d["data"]), dtype=dtype)
    h, w = int(d["height"]), int(d["width"])
    if ch == 0:  # an encoding we do not know the layout of: keep the rows
        data = buf.reshape(h, -1) if h else buf
    else:
        data = buf.reshape((h, w, ch) if ch > 1 else (h, w))
    ts = d.get("timestamp", {})
    return Image(
        seq=seq,
        stamp_ns=int(ts.get("sec", 0)) * 1_000_000_000 + int(ts.get("nsec", 0)),
        frame_id=d.get("frame_id", ""),
        height=h,
        width=w,
        encoding=d["encoding"],
        step=int(d.get("step", 0)),
        data=data,
    )


@dataclasses.dataclass
class TopicStats:
    type: str = ""
    messages: int = 0
    bytes: int = 0
    dropped_transit: int = 0


class Recorder:
    """Records topics of a graph into an MCAP file; see the module docstring."""

    def __init__(
        self,
        node: Node,
        path: str | Path,
        topics: Iterable[str] | None = None,
        queue_size: int = 2000,
        images_as_foxglove: bool = True,
        compression: str = "zstd",
        heartbeats: bool = False,
    ):
        self.node, self.path = node, Path(path)
        self.patterns = list(topics or [])
        self.images_as_foxglove, self.heartbeats = images_as_foxglove, heartbeats
        self.stats: dict[str, TopicStats] = defaultdict(TopicStats)
        self.dropped_queue = 0
        self.written = 0
        self.errors = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._subscribed: set[str] = set()
        self._last_seq: dict[tuple[str, bytes], int] = {}
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._file = open(self.path, "wb")
        self._writer = Writer(
            self._file,
            compression={"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[
                compression
            ],
        )
        self._writer.start(profile="", library="loopylab")
        self._write_thread = threading.Thread(target=self._write_loop, name=f"{node.name}:mcap", daemon=True)
        self._write_thread.start()
        for t in self.patterns:  # exact names now (they connect when a publisher appears)
            if not _is_glob(t):
                self._subscribe(t)
        self._discover_thread = threading.Thread(target=self._discover_loop, name=f"{node.name}:discover", daemon=True)
        self._discover_thread.start()

    # -- topics ------------------------------------------------------------------------------------
    def _wanted(self, topic: str) -> bool:
        if topic.startswith(f"heartbeat/{self.node.name}"):
            return False
        if self.patterns:
            return any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)
        return self.heartbeats or not topic.startswith("heartbeat/")

    def _subscribe(self, topic: str) -> None:
        self._subscribed.add(topic)
        self.node.subscribe(topic, raw=True, callback=self._on_frames, mode="queue", queue_size=self._queue.maxsize)

    def discover(self) -> list[str]:
        """Subscribe to topics that appeared in the graph since the last look; returns the new ones."""
        new = [t for t in self.node.graph()["topics"] if t not in self._subscribed and self._wanted(t)]
        for t in new:
            self._subscribe(t)
            log.info("recording %s", t)
        return new

    def _discover_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.discover()
            except Exception as e:  # the directory may be restarting; try again next round
                log.debug("discovery failed: %s", e)
            self._stop.wait(DISCOVER_S)

    # -- I/O thread: hand over, never block ----------------------------------------------------------
    def _on_frames(self, topic: str, frames: list, recv_ns: int) -> None:
        self._check_seq(topic, frames)
        try:
            self._queue.put_nowait((topic, frames, recv_ns))
        except queue.Full:
            self.dropped_queue += 1

    def _check_seq(self, topic: str, frames: list) -> None:
        """Gaps in a publisher's seq are messages the transport dropped before they reached us."""
        if len(frames) < 2:
            return
        try:
            tree = msgpack.unpackb(frames[1].bytes if hasattr(frames[1], "bytes") else frames[1])
            seq = tree.get("seq", 0) if isinstance(tree, dict) else 0
        except Exception:
            return  # garbage is the writer's problem (counted in errors)
        if not isinstance(seq, int) or seq <= 0:
            return
        key = (topic, bytes(frames[0].bytes if hasattr(frames[0], "bytes") else frames[0]))
        last = self._last_seq.get(key)
        if last is not None and seq > last + 1:
            self.stats[topic].dropped_transit += seq - last - 1
        if last is None or seq > last:
            self._last_seq[key] = seq

    # -- writer thread ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                self._write(*item)
            except Exception as e:  # one bad message must not end the recording
                self.errors += 1
                log.warning("cannot record a message on %s: %s", item[0], e)

    def _schema_id(self, name: str, schema: dict) -> int:
        if name not in self._schemas:
            self._schemas[name] = self._writer.register_schema(name, "jsonschema", json.dumps(schema).encode())
        return self._schemas[name]

    def _channel_id(self, topic: str, type_name: str, encoding: str, schema_id: int) -> int:
        key = (topic, type_name)
        if key not in self._channels:
            self._channels[key] = self._writer.register_channel(
                topic, encoding, schema_id, metadata={"loopylab_type": type_name}
            )
        return self._channels[key]

    def _write(self, topic: str, frames: list, recv_ns: int) -> None:
        raw = [f.bytes if i < 2 else f.buffer for i, f in enumerate(frames)] if hasattr(frames[0], "bytes") else frames
        header, buffers = raw[1], raw[2:]
        tree = msgpack.unpackb(header, raw=False, strict_map_key=False)
        type_name = tree.get("__m__", "") if isinstance(tree, dict) else ""
        seq = tree.get("seq", 0) if isinstance(tree, dict) else 0
        stamp = tree.get("stamp_ns", 0) if isinstance(tree, dict) else 0
        st = self.stats[topic]
        st.type = type_name or "dict"
        if type_name == "Image" and self.images_as_foxglove:
            img = codec.decode(header, buffers)
            data = json.dumps(image_to_raw_image(img)).encode()
            ch = self._channel_id(topic, type_name, "json", self._schema_id(RAW_IMAGE, RAW_IMAGE_SCHEMA))
        else:
            data = codec.inline(header, buffers)
            cls = MESSAGE_TYPES.get(type_name)
            schema = json_schema(cls) if cls else {"type": "object", "title": type_name or "dict"}
            ch = self._channel_id(
                topic, type_name, "msgpack", self._schema_id(SCHEMA_PREFIX + (type_name or "dict"), schema)
            )
        stamp = stamp if isinstance(stamp, int) and stamp > 0 else recv_ns
        self._writer.add_message(
            ch,
            log_time=recv_ns,
            data=data,
            publish_time=stamp,
            sequence=seq if isinstance(seq, int) and 0 <= seq < 2**32 else 0,
        )
        st.messages += 1
        st.bytes += len(data)
        self.written += 1

    # -- end ---------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        return {
            "path": str(self.path),
            "messages": self.written,
            "dropped_queue": self.dropped_queue,
            "dropped_transit": sum(s.dropped_transit for s in self.stats.values()),
            "errors": self.errors,
            "topics": {t: dataclasses.asdict(s) for t, s in sorted(self.stats.items())},
        }

    def close(self) -> dict:
        """Stop recording, write what is queued, finish the file; returns the summary."""
        if self._stop.is_set():
            return self.summary()
        for sub in [s for s in self.node._subs if s.callback == self._on_frames]:
            self.node.unsubscribe(sub)
        self._stop.set()
        self._discover_thread.join(5)
        self._write_thread.join()
        self._writer.finish()
        self._file.close()
        s = self.summary()
        log.info(
            "recorded %d messages on %d topics to %s (dropped: %d in queue, %d in transit)",
            s["messages"],
            len(s["topics"]),
            self.path,
            s["dropped_queue"],
            s["dropped_transit"],
        )
        return s


def record_node(node: Node, path: str, topics: list[str] | None = None, queue_size: int = 2000) -> Recorder:
    """Graph-file entry point: `run = "loopylab.bus.record:record_node"`, params = { path = "run.mcap" }."""
    return Recorder(node, path, topics, queue_size)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


# -- reading ------------------------------------------------------------------------------------------------


def decode_record(schema: Schema | None, channel: Channel, message: McapMessage) -> Any:
    """One MCAP message of a loopylab recording -> the bus message it was."""
    if schema is not None and schema.name == RAW_IMAGE and channel.message_encoding == "json":
        return raw_image_to_image(json.loads(message.data), seq=message.sequence)
    if channel.message_encoding == "msgpack":
        return codec.decode(message.data)
    if channel.message_encoding == "json":
        return json.loads(message.data)
    raise codec.DecodeError(f"{channel.topic}: unsupported message encoding {channel.message_encoding!r}")


class RecordingError(ValueError):
    """A file that is not a readable MCAP recording (corrupt, truncated, or not MCAP at all)."""


@contextlib.contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turn the MCAP reader's errors (and the struct errors of a file cut short) into one RecordingError
    that names the file."""
    try:
        yield
    except (McapError, struct.error, EOFError, UnicodeDecodeError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise RecordingError(f"{path} is not a readable MCAP recording (corrupt or truncated?): {why}") from e


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """Yield (topic, log_time_ns, message) from a recording, in log-time order (RecordingError if it is
    not a readable MCAP file)."""
    with open(path, "rb") as f, _readable(path):
        reader = make_reader(f)
        for schema, channel, message in reader.iter_messages(
            topics=list(topics) if topics else None, log_time_order=True
        ):
            yield channel.topic, message.log_time, decode_record(schema, channel, message)


# -- replay -------------------------------------------------------------------------------------------------


def replay(
    path: str | Path,
    node: Node | None = None,
    rate: float = 1.0,
    topics: Iterable[str] | None = None,
    wait_subscribers: int = 0,
    wait_s: float = 5.0,
    restamp: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Republish a recording with its original timing divided by `rate` (0 or inf: as fast as possible).

    Publishers for every recorded topic are created first; with `wait_subscribers=N` each waits (up
    to `wait_s`) for N subscribers before the first message. Messages keep their stamps (or get new
    ones with `restamp`); `seq` is renumbered by the replaying publisher.
    """
    own = node is None
    node = node or Node("replay")
    try:
        with open(path, "rb") as f, _readable(path):
            summary = make_reader(f).get_summary()
        total = sum(summary.statistics.channel_message_counts.values()) if summary and summary.statistics else 0
        wanted = set(topics) if topics else None
        pubs = {}
        for ch in summary.channels.values() if summary else []:
            if wanted is None or ch.topic in wanted:
                type_name = ch.metadata.get("loopylab_type", "")
                pubs[ch.topic] = node.publisher(ch.topic, MESSAGE_TYPES.get(type_name))
        for pub in pubs.values():
            if wait_subscribers and not pub.wait_for_subscribers(wait_subscribers, wait_s):
                log.warning(
                    "%s: fewer than %d subscribers after %.1f s; replaying anyway", pub.topic, wait_subscribers, wait_s
                )
        sent, start = 0, None  # start: (monotonic time, log time) of the first message
        fast = not rate or rate == float("inf")
        for topic, log_time, msg in read_messages(path, wanted):
            if not node.running:
                break
            if start is None:
                start = (time.monotonic(), log_time)
            if not fast:
                delay = start[0] + (log_time - start[1]) / 1e9 / rate - time.monotonic()
                if delay > 0 and node._stop.wait(delay):
                    break
            if hasattr(msg, "seq"):
                msg.seq = 0
                if restamp:
                    msg.stamp_ns = 0
            pub = pubs.get(topic) or pubs.setdefault(topic, node.publisher(topic, type(msg)))
            pub.publish(msg)
            sent += 1
            if on_progress:
                on_progress(sent, total)
        return {"path": str(path), "messages": sent, "total": total, "topics": sorted(pubs)}
    finally:
        if own:
            node.close()
