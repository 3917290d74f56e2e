"""A small pure-Python reader of Linux input devices (the evdev ABI, ``/dev/input/eventN``).

No third-party package is needed: the kernel's ``struct input_event`` is read with
:mod:`struct` and the few ioctls used are issued with :func:`fcntl.ioctl`.

Record format
-------------
One event is ``struct input_event { struct timeval time; __u16 type; __u16 code; __s32 value; }``:
two native ``long`` (seconds, microseconds), then ``u16 type``, ``u16 code``, ``s32 value``, in
native byte order: :data:`EVENT_SIZE` = 24 bytes on 64-bit Linux, 16 on 32-bit (this module
packs/unpacks with :data:`EVENT_STRUCT`; 32-bit systems built with a 64-bit ``time_t`` are not
supported). Events arrive in **reports** terminated by ``EV_SYN/SYN_REPORT``; a report
describes one instant of the device.

State kept by :class:`EvdevReader`
----------------------------------
:meth:`EvdevReader.poll` never blocks: it reads everything pending on the non-blocking file
descriptor and applies each **complete report** atomically (events are buffered until their
``SYN_REPORT``; a partial record or report waits for the next poll).

* ``EV_ABS`` (absolute axes): the latest raw value of every axis
  (:meth:`~EvdevReader.abs_value`, :meth:`~EvdevReader.abs_normalized`). An axis whose
  state is unknown (no event and no ``EVIOCGABS`` answer yet, or lost by ``SYN_DROPPED``
  on a non-evdev source) reads as ``None`` / ``0.0`` = at rest.
* ``EV_REL`` (relative axes): the sum and number of values received since the consumer last
  called :meth:`~EvdevReader.take_rel` (several polls may accumulate), plus the last value
  and when (host :func:`time.monotonic`) it arrived.
* ``EV_KEY`` (keys / buttons): which are down (:meth:`~EvdevReader.key_down`) and the number
  of **press edges** (0 -> 1 transitions; autorepeat ``value == 2`` is not an edge) since the
  consumer last called :meth:`~EvdevReader.take_presses`.
* ``SYN_DROPPED`` (the kernel's buffer overflowed): the partial report before it and every
  event up to and including the next ``SYN_REPORT`` are discarded (kernel documentation,
  ``Documentation/input/event-codes.rst``). Then the state is re-queried with ``EVIOCGABS`` /
  ``EVIOCGKEY`` on a real evdev device; on any other source (pipe, FIFO) the absolute axes
  become unknown (= at rest) and every key is released, without press edges, until new
  events arrive. Nothing stale is kept that could produce motion.

Axis ranges come from ``EVIOCGABS`` when the file descriptor is a real evdev device, else from
the ``axis_ranges`` given to the reader (so a pipe carrying recorded or synthetic events works).

Errors (:class:`~data_collection.teleop.base.TeleopError`, each naming the path): device not
found, permission denied (with the ``input`` group / udev hint), device unplugged (``ENODEV``
on read) or stream closed (end of file on a pipe).

Discovery: :func:`parse_proc_devices` reads ``/proc/bus/input/devices`` (the ``I:``, ``N:``,
``H:`` and ``B:`` lines); :func:`find_input_device` picks a device by name substring
(case-insensitive) and required event types, falling back to the ``/dev/input/by-id/*`` links.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import stat
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

from .base import TeleopError

__all__ = [
    "ABS_CODES",
    "EVENT_SIZE",
    "EVENT_STRUCT",
    "EV_ABS",
    "EV_KEY",
    "EV_REL",
    "EV_SYN",
    "EV_TYPES",
    "KEY_CODES",
    "REL_CODES",
    "SYN_DROPPED",
    "SYN_REPORT",
    "EvdevReader",
    "InputDeviceInfo",
    "RelAccum",
    "TeleopConfigError",
    "code_name",
    "describe_open_error",
    "find_input_device",
    "pack_event",
    "parse_code",
    "parse_proc_devices",
]



class TeleopConfigError(TeleopError, ValueError):
    """Invalid teleop settings (unknown key, bad value, mapping that does not fit the robot);
    the message names the setting. Both a :class:`TeleopError` and a :class:`ValueError`."""


# --------------------------------------------------------------------------- ABI constants

EVENT_STRUCT = struct.Struct("@llHHi")
"""``struct input_event``: ``(tv_sec, tv_usec, type, code, value)`` in native layout."""
EVENT_SIZE = EVENT_STRUCT.size

EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC = 0x00, 0x01, 0x02, 0x03, 0x04
EV_TYPES: dict[str, int] = {"EV_SYN": EV_SYN, "EV_KEY": EV_KEY, "EV_REL": EV_REL, "EV_ABS": EV_ABS, "EV_MSC": EV_MSC}
SYN_REPORT, SYN_CONFIG, SYN_MT_REPORT, SYN_DROPPED = 0, 1, 2, 3

ABS_CODES: dict[str, int] = {
    "ABS_X": 0x00, "ABS_Y": 0x01, "ABS_Z": 0x02, "ABS_RX": 0x03, "ABS_RY": 0x04, "ABS_RZ": 0x05,
    "ABS_THROTTLE": 0x06, "ABS_RUDDER": 0x07, "ABS_WHEEL": 0x08, "ABS_GAS": 0x09, "ABS_BRAKE": 0x0A,
    "ABS_HAT0X": 0x10, "ABS_HAT0Y": 0x11, "ABS_HAT1X": 0x12, "ABS_HAT1Y": 0x13,
    "ABS_HAT2X": 0x14, "ABS_HAT2Y": 0x15, "ABS_HAT3X": 0x16, "ABS_HAT3Y": 0x17,
    "ABS_PRESSURE": 0x18, "ABS_DISTANCE": 0x19, "ABS_TILT_X": 0x1A, "ABS_TILT_Y": 0x1B, "ABS_MISC": 0x28,
}
ABS_MAX = 0x3F
REL_CODES: dict[str, int] = {
    "REL_X": 0x00, "REL_Y": 0x01, "REL_Z": 0x02, "REL_RX": 0x03, "REL_RY": 0x04, "REL_RZ": 0x05,
    "REL_HWHEEL": 0x06, "REL_DIAL": 0x07, "REL_WHEEL": 0x08, "REL_MISC": 0x09,
}
KEY_CODES: dict[str, int] = {
    **{f"BTN_{i}": 0x100 + i for i in range(10)},
    "BTN_LEFT": 0x110, "BTN_RIGHT": 0x111, "BTN_MIDDLE": 0x112, "BTN_SIDE": 0x113, "BTN_EXTRA": 0x114,
    "BTN_TRIGGER": 0x120, "BTN_THUMB": 0x121, "BTN_THUMB2": 0x122, "BTN_TOP": 0x123, "BTN_TOP2": 0x124,
    "BTN_PINKIE": 0x125, "BTN_BASE": 0x126, "BTN_BASE2": 0x127, "BTN_BASE3": 0x128, "BTN_BASE4": 0x129,
    "BTN_BASE5": 0x12A, "BTN_BASE6": 0x12B,
    # gamepads (Documentation/input/gamepad.rst): SOUTH = A / cross, EAST = B / circle. NORTH and
    # WEST alias BTN_X / BTN_Y; which physical button sends which depends on the driver.
    "BTN_SOUTH": 0x130, "BTN_A": 0x130, "BTN_EAST": 0x131, "BTN_B": 0x131, "BTN_C": 0x132,
    "BTN_NORTH": 0x133, "BTN_X": 0x133, "BTN_WEST": 0x134, "BTN_Y": 0x134, "BTN_Z": 0x135,
    "BTN_TL": 0x136, "BTN_TR": 0x137, "BTN_TL2": 0x138, "BTN_TR2": 0x139, "BTN_SELECT": 0x13A,
    "BTN_START": 0x13B, "BTN_MODE": 0x13C, "BTN_THUMBL": 0x13D, "BTN_THUMBR": 0x13E,
    "BTN_DPAD_UP": 0x220, "BTN_DPAD_DOWN": 0x221, "BTN_DPAD_LEFT": 0x222, "BTN_DPAD_RIGHT": 0x223,
}
KEY_MAX = 0x2FF
_CODES_BY_TYPE: dict[int, dict[str, int]] = {EV_ABS: ABS_CODES, EV_REL: REL_CODES, EV_KEY: KEY_CODES}
_TYPE_PREFIX = {EV_ABS: "ABS_", EV_REL: "REL_", EV_KEY: "BTN_"}
_NAMES_BY_TYPE: dict[int, dict[int, str]] = {}
for _t, _table in _CODES_BY_TYPE.items():
    _rev: dict[int, str] = {}
    for _n, _c in _table.items():
        _rev.setdefault(_c, _n)  # first spelling wins (BTN_SOUTH before BTN_A)
    _NAMES_BY_TYPE[_t] = _rev


def code_name(ev_type: int, code: int) -> str:
    """Readable name of an event code (``"ABS_RX"``, ``"BTN_SOUTH"``), or ``"EV_ABS:0x2c"``."""
    name = _NAMES_BY_TYPE.get(ev_type, {}).get(code)
    if name is not None:
        return name
    tname = next((k for k, v in EV_TYPES.items() if v == ev_type), f"type{ev_type}")
    return f"{tname}:{code:#x}"


def parse_code(value: object, ev_type: int, what: str = "code") -> int:
    """Event code from a name (``"ABS_X"``, case-insensitive), an int or a ``"0x.."`` string;
    :class:`TeleopError` naming ``what`` if it is not a code of type ``ev_type``."""
    table = _CODES_BY_TYPE[ev_type]
    limit = KEY_MAX if ev_type == EV_KEY else ABS_MAX if ev_type == EV_ABS else 0x0F
    if isinstance(value, bool):
        raise TeleopConfigError(f"{what}: expected an event code name or number, got {value!r}")
    if isinstance(value, int):
        code = value
    elif isinstance(value, str):
        text = value.strip().upper()
        if text in table:
            return table[text]
        try:
            code = int(text, 0)
        except ValueError:
            known = ", ".join(sorted(table))
            raise TeleopConfigError(f"{what}: unknown {_TYPE_PREFIX[ev_type]}* code {value!r}; known names: {known}") from None
    else:
        raise TeleopConfigError(f"{what}: expected an event code name or number, got {type(value).__name__}")
    if not 0 <= code <= limit:
        raise TeleopConfigError(f"{what}: code {code:#x} is out of range for {_TYPE_PREFIX[ev_type]}* (0..{limit:#x})")
    return code


def pack_event(ev_type: int, code: int, value: int, time_s: float = 0.0) -> bytes:
    """One ``struct input_event`` record in the kernel's binary format (tests, replay tools)."""
    sec = int(time_s)
    usec = round((time_s - sec) * 1e6)
    return EVENT_STRUCT.pack(sec, usec, ev_type, code, value)


