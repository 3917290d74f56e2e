"""Shared fixtures: the real PushT demos from ../shared and small synthetic stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PUSHT_ZIP = Path(
    os.environ.get("DFP_PUSHT_ZIP", REPO.parent / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay_train.zarr.zip")
)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: on shared 2-core machines 2 threads ran ~5x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def pusht_zip() -> Path:
    if not PUSHT_ZIP.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"PushT demos not found at {PUSHT_ZIP} (set DFP_PUSHT_ZIP)")
        pytest.skip(f"PushT demos not found at {PUSHT_ZIP}")
    return PUSHT_ZIP


@pytest.fixture(scope="session")
def pusht_store(pusht_zip, tmp_path_factory) -> Path:
    """The PushT demos converted once per test session into a df_policy v3 store."""
    from df_policy.data.ops import convert

    out = tmp_path_factory.mktemp("pusht") / "pusht.zarr"
    convert(pusht_zip, out, fps=10, progress=False)
    return out


@pytest.fixture
def synth_store(tmp_path) -> Path:
    from df_policy.data.synthetic import make_synthetic_store

    path = tmp_path / "synth.zarr"
    make_synthetic_store(path, n_episodes=6, length=20, image_size=32, seed=1)
    return path


@pytest.fixture
def disk_full(monkeypatch):
    """A switch for a full disk: while ``disk_full["on"]`` is true, every write through Zarr's
    ``LocalStore`` (the episode store's file layer) raises ``OSError(ENOSPC)``."""
    import errno

    import zarr

    state = {"on": False}
    original = zarr.storage.LocalStore.set

    async def set_or_fail(self, key, value):
        if state["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await original(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_or_fail)
    return state


# With DFP_REQUIRE_EXTRAS=1 (scripts/test.sh, which installs every extra) a test that skips for
# a missing dependency (rclpy, MuJoCo's OpenGL, gym-pusht, pyrealsense2, colcon, ...) fails
# instead: a green run then means the ROS 2, simulation and camera tests really ran.
ALLOWED_SKIPS = (
    "lerobot extra not installed (.venv-lerobot)",  # run by scripts/test.sh in .venv-lerobot
    "checks the error shown where the lerobot extra is missing",  # the other venv's half
    "a RealSense device is connected",  # hardware present: the software-device test steps aside
    "ros2launch is not on the package index",  # tests/test_ros2_launch.py: needs a ROS 2 install
)


def _require_extras(report) -> None:
    if not report.skipped or os.environ.get("DFP_REQUIRE_EXTRAS", "") in ("", "0"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr)
    if any(allowed in reason for allowed in ALLOWED_SKIPS) or getattr(report, "wasxfail", None) is not None:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped, but DFP_REQUIRE_EXTRAS=1 says every extra is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _require_extras(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _require_extras(outcome.get_result())


STORE_FIXTURES = {"pusht_zip", "pusht_store", "synth_store"}


def pytest_collection_modifyitems(config, items):
    """Tests that read or write an episode store (zarr 3, Python >= 3.11) are marked ``store``,
    so the Python 3.10 job (scripts/test_py310.sh) can leave exactly those out."""
    for item in items:
        if STORE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.store)
