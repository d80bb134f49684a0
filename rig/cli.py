"""`loopylab arm emulate --physics`: the emulated rig, run until Ctrl-C or SIGTERM.

`firmware_bridge`'s `arm emulate` finds `run_physics` through the `loopylab.emulators` entry point (it may
not import the rig, which sits above it). It prints the ports and files, and the `loopylab launch` line
that runs the hardware graph on them.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console()

DEFAULT_BUS = "ipc://loopylab-rig"  # where the rig's cameras publish when no bus is given


def launch_line(rig, graph: str, camera_bus: str) -> str:
    """The command that runs `graph` against this rig (only the ports and files differ from a real one)."""
    sets = rig.overrides() + [f'camera.source="bus:{c}@{camera_bus}"' for c in rig.cfg.cameras[:1]]
    return f"loopylab launch {graph} " + " ".join(f"--set '{s}'" for s in sets)


def run_physics(
    robot: str = "so101",
    world: int = 0,
    link: str | None = None,
    gripper: str = "robotiq",
    bus: str = "",
    cameras: str = "overhead",
    out: str = "",
    stop: threading.Event | None = None,
    world_secret: str | None = None,
) -> None:
    """Start the rig, print where everything is, serve until `stop` (or Ctrl-C / SIGTERM). `world_secret`:
    "sealed" for the seed's graded world (resolved in this process, the world builder's; sim/secret.py)."""
    from loopylab.bus import Node
    from loopylab.rig.rig import Rig, RigConfig

    names = [c for c in cameras.split(",") if c]
    cfg = RigConfig(
        robot=robot,
        seed=world,
        gripper=gripper,
        cameras=names,
        out_dir=out,
        link_dir=link or "",
        world_secret=world_secret,
    )
    url = bus or DEFAULT_BUS
    node = Node("rig", url) if names else None
    stop = stop or threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if _main_thread() else None
    rig = Rig(cfg, node=node).start()
    try:
        which = "sealed world" if world_secret else "world"
        console.print(f"emulated {robot} rig ({which} {world}), physics behind every port (Ctrl-C to stop):")
        for what, path in rig.ports.items():
            console.print(f"  {what:<12} {path}")
        for what, path in rig.files.items():
            console.print(f"  {what:<12} {path}")
        if names:
            console.print(f"  cameras      {', '.join(names)} on {url}")
        graph = Path("graphs") / f"{robot}.toml"
        console.print("run the hardware graph on it:\n  " + escape(launch_line(rig, str(graph), url)), soft_wrap=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        rig.stop()
        if node is not None:
            node.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