# --------------------------------------------------------------------------- ioctls

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("E") << 8) | nr


_EVIOCGVERSION = _ioc(_IOC_READ, 0x01, 4)
_EVIOCGRAB = _ioc(_IOC_WRITE, 0x90, 4)
_ABSINFO = struct.Struct("6i")  # value, minimum, maximum, fuzz, flat, resolution


def _eviocgname(length: int) -> int:
    return _ioc(_IOC_READ, 0x06, length)


def _eviocgkey(length: int) -> int:
    return _ioc(_IOC_READ, 0x18, length)


def _eviocgbit(ev_type: int, length: int) -> int:
    return _ioc(_IOC_READ, 0x20 + ev_type, length)


def _eviocgabs(code: int) -> int:
    return _ioc(_IOC_READ, 0x40 + code, _ABSINFO.size)


def _bits(buf: bytes) -> set[int]:
    n = int.from_bytes(buf, "little")
    return {i for i in range(len(buf) * 8) if n >> i & 1}


# --------------------------------------------------------------------------- /proc/bus/input/devices


@dataclass(frozen=True)
class InputDeviceInfo:
    """One device block of ``/proc/bus/input/devices``.

    Attributes:
        name: the ``N: Name=`` string.
        handlers: the ``H: Handlers=`` words (``("event5", "js0")``).
        vendor, product: the ``I:`` USB/Bluetooth ids, lower-case hex strings (``""`` if absent).
        capabilities: ``B:`` bitmask lines by key (``"EV"``, ``"KEY"``, ``"ABS"``, ``"REL"``...), as ints.
    """

    name: str
    handlers: tuple[str, ...]
    vendor: str = ""
    product: str = ""
    capabilities: Mapping[str, int] = field(default_factory=dict)

    @property
    def event_node(self) -> str | None:
        """``"eventN"`` handler, if any."""
        return next((h for h in self.handlers if h.startswith("event") and h[5:].isdigit()), None)

    def event_path(self, dev_dir: str = "/dev/input") -> str | None:
        node = self.event_node
        return None if node is None else os.path.join(dev_dir, node)

    def has_event_type(self, ev_type: int) -> bool:
        return bool(self.capabilities.get("EV", 0) >> ev_type & 1)

    @property
    def is_joystick(self) -> bool:
        """Has a ``jsN`` handler (the kernel's joystick interface claimed it)."""
        return any(h.startswith("js") and h[2:].isdigit() for h in self.handlers)


