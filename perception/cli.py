"""`loopylab camera ...`: calibrate intrinsics and hand-eye, print a board, view what perception detects."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

console = Console()
err = Console(stderr=True)

camera = typer.Typer(
    help="Cameras: calibrate intrinsics (ChArUco) and hand-eye, print a board, view detections.", no_args_is_help=True
)

SOURCE_HELP = (
    "Camera: device index (0), /dev/videoN, a video file, a folder of images, or bus:NAME "
    "(camera/NAME/* of a running graph, e.g. the sim's bus:overhead; $LOOPYLAB_BUS)."
)


def _board_opts():
    return dict(
        squares_x=typer.Option(7, "--squares-x", help="Board squares along x."),
        squares_y=typer.Option(5, "--squares-y", help="Board squares along y."),
        square=typer.Option(0.04, "--square", help="Square side as printed, metres (measure it!)."),
        marker=typer.Option(0.03, "--marker", help="Marker side as printed, metres."),
        dictionary=typer.Option("DICT_5X5_100", "--dictionary", help="ArUco dictionary of the board."),
    )


def _fail(msg: str, code: int = 1):
    err.print(f"[red]error:[/red] {escape(msg)}")  # escaped: a message may hold [brackets] (TOML tables)
    raise typer.Exit(code)


def _open(source: str, width: int, height: int, fps: float | None = None):
    from loopylab.perception.sources import CameraError, open_source

    try:
        return open_source(source, width, height, fps).open()
    except CameraError as e:
        _fail(str(e))


@camera.command("list")
def list_devices():
    """List the video devices of this machine."""
    from loopylab.perception.sources import list_video_devices

    devs = list_video_devices()
    if not devs:
        console.print("no video devices found (/dev/video*)")
    for d in devs:
        console.print(d)


@camera.command()
def board(
    out: Path = typer.Argument(Path("charuco.png"), help="PNG to write."),
    dpi: int = typer.Option(300, "--dpi", help="Printer resolution; print at 100 % scale."),
    squares_x: int = _board_opts()["squares_x"],
    squares_y: int = _board_opts()["squares_y"],
    square: float = _board_opts()["square"],
    marker: float = _board_opts()["marker"],
    dictionary: str = _board_opts()["dictionary"],
):
    """Write a printable ChArUco board (then measure the printed square and pass it as --square)."""
    import cv2

    from loopylab.perception.calibration import BoardSpec

    spec = BoardSpec(squares_x, squares_y, square, marker, dictionary)
    img = spec.image(px_per_m=dpi / 0.0254, margin_px=int(dpi * 0.4))
    if not cv2.imwrite(str(out), img):  # OpenCV says nothing itself
        _fail(f"could not write {out} (does its folder exist, and does the name end in .png?)", 2)
    console.print(f"wrote {out} ({img.shape[1]}x{img.shape[0]} px at {dpi} dpi, squares {square * 1000:.1f} mm)")


@camera.command()
def calibrate(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration TOML to write (next to your graph)."),
    name: str = typer.Option("camera", "--name", help="Camera name (topics camera/<name>/*)."),
    count: int = typer.Option(20, "--count", "-n", help="Live devices: views to capture."),
    interval: float = typer.Option(
        1.0, "--interval", help="Live devices: seconds between captures (move the board meanwhile)."
    ),
    min_views: int = typer.Option(10, "--min-views", help="Refuse a result from fewer usable views."),
    max_rms: float = typer.Option(1.5, "--max-rms", help="Refuse a result above this reprojection error (px)."),
    width: int = typer.Option(640, "--width"),
    height: int = typer.Option(480, "--height"),
    squares_x: int = _board_opts()["squares_x"],
    squares_y: int = _board_opts()["squares_y"],
    square: float = _board_opts()["square"],
    marker: float = _board_opts()["marker"],
    dictionary: str = _board_opts()["dictionary"],
):
    """Intrinsics (K, distortion) from views of a ChArUco board: a folder of captures or a live camera.

    Reports the reprojection error and refuses the result when too few views show the board.
    """
    from loopylab.perception.calibration import BoardDetector, BoardSpec, CalibrationError, calibrate_intrinsics
    from loopylab.perception.camera_config import (
        CalibrationFileError,
        CameraCalibration,
        load_calibration,
        save_calibration,
    )
    from loopylab.perception.sources import DeviceSource

    spec = BoardSpec(squares_x, squares_y, square, marker, dictionary)
    src = _open(source, width, height)
    images = []
    live = isinstance(src, DeviceSource)
    det = BoardDetector(spec)
    with Progress(console=err) as progress:
        if live:
            task = progress.add_task("capturing board views", total=count)
            last = 0.0
            while len(images) < count:
                f = src.read()
                if time.monotonic() - last >= interval and det.detect(f.rgb, 8) is not None:
                    images.append(f.rgb)
                    last = time.monotonic()
                    progress.advance(task)
        else:
            task = progress.add_task("reading captures", total=None)
            for f in src:
                images.append(f.rgb)
                progress.advance(task)
    src.close()
    try:
        res = calibrate_intrinsics(images, spec, min_views, max_rms_px=max_rms)
    except CalibrationError as e:
        _fail(str(e))
    cal = CameraCalibration(
        name, res.image_size[0], res.image_size[1], res.K, res.D, reprojection_error_px=res.rms_px, views=res.views
    )
    if out.exists():  # keep the extrinsics of an existing file
        try:
            old = load_calibration(out)
            cal.mount, cal.T_base_camera, cal.T_flange_camera = old.mount, old.T_base_camera, old.T_flange_camera
        except CalibrationFileError:
            pass
    save_calibration(cal, out)
    t = Table(title=f"intrinsics of {name!r}")
    for k in ("fx", "fy", "cx", "cy"):
        t.add_column(k)
    t.add_column("distortion k1 k2 p1 p2 k3")
    t.add_row(
        *(f"{v:.2f}" for v in (res.K[0, 0], res.K[1, 1], res.K[0, 2], res.K[1, 2])), " ".join(f"{v:.4f}" for v in res.D)
    )
    console.print(t)
    console.print(
        f"reprojection error {res.rms_px:.3f} px over {res.views} views "
        f"({res.rejected} images without the board); wrote {out}"
    )


def _poses_file(path: Path, urdf: str | None, ee_link: str | None, robot: str | None):
    """[[pose]] tables: image + (position, orientation_xyzw) of the flange in the base, or joints (with FK)."""
    from loopylab.perception.geometry import T_from_pose

    try:
        entries = tomllib.loads(path.read_text()).get("pose", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        _fail(f"cannot read poses file {path}: {e}")
    if not entries:
        _fail(
            f"{path}: no [[pose]] tables (each: image = '...', position = [..], orientation_xyzw = [..] "
            f"or joints = [..])"
        )
    kin = None
    out = []
    for i, e in enumerate(entries):
        if "joints" in e:
            kin = kin or _kinematics(urdf, ee_link, robot)
            pos, quat = kin.fk(np.asarray(e["joints"], float))
            out.append((e.get("image"), T_from_pose(pos, quat)))
        elif "position" in e:
            out.append((e.get("image"), T_from_pose(e["position"], e.get("orientation_xyzw", [0, 0, 0, 1]))))
        else:
            _fail(f"{path}: pose #{i} has neither position nor joints")
    return out


def _kinematics(urdf, ee_link, robot, joint_names=None):
    from loopylab.world.kinematics import Kinematics

    if robot:
        from loopylab.world.robots import robot_spec

        spec = robot_spec(robot)
        urdf, ee_link, joint_names = urdf or spec.urdf, ee_link or spec.ee_link, joint_names or list(spec.arm_joints)
    if not (urdf and ee_link):
        _fail("joint positions need a kinematic model: pass --robot NAME or --urdf FILE --ee-link LINK")
    try:
        return Kinematics(urdf, ee_link, joint_names)
    except ValueError as e:
        _fail(str(e))


@camera.command()
def handeye(
    intrinsics: Path = typer.Option(..., "--intrinsics", "-i", help="Calibration TOML with K and D."),
    mode: str = typer.Option(
        "eye-in-hand",
        "--mode",
        help="eye-in-hand (camera on the flange) or eye-to-hand (fixed camera, board on the flange).",
    ),
    images: Path | None = typer.Option(None, "--images", help="Folder of board captures ..."),
    poses: Path | None = typer.Option(
        None,
        "--poses",
        help="... and a TOML of [[pose]] tables: image, position + orientation_xyzw (flange in base) or joints.",
    ),
    source: str | None = typer.Option(None, "--source", help="Live: " + SOURCE_HELP),
    bus: str | None = typer.Option(None, "--bus", help="Live: bus URL to read arm/joint_state from."),
    count: int = typer.Option(15, "--count", "-n", help="Live: pose pairs to capture."),
    robot: str | None = typer.Option(None, "--robot", help="Kinematics of a known robot (panda, ...)."),
    urdf: str | None = typer.Option(None, "--urdf", help="Or a URDF ..."),
    ee_link: str | None = typer.Option(None, "--ee-link", help="... and its flange/tool link."),
    method: str = typer.Option("park", "--method", help="tsai | park | horaud | andreff | daniilidis."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write (default: the intrinsics file)."),
    squares_x: int = _board_opts()["squares_x"],
    squares_y: int = _board_opts()["squares_y"],
    square: float = _board_opts()["square"],
    marker: float = _board_opts()["marker"],
    dictionary: str = _board_opts()["dictionary"],
):
    """Camera-to-robot transform with cv2.calibrateHandEye, from board views and flange poses.

    Flange poses come from a file (--images + --poses) or live from the bus (arm/joint_state + forward
    kinematics; press Enter at each pose, --source + --bus + --robot).
    """
    import cv2

    from loopylab.perception.calibration import BoardDetector, BoardSpec, CalibrationError, calibrate_handeye
    from loopylab.perception.camera_config import CalibrationFileError, load_calibration, save_calibration

    try:
        cal = load_calibration(intrinsics)
    except CalibrationFileError as e:
        _fail(str(e))
    det = BoardDetector(BoardSpec(squares_x, squares_y, square, marker, dictionary))
    T_bf, T_ct = [], []
    if images is not None and poses is not None:
        for name, T in _poses_file(poses, urdf, ee_link, robot):
            img = cv2.imread(str(images / name), cv2.IMREAD_GRAYSCALE) if name else None
            if img is None:
                _fail(f"cannot read image {images / str(name)}")
            res = det.pose(img, cal.K, cal.D)
            if res is None:
                err.print(f"[yellow]skipped[/yellow] {name}: board not found")
                continue
            T_bf.append(T)
            T_ct.append(res[0])
    elif source is not None:
        T_bf, T_ct = _live_pairs(source, bus, count, det, cal, urdf, ee_link, robot)
    else:
        _fail("give --images and --poses, or --source (and --bus) for live capture")
    try:
        res = calibrate_handeye(T_bf, T_ct, mode, method)
    except CalibrationError as e:
        _fail(str(e))
    if res.mode == "eye_in_hand":
        cal.mount, cal.T_flange_camera = "wrist", res.T
    else:
        cal.mount, cal.T_base_camera = "world", res.T
    path = save_calibration(cal, out or intrinsics)
    from loopylab.perception.geometry import pose_from_T

    pos, quat = pose_from_T(res.T)
    what = "camera in the flange frame" if res.mode == "eye_in_hand" else "camera in the base frame"
    console.print(f"{what}: position {np.round(pos, 4).tolist()} m, orientation_xyzw {np.round(quat, 4).tolist()}")
    console.print(
        f"{res.poses} pose pairs; consistency {res.spread_mm:.2f} mm / {res.spread_deg:.3f} deg "
        f"(spread of the board's fixed pose); wrote {path}"
    )


def _live_pairs(source, bus, count, det, cal, urdf, ee_link, robot):
    from loopylab.bus import JointState, Node
    from loopylab.perception.geometry import T_from_pose
    from loopylab.world.joints import JointMismatch, reorder

    src = _open(source, cal.width, cal.height)
    node = Node(f"handeye-{int(time.time()) % 100000}", bus) if bus else Node(f"handeye-{int(time.time()) % 100000}")
    sub = node.subscribe("arm/joint_state", JointState, mode="latest")
    try:
        js = sub.wait_for(timeout=5.0)
    except TimeoutError:
        node.close()
        _fail("no arm/joint_state on the bus within 5 s: is the arm driver running (and --bus right)?")
    kin = _kinematics(urdf, ee_link, robot, list(js.name))
    T_bf, T_ct = [], []
    try:
        while len(T_bf) < count:
            input(f"[{len(T_bf) + 1}/{count}] move the robot (rotate about different axes), then press Enter ")
            js, f = sub.latest(), src.read()
            try:
                q = reorder(js.position, js.name, kin.joint_names)
            except JointMismatch as e:
                _fail(f"arm/joint_state does not fit the kinematic model: {e}")
            res = det.pose(f.rgb, cal.K, cal.D)
            if res is None:
                err.print("[yellow]board not found in this frame; try again[/yellow]")
                continue
            pos, quat = kin.fk(q)
            T_bf.append(T_from_pose(pos, quat))
            T_ct.append(res[0])
            console.print(f"captured: board reprojection {res[1]:.2f} px")
    finally:
        src.close()
        node.close()
    return T_bf, T_ct


def _parse_markers(specs: list[str]) -> list[dict]:
    out = []
    for s in specs:
        parts = s.split(":")
        if len(parts) not in (2, 3):
            _fail(f"--marker {s!r}: expected ID:SIZE[:LABEL], e.g. 7:0.04:tag_block")
        out.append(
            {
                "marker_id": int(parts[0]),
                "size": float(parts[1]),
                "label": parts[2] if len(parts) == 3 else f"marker_{parts[0]}",
            }
        )
    return out


def _parse_objects(specs: list[str]) -> list[dict]:
    out = []
    for s in specs:
        parts = s.split(":")
        if len(parts) not in (3, 4):
            _fail(f"--object {s!r}: expected LABEL:SHAPE:SIZE[:COLOUR], e.g. red_block:cube:0.05")
        d = {"label": parts[0], "shape": parts[1], "size": float(parts[2])}
        if len(parts) == 4:
            d["colour"] = parts[3]
        out.append(d)
    return out


@camera.command()
def view(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    calibration: Path | None = typer.Option(
        None, "--calibration", "-c", help="Calibration TOML (default: an ideal 60 deg camera, base = camera frame)."
    ),
    out: Path = typer.Option(Path("camera_view"), "--out", "-o", help="Folder for the annotated frames."),
    markers: list[str] = typer.Option([], "--marker", help="ID:SIZE[:LABEL] (repeatable)."),
    objects: list[str] = typer.Option([], "--object", help="LABEL:SHAPE:SIZE[:COLOUR] (repeatable)."),
    dictionary: str = typer.Option("DICT_4X4_50", "--dictionary", help="Marker dictionary."),
    frames: int = typer.Option(10, "--frames", "-n", help="Frames to process."),
    width: int = typer.Option(640, "--width"),
    height: int = typer.Option(480, "--height"),
):
    """Annotated frames and a table of what perception detects: check a setup before running the lab.

    Frames show marker outlines and axes, blob centres and labels with their uncertainty; orange marks
    an orientation that is not trusted (a possible pose flip).
    """
    import cv2

    from loopylab.perception.annotate import annotate
    from loopylab.perception.camera_config import CalibrationFileError, CameraCalibration, load_calibration
    from loopylab.perception.geometry import pose_from_T
    from loopylab.perception.pipeline import Frame, Perception, PerceptionConfig
    from loopylab.perception.synthetic import pinhole_K

    if not markers and not objects:
        _fail("nothing to look for: give --marker ID:SIZE[:LABEL] and/or --object LABEL:SHAPE:SIZE[:COLOUR]")
    try:
        cfg = PerceptionConfig.from_dict(
            {
                "markers": _parse_markers(markers),
                "objects": _parse_objects(objects),
                "detector": {"dictionary": dictionary},
            }
        )
        cal = load_calibration(calibration) if calibration else None
    except (ValueError, CalibrationFileError) as e:
        _fail(str(e))
    per = Perception(cfg)
    src = _open(source, width, height)
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title="detections")
    for c in ("frame", "label", "kind", "position (base, m)", "sigma mm", "orientation"):
        table.add_column(c, no_wrap=c in ("label", "position (base, m)"))
    n = 0
    for f in src:
        if n >= frames:
            break
        h, w = f.rgb.shape[:2]
        c = cal.scaled(w, h) if cal and (cal.width, cal.height) != (w, h) else cal
        c = c or f.calibration or CameraCalibration(width=w, height=h, K=pinhole_K(w, h, 60.0))
        dets = per.process(Frame(f.rgb, f.depth, c, f.stamp_ns, "view"))
        img = annotate(f.rgb, dets, c.K, c.D, c.T_base_camera)
        path = out / f"frame_{n:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        for d in dets:
            pos, _ = pose_from_T(d.T)
            sigma = 1000 * np.sqrt(np.linalg.eigvalsh(d.covariance[:3, :3]).max())
            table.add_row(
                str(n),
                d.label,
                d.kind,
                " ".join(f"{v:.4f}" for v in pos),
                f"{sigma:.1f}",
                "ok" if d.orientation_known else f"unknown ({d.resolved_by})",
            )
        n += 1
    src.close()
    console.print(table)
    console.print(f"wrote {n} annotated frames to {out}/")


def register(app: typer.Typer) -> None:
    app.add_typer(camera, name="camera")
