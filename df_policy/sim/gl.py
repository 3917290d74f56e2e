"""Choosing MuJoCo's headless OpenGL backend (``MUJOCO_GL``) before ``mujoco`` is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and a backend whose
system library is missing makes that import fail. So:

* :func:`probe_gl_backend` tries a backend in a **child process** (import, create an 8x8
  renderer, render once) and returns ``None`` if it works, else the error text;
* :func:`select_gl_backend` sets ``MUJOCO_GL`` to the first backend that works (``egl`` then
  ``osmesa`` by default) and returns it. If ``mujoco`` is already imported it cannot switch:
  it returns the backend in force.

System packages (Debian): ``egl`` needs ``libegl1`` + ``libegl-mesa0`` (Mesa's llvmpipe
renders on the CPU when there is no GPU); ``osmesa`` needs ``libosmesa6``. Both render the
default 96x96 scene camera in about 4 ms here.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["GL_BACKENDS", "NoGLBackendError", "probe_gl_backend", "select_gl_backend"]

GL_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
_DISABLED = ("disable", "disabled", "off", "false", "0")

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 8, 8)
r.update_scene(d)
img = r.render()
assert img.shape == (8, 8, 3), img.shape
r.close()
print("ok")
"""


class NoGLBackendError(RuntimeError):
    """No headless OpenGL backend works; the message lists each backend's error."""


def probe_gl_backend(backend: str, timeout_s: float = 60.0) -> str | None:
    """``None`` if MuJoCo can render with ``backend`` (tested in a child process), else why not."""
    if backend not in GL_BACKENDS:
        raise ValueError(f"unknown GL backend {backend!r}; expected one of {GL_BACKENDS}")
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return f"probe timed out after {timeout_s:g} s"
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return None
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def select_gl_backend(candidates: tuple[str, ...] = GL_BACKENDS, disable_on_failure: bool = False) -> str:
    """Set ``MUJOCO_GL`` to the first working backend in ``candidates`` and return it.

    An explicit ``MUJOCO_GL`` already in the environment is tried first. If ``mujoco`` is
    already imported, returns the backend it was imported with (no probing). Raises
    :class:`NoGLBackendError` if none works; with ``disable_on_failure`` it first sets
    ``MUJOCO_GL=disable``, so that ``import mujoco`` still works for physics (rendering then
    raises :class:`~df_policy.sim.arm_env.SimRenderError`).
    """
    current = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" in sys.modules:
        if current in _DISABLED:
            raise NoGLBackendError(f"mujoco was imported with MUJOCO_GL={current}: rendering is off in this process")
        return current or "glfw"
    order = ([current] if current in GL_BACKENDS else []) + [b for b in candidates if b != current]
    errors: dict[str, str] = {}
    for backend in order:
        error = probe_gl_backend(backend)
        if error is None:
            os.environ["MUJOCO_GL"] = backend
            return backend
        errors[backend] = error
    if disable_on_failure:
        os.environ["MUJOCO_GL"] = "disable"
    detail = "; ".join(f"{b}: {e}" for b, e in errors.items())
    raise NoGLBackendError(
        f"no headless OpenGL backend works for MuJoCo ({detail}). On Debian/Ubuntu: "
        "apt-get install libegl1 libegl-mesa0 libosmesa6"
    )