def _parse_bitmask(text: str) -> int:
    """A ``B:`` mask: hex words (native ``long``) most significant first."""
    width = 2 * struct.calcsize("l")
    words = text.split()
    return int("".join(w.zfill(width) for w in words), 16) if words else 0


def parse_proc_devices(text: str) -> list[InputDeviceInfo]:
    """Devices listed in the text of ``/proc/bus/input/devices`` (blocks separated by blank lines)."""
    devices: list[InputDeviceInfo] = []
    block: dict[str, object] = {}

    def flush() -> None:
        if "name" in block or "handlers" in block:
            devices.append(
                InputDeviceInfo(
                    name=str(block.get("name", "")),
                    handlers=tuple(block.get("handlers", ())),  # type: ignore[arg-type]
                    vendor=str(block.get("vendor", "")),
                    product=str(block.get("product", "")),
                    capabilities=dict(block.get("caps", {})),  # type: ignore[arg-type]
                )
            )
        block.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        kind, _, rest = line.partition(":")
        rest = rest.strip()
        if kind == "N":
            value = rest.partition("=")[2].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            block["name"] = value
        elif kind == "H":
            block["handlers"] = tuple(rest.partition("=")[2].split())
        elif kind == "I":
            for item in rest.split():
                key, _, val = item.partition("=")
                if key in ("Vendor", "Product"):
                    block[key.lower()] = val.lower()
        elif kind == "B":
            key, _, val = rest.partition("=")
            try:
                block.setdefault("caps", {})[key.strip()] = _parse_bitmask(val)  # type: ignore[union-attr]
            except ValueError:
                pass
    flush()
    return devices


