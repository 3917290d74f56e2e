"""Rig files: the robot, cameras, teleop device and recorder settings of ``dfp record --config``.

A rig file is YAML with these top-level keys (every section is a dataclass below; its
docstring lists the keys, their units and defaults; ``data_collection/README.md`` has the
full reference and examples ship in ``data_collection/configs/``)::

    name: my_rig                  # optional, free text
    description: ...              # optional, free text (shown by --list-configs)
    robot:    {type: ros2 | simulated | sim_arm, ...}          # Ros2RobotSpec / SimulatedRobotSpec / SimArmRobotSpec
    cameras:  [{type: realsense | opencv | simulated | sim_arm, name: ..., ...}, ...]   # CameraSpec
    teleop:   {device: keyboard | scripted | gamepad | spacemouse, keyboard: true, settings: {...}}  # TeleopSpec
    recorder: {fps: 10, max_episode_s: 60, task: ..., ...}    # RecorderSpec (RecorderConfig fields)

Contracts
---------
* :func:`load_rig` validates the whole file before anything is opened: unknown keys, wrong
  types, impossible values and inconsistent combinations (e.g. ``scripted`` teleop without a
  ``sim_arm`` robot) raise :class:`RigConfigError`, whose message names the file, the key
  path (``cameras[1].serial``) and the problem; for an unknown key it lists the allowed ones.
  YAML duplicate keys are errors too.
* Types are strict: a number is never accepted where a string is expected (a RealSense serial
  must be quoted: YAML reads ``012345`` as a number and drops the zero), ``true``/``false`` only
  for flags, integers accepted for floats.
* Relative paths in a rig file (``path``, ``playback_file``, ``intrinsics`` files,
  ``recorder.store_path``) are relative to the directory of the rig file.
* :func:`data_collection.rig_build.build` turns a :class:`Rig` into live but **not yet
  connected/started** objects (``Recorder.run`` connects and starts them); it unpacks as
  ``robot, cameras, teleop, recorder_config``. Nothing touches hardware before ``Recorder.run`` except what a teleop
  module's own ``build_teleop`` does.
* ``gamepad`` / ``spacemouse`` are built by ``data_collection.teleop.<device>.build_teleop(
  settings, robot)``, imported only when used; if that module is missing, ``build``
  raises :class:`RigConfigError` saying so.

Modules: :mod:`~data_collection.rig_fields` (typed fields, :class:`RigConfigError`),
:mod:`~data_collection.rig_sections` (robot / camera / teleop / recorder sections), this module
(the whole rig, loading, shipped examples), :mod:`~data_collection.rig_build` (live devices).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_collection.bag_config import DEPTH_KEY_SUFFIX
from data_collection.bag_config import RECORDING_KEYS as RESERVED_STORE_KEYS
from data_collection.rig_fields import RigConfigError, _coerce
from data_collection.rig_sections import (
    _SIM_ARM_PHYSICS_DT_S,
    CAMERA_TYPES,
    ROBOT_TYPES,
    TELEOP_DEVICES,
    CameraSpec,
    RecorderSpec,
    RobotSpec,
    Ros2RobotSpec,
    SimArmRobotSpec,
    SimulatedRobotSpec,
    TeleopSpec,
    _robot_from_dict,
)

__all__ = [
    "CAMERA_TYPES",
    "ROBOT_TYPES",
    "TELEOP_DEVICES",
    "CameraSpec",
    "RecorderSpec",
    "Rig",
    "RigConfigError",
    "Ros2RobotSpec",
    "SimArmRobotSpec",
    "SimulatedRobotSpec",
    "TeleopSpec",
    "example_config_path",
    "example_configs",
    "load_rig",
]

_TOP_KEYS = ("name", "description", "robot", "cameras", "teleop", "recorder")


# --------------------------------------------------------------------------- rig


@dataclass(frozen=True)
class Rig:
    """A validated rig description (see the module docstring); ``source`` is the file it came from."""

    robot: RobotSpec
    cameras: tuple[CameraSpec, ...]
    teleop: TeleopSpec
    recorder: RecorderSpec = field(default_factory=RecorderSpec)
    name: str = ""
    description: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        err = self._check()
        if err is not None:
            raise err if self.source is None else err.in_file(self.source)

    def _check(self) -> RigConfigError | None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        for key, value, kinds in (
            ("robot", self.robot, (Ros2RobotSpec, SimulatedRobotSpec, SimArmRobotSpec)),
            ("teleop", self.teleop, (TeleopSpec,)),
            ("recorder", self.recorder, (RecorderSpec,)),
            *((f"cameras[{i}]", c, (CameraSpec,)) for i, c in enumerate(self.cameras)),
        ):
            if not isinstance(value, kinds):
                return RigConfigError(f"expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}",
                                      key)
        if not self.cameras:
            return RigConfigError("list at least one camera (the store records images)", "cameras")
        names = [c.name for c in self.cameras]
        for i, c in enumerate(self.cameras):
            if names.index(c.name) != i:
                return RigConfigError(f"camera name {c.name!r} is used twice", f"cameras[{i}].name")
            if c.name in RESERVED_STORE_KEYS:
                return RigConfigError(f"{c.name!r} is a reserved store key {RESERVED_STORE_KEYS}", f"cameras[{i}].name")
            if c.depth and c.name + DEPTH_KEY_SUFFIX in names:
                return RigConfigError(
                    f"camera {c.name!r} records depth as the store key {c.name + DEPTH_KEY_SUFFIX!r}, which is "
                    "another camera's name", f"cameras[{i}].depth"
                )
        for attr in ("serial", "device", "path", "playback_file"):
            seen = [getattr(c, attr) for c in self.cameras if getattr(c, attr) is not None]
            for i, c in enumerate(self.cameras):
                v = getattr(c, attr)
                if v is not None and seen.count(v) > 1:
                    return RigConfigError(f"{v!r} is used by two cameras", f"cameras[{i}].{attr}")
        sim_arm = isinstance(self.robot, SimArmRobotSpec)
        if sim_arm:
            hz = self.sim_control_hz
            substeps = 1.0 / (hz * _SIM_ARM_PHYSICS_DT_S)
            if not 0.5 <= hz <= 100.0 or abs(substeps - round(substeps)) > 1e-6:
                return RigConfigError(
                    f"the simulation needs 0.5 <= control_hz <= 100 and a period that is a whole number of "
                    f"{_SIM_ARM_PHYSICS_DT_S * 1000:g} ms physics steps, got {hz:g} Hz (default: recorder.fps)",
                    "robot.control_hz",
                )
        for i, c in enumerate(self.cameras):
            if c.type == "sim_arm" and not sim_arm:
                return RigConfigError("a sim_arm camera needs robot.type: sim_arm", f"cameras[{i}].type")
            if sim_arm and c.type == "sim_arm" and c.fps is not None and c.fps != self.sim_control_hz:
                return RigConfigError(
                    f"a sim_arm camera delivers one frame per control step: fps must be {self.sim_control_hz:g} "
                    "(robot.control_hz, default recorder.fps) or left out", f"cameras[{i}].fps"
                )
        if self.teleop.device == "scripted" and not sim_arm:
            return RigConfigError(
                f"the scripted teleop drives the simulated SO-101 only: it needs robot.type: sim_arm, "
                f"not {self.robot.type}", "teleop.device"
            )
        if self.recorder.wait_for_start and self.teleop.device == "scripted" and not self.teleop.with_keyboard:
            return RigConfigError(
                "the scripted teleop never sends start: set it false, or teleop.keyboard: true to start "
                "episodes with s", "recorder.wait_for_start"
            )
        if not self.recorder.realtime and not (sim_arm and self.robot.mode == "lockstep"):
            return RigConfigError(
                "must be true unless robot.type is sim_arm with mode: lockstep (an unpaced loop would "
                "command the robot as fast as the CPU allows)", "recorder.realtime"
            )
        return None

    @property
    def wait_for_start(self) -> bool:
        """``recorder.wait_for_start`` resolved (``null`` = true, except with the scripted teleop)."""
        if self.recorder.wait_for_start is not None:
            return self.recorder.wait_for_start
        return self.teleop.device != "scripted"

    @property
    def sim_control_hz(self) -> float:
        """The sim arm's control rate (``robot.control_hz``, else ``recorder.fps``)."""
        hz = getattr(self.robot, "control_hz", None)
        return float(hz) if hz is not None else self.recorder.fps

    def with_recorder(self, **changes: Any) -> Rig:
        """A copy with recorder fields replaced (``None`` values are ignored), revalidated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        try:
            recorder = dataclasses.replace(self.recorder, **changes)
        except RigConfigError as e:
            e = e.under("recorder")
            raise e if self.source is None else e.in_file(self.source) from None
        return dataclasses.replace(self, recorder=recorder)

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | os.PathLike | None = None, source: str | None = None) -> Rig:
        """Validate a parsed rig file; relative paths resolve against ``base_dir`` (default: cwd)."""
        try:
            return cls._from_dict(data, Path(base_dir) if base_dir is not None else Path.cwd(), source)
        except RigConfigError as e:
            raise (e if source is None or e.source else e.in_file(source)) from None

    @classmethod
    def _from_dict(cls, data: Any, base: Path, source: str | None) -> Rig:
        if not isinstance(data, Mapping):
            raise RigConfigError(f"a rig file must be a mapping with keys {', '.join(_TOP_KEYS)}, got {data!r}")
        for k in data:
            if k not in _TOP_KEYS:
                raise RigConfigError(f"unknown key; allowed top-level keys: {', '.join(_TOP_KEYS)}", str(k))
        for k in ("robot", "cameras", "teleop"):
            if k not in data:
                raise RigConfigError(f"missing required section {k!r}")
        robot = _robot_from_dict(data["robot"])
        cams_raw = data["cameras"]
        if not isinstance(cams_raw, list):
            raise RigConfigError(f"must be a list of cameras, got {cams_raw!r}", "cameras")
        cameras = []
        for i, raw in enumerate(cams_raw):
            if isinstance(raw, Mapping):
                raw = dict(raw)
                for k in ("path", "playback_file", "intrinsics"):
                    if isinstance(raw.get(k), str):
                        raw[k] = _resolve(raw[k], base)
            cameras.append(CameraSpec.from_dict(raw, f"cameras[{i}]"))
        teleop = TeleopSpec.from_dict(data["teleop"], "teleop")
        rec_raw = data.get("recorder", {})
        if isinstance(rec_raw, Mapping) and isinstance(rec_raw.get("store_path"), str):
            rec_raw = {**rec_raw, "store_path": _resolve(rec_raw["store_path"], base)}
        recorder = RecorderSpec.from_dict(rec_raw if rec_raw is not None else {}, "recorder")
        text = {}
        for k in ("name", "description"):
            v = data.get(k, "")
            text[k] = _coerce("" if v is None else v, str, k)
        return cls(robot, tuple(cameras), teleop, recorder, source=source, **text)

    def describe(self) -> str:
        """A few human-readable lines: what :func:`build` will create."""
        r = self.robot
        lines = [f"rig {self.name or '(unnamed)'}" + (f" from {self.source}" if self.source else "")]
        if isinstance(r, SimArmRobotSpec):
            lines.append(f"  robot: sim_arm ({r.mode}, {self.sim_control_hz:g} Hz, seed {r.seed})")
        else:
            extra = f", {r.state_topic} -> {r.command_topic} ({r.command_type})" if isinstance(r, Ros2RobotSpec) else ""
            lines.append(f"  robot: {r.type} {r.name}: joints {', '.join(r.joint_names)}{extra}")
        for c in self.cameras:
            src = next((f"{k}={getattr(c, k)}" for k in ("serial", "playback_file", "device", "path", "mj_camera")
                        if getattr(c, k) is not None), "")
            size = f"{c.width}x{c.height}" if c.width and c.height else "default size"
            rate = f"{c.fps:g} fps" if c.fps else "default fps"
            depth = f" + depth ({c.name}{DEPTH_KEY_SUFFIX})" if c.depth else ""
            lines.append(f"  camera {c.name}: {' '.join(filter(None, (c.type, src, size)))} @ {rate}{depth}")
        t = self.teleop
        lines.append(f"  teleop: {t.device}" + (" + keyboard" if t.with_keyboard else ""))
        rc = self.recorder
        lines.append(
            f"  recorder: {rc.fps:g} Hz, max {rc.max_episode_s:g} s/episode, "
            f"episodes {rc.episodes if rc.episodes else 'until q'}, task {rc.task!r}, "
            + ("idle between episodes (s starts)" if self.wait_for_start else "episodes start at once")
        )
        lines += [f"  warning: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what was meant."""
        out = []
        fps = self.recorder.fps
        for c in self.cameras:
            if c.fps is not None and c.fps < fps:
                out.append(
                    f"camera {c.name} runs at {c.fps:g} fps < recorder.fps {fps:g}: steps without a new frame "
                    "are dropped (not recorded)"
                )
            if c.fps is not None and self.recorder.max_skew_s < 0.5 / c.fps and c.type != "sim_arm":
                out.append(
                    f"recorder.max_skew_s {self.recorder.max_skew_s:g} s is below half a frame period of camera "
                    f"{c.name} ({1 / c.fps:.3f} s): many steps may be dropped"
                )
        return out


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else base / p)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_rig(path: str | os.PathLike) -> Rig:
    """Read and validate a rig file (see the module docstring). Raises :class:`RigConfigError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RigConfigError(f"cannot read the rig file: {e.strerror or e}", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RigConfigError(f"not valid YAML: {e}", source=str(path)) from None
    return Rig.from_dict(data, base_dir=path.resolve().parent, source=str(path))


# --------------------------------------------------------------------------- examples


def example_configs() -> dict[str, Path]:
    """The example rig files shipped in ``data_collection/configs``, by name (file stem)."""
    folder = Path(__file__).resolve().with_name("configs")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def example_config_path(name: str) -> Path:
    """Path of the shipped example ``name`` (with or without ``.yaml``); :class:`RigConfigError` if unknown."""
    examples = example_configs()
    stem = name.removesuffix(".yaml")
    if stem not in examples:
        raise RigConfigError(f"no example rig {name!r}; examples: {', '.join(examples) or 'none'}")
    return examples[stem]