def find_input_device(
    names: str | Sequence[str] | None = None,
    require: Iterable[int] = (),
    *,
    joystick: bool = False,
    accept: Callable[[InputDeviceInfo], bool] | None = None,
    proc_text: str | None = None,
    dev_dir: str = "/dev/input",
) -> str:
    """Path of the first input device whose name contains one of ``names`` (case-insensitive;
    ``None`` = any name), supports every event type in ``require`` (``EV_ABS``...), and, with
    ``joystick=True``, has a ``jsN`` handler, and that ``accept`` (if given) accepts. Reads ``/proc/bus/input/devices`` (or
    ``proc_text``); if that is unavailable, matches the ``/dev/input/by-id/*-event-*`` link
    names instead. :class:`TeleopError` listing the devices seen if nothing matches."""
    wanted = [names] if isinstance(names, str) else list(names or [])
    req = tuple(require)
    if proc_text is None:
        try:
            with open("/proc/bus/input/devices", encoding="utf-8", errors="replace") as f:
                proc_text = f.read()
        except OSError:
            proc_text = None
    what = " or ".join(repr(n) for n in wanted) if wanted else "any name"
    seen: list[str] = []
    if proc_text is not None:
        for dev in parse_proc_devices(proc_text):
            seen.append(dev.name)
            if wanted and not any(n.lower() in dev.name.lower() for n in wanted):
                continue
            if dev.event_node is None or (joystick and not dev.is_joystick):
                continue
            if not all(dev.has_event_type(t) for t in req) or (accept is not None and not accept(dev)):
                continue
            return dev.event_path(dev_dir)  # type: ignore[return-value]
    links = [] if proc_text is not None else sorted(glob.glob(os.path.join(dev_dir, "by-id", "*-event-*")))
    for link in links:
        base = os.path.basename(link)
        seen.append(base)
        if joystick and not base.endswith("-event-joystick"):
            continue
        flat = base.lower().replace("_", " ")
        if not wanted or any(n.lower() in flat or n.lower() in base.lower() for n in wanted):
            return link
    listed = "; ".join(seen) if seen else "none (is /proc/bus/input/devices readable? is the device plugged in?)"
    type_names = {v: k for k, v in EV_TYPES.items()}
    extra = f" with event types {[type_names.get(t, t) for t in req]}" if req else ""
    raise TeleopError(f"no input device named {what}{extra}{' (joystick)' if joystick else ''}; devices seen: {listed}")


# --------------------------------------------------------------------------- reader


def describe_open_error(path: str, exc: OSError) -> str:
    """User-facing message for a failure to open ``path``."""
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return f"{path}: input device not found (unplugged? wrong path? see /proc/bus/input/devices)"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{path}: permission denied. Input devices belong to the 'input' group: add your user "
            "(sudo usermod -aG input $USER, then log in again) or install a udev rule such as "
            'SUBSYSTEM=="input", ATTRS{idVendor}=="256f", MODE="0660", TAG+="uaccess" '
            "(see data_collection/teleop/README.md)"
        )
    if exc.errno == errno.ENODEV or exc.errno == errno.ENXIO:
        return f"{path}: no such device (unplugged?): {exc.strerror}"
    return f"{path}: cannot open input device: {exc}"


@dataclass(frozen=True)
class RelAccum:
    """Relative-axis values received since the last :meth:`EvdevReader.take_rel`:
    ``total`` (sum), ``count`` (events), ``last`` (latest value, kept across takes) and
    ``last_time_s`` (host monotonic time it was read, ``None`` if never)."""

    total: int
    count: int
    last: int
    last_time_s: float | None


class EvdevReader:
    """Non-blocking reader of one input device (see the module docstring).

    ``path``: ``/dev/input/eventN``, a ``/dev/input/by-id`` link, or any readable stream of
    ``input_event`` records (FIFO). ``axis_ranges``: ``{ABS code: (min, max)}`` used when the
    file is not a real evdev device. ``grab``: take the device exclusively (``EVIOCGRAB``) so
    the desktop does not also react to it.
    """

    def __init__(
        self,
        path: str,
        axis_ranges: Mapping[int, tuple[int | float, int | float]] | None = None,
        grab: bool = False,
    ) -> None:
        self.path = str(path)
        self.grab = bool(grab)
        self._configured_ranges = {int(k): (float(v[0]), float(v[1])) for k, v in (axis_ranges or {}).items()}
        for code, (lo, hi) in self._configured_ranges.items():
            if not lo < hi:
                raise TeleopConfigError(f"{self.path}: axis range for {code_name(EV_ABS, code)} must have min < max, got {(lo, hi)}")
        self._fd: int | None = None
        self._lost: str | None = None
        self.is_evdev = False
        self.device_name: str | None = None
        self.event_types: set[int] | None = None  # None = unknown (not evdev)
        self._abs_info: dict[int, tuple[float, float]] = {}
        self._buf = b""
        self._report: list[tuple[int, int, int]] = []
        self._dropping = False
        self._abs: dict[int, int] = {}
        self._keys: set[int] = set()
        self._presses: dict[int, int] = {}
        self._rel_total: dict[int, int] = {}
        self._rel_count: dict[int, int] = {}
        self._rel_last: dict[int, tuple[int, float]] = {}
        self.reports = 0
        self.drops = 0
        self.last_report_s: float | None = None

    # -- lifecycle

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Open the device (idempotent); :class:`TeleopError` naming the path on failure."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise TeleopError(describe_open_error(self.path, exc)) from exc
        self._fd = fd
        self._lost = None
        self._buf = b""
        self._report.clear()
        self._dropping = False
        try:
            self.is_evdev = self._probe_evdev()
            if self.is_evdev:
                self._query_capabilities()
                self._query_state()
                if self.grab:
                    fcntl.ioctl(fd, _EVIOCGRAB, 1)
        except OSError as exc:
            self.close()
            raise TeleopError(f"{self.path}: cannot query input device: {exc}") from exc

    def close(self) -> None:
        """Close the device (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        if self._fd is None:
            raise TeleopError(f"{self.path}: device is not open")
        return self._fd

    def _probe_evdev(self) -> bool:
        assert self._fd is not None
        if not stat.S_ISCHR(os.fstat(self._fd).st_mode):
            return False
        buf = bytearray(4)
        try:
            fcntl.ioctl(self._fd, _EVIOCGVERSION, buf)
        except OSError:
            return False
        return True

    def _query_capabilities(self) -> None:
        fd = self._fd
        name = bytearray(256)
        fcntl.ioctl(fd, _eviocgname(len(name)), name)
        self.device_name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
        ev = bytearray(4)
        fcntl.ioctl(fd, _eviocgbit(0, len(ev)), ev)
        self.event_types = _bits(bytes(ev))
        self._abs_info.clear()
        if EV_ABS in self.event_types:
            bits = bytearray((ABS_MAX + 8) // 8)
            fcntl.ioctl(fd, _eviocgbit(EV_ABS, len(bits)), bits)
            for code in sorted(_bits(bytes(bits))):
                info = bytearray(_ABSINFO.size)
                fcntl.ioctl(fd, _eviocgabs(code), info)
                _value, lo, hi, *_ = _ABSINFO.unpack(bytes(info))
                if lo < hi:
                    self._abs_info[code] = (float(lo), float(hi))

    def _query_state(self) -> None:
        """Current axis values and key states from the kernel (real evdev devices only)."""
        fd = self._fd
        self._abs.clear()
        for code in self._abs_info:
            info = bytearray(_ABSINFO.size)
            fcntl.ioctl(fd, _eviocgabs(code), info)
            self._abs[code] = _ABSINFO.unpack(bytes(info))[0]
        keys = bytearray((KEY_MAX + 8) // 8)
        fcntl.ioctl(fd, _eviocgkey(len(keys)), keys)
        self._keys = _bits(bytes(keys))

    # -- reading

    def poll(self) -> int:
        """Read every pending event without blocking; returns the number of complete reports
        applied. :class:`TeleopError` if the device is closed, unplugged or its stream ended."""
        if self._lost is not None:
            raise TeleopError(self._lost)
        if self._fd is None:
            raise TeleopError(f"{self.path}: poll() on a device that is not open")
        applied = 0
        chunk = EVENT_SIZE * 64
        while True:
            try:
                data = os.read(self._fd, chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.EIO, errno.ENXIO):
                    self._lose(f"{self.path}: input device unplugged or gone ({exc.strerror}); no motion is produced")
                else:
                    self._lose(f"{self.path}: read failed: {exc}")
                raise TeleopError(self._lost) from exc
            if not data:
                self._lose(f"{self.path}: end of input stream (device closed or unplugged); no motion is produced")
                raise TeleopError(self._lost)
            applied += self._feed(data)
            if len(data) < chunk:
                break
        return applied

    def _lose(self, message: str) -> None:
        self._lost = message
        self._abs.clear()
        self._keys.clear()
        self._rel_total.clear()
        self._rel_count.clear()
        self._report.clear()

    def _feed(self, data: bytes) -> int:
        buf = self._buf + data
        n = len(buf) // EVENT_SIZE
        self._buf = buf[n * EVENT_SIZE :]
        applied = 0
        for _sec, _usec, ev_type, code, value in EVENT_STRUCT.iter_unpack(buf[: n * EVENT_SIZE]):
            if self._dropping:
                if ev_type == EV_SYN and code == SYN_REPORT:
                    self._dropping = False
                    self._resync()
                continue
            if ev_type == EV_SYN:
                if code == SYN_REPORT:
                    self._commit()
                    applied += 1
                elif code == SYN_DROPPED:
                    self._report.clear()
                    self._dropping = True
                    self.drops += 1
                continue
            self._report.append((ev_type, code, value))
        return applied

    def _commit(self) -> None:
        now = time.monotonic()
        for ev_type, code, value in self._report:
            if ev_type == EV_ABS:
                self._abs[code] = value
            elif ev_type == EV_REL:
                self._rel_total[code] = self._rel_total.get(code, 0) + value
                self._rel_count[code] = self._rel_count.get(code, 0) + 1
                self._rel_last[code] = (value, now)
            elif ev_type == EV_KEY:
                if value == 0:
                    self._keys.discard(code)
                elif code not in self._keys:  # value 1 (press) or 2 (repeat) after a missed press
                    self._keys.add(code)
                    if value == 1:
                        self._presses[code] = self._presses.get(code, 0) + 1
        self._report.clear()
        self.reports += 1
        self.last_report_s = now

    def _resync(self) -> None:
        if self.is_evdev and self._fd is not None:
            try:
                self._query_state()
                return
            except OSError:
                pass
        self._abs.clear()
        self._keys.clear()

    # -- state

    def abs_value(self, code: int) -> int | None:
        """Latest raw value of absolute axis ``code``; ``None`` while unknown."""
        return self._abs.get(code)

    def abs_range(self, code: int) -> tuple[float, float] | None:
        """``(min, max)`` of absolute axis ``code``: from ``EVIOCGABS`` on an evdev device,
        else from ``axis_ranges``; ``None`` if unknown."""
        if self.is_evdev:
            return self._abs_info.get(code)
        return self._configured_ranges.get(code)

    def abs_normalized(self, code: int, unipolar: bool = False) -> float:
        """Axis value scaled to ``[-1, 1]`` (centre of the range = 0) or, with ``unipolar``,
        ``[0, 1]`` (minimum = 0, for triggers). ``0.0`` while the value is unknown."""
        raw = self._abs.get(code)
        rng = self.abs_range(code)
        if raw is None or rng is None:
            return 0.0
        lo, hi = rng
        if unipolar:
            v = (raw - lo) / (hi - lo)
            return min(max(v, 0.0), 1.0)
        v = (raw - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        return min(max(v, -1.0), 1.0)

    def has_abs(self, code: int) -> bool:
        """The device reports axis ``code`` (evdev capability), or a range is configured."""
        return self.abs_range(code) is not None

    def key_down(self, code: int) -> bool:
        return code in self._keys

    def keys_down(self) -> frozenset[int]:
        return frozenset(self._keys)

    def take_presses(self) -> dict[int, int]:
        """Press edges per key since the last call (then cleared)."""
        out, self._presses = self._presses, {}
        return out

    def take_rel(self) -> dict[int, RelAccum]:
        """Relative-axis accumulations since the last call, for every axis ever seen (then cleared)."""
        out = {}
        for code, (last, t) in self._rel_last.items():
            out[code] = RelAccum(self._rel_total.get(code, 0), self._rel_count.get(code, 0), last, t)
        self._rel_total.clear()
        self._rel_count.clear()
        return out
