"""Keep ROS 2 / DDS traffic on 127.0.0.1 (tests, benchmarks, ``dfp demo --ros``).

Call :func:`apply_loopback_ros_env` (or use :func:`loopback_ros_environment`) **before**
``rclpy.init()``: it points Fast DDS at the loopback-only profile ``fastdds_localhost.xml`` next
to this file (UDPv4 on 127.0.0.1 only, builtin transports off, unicast discovery), limits
automatic discovery to localhost, and picks a ``ROS_DOMAIN_ID`` unique to this process (or
``$DFP_TEST_ROS_DOMAIN_ID``) so parallel runs on one machine do not see each other.
Subprocesses get the same settings through :func:`loopback_ros_env`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

FASTDDS_PROFILE = Path(__file__).resolve().with_name("fastdds_localhost.xml")
DOMAIN_ENV_OVERRIDE = "DFP_TEST_ROS_DOMAIN_ID"
_ROS_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY")


def pick_domain_id(pid: int | None = None) -> int:
    """A DDS domain in 1..100 for this run: ``$DFP_TEST_ROS_DOMAIN_ID`` if set, else from the pid."""
    override = os.environ.get(DOMAIN_ENV_OVERRIDE)
    if override:
        value = int(override)
        if not 1 <= value <= 100:
            raise ValueError(f"{DOMAIN_ENV_OVERRIDE}={override} must be in 1..100")
        return value
    return 1 + (os.getpid() if pid is None else pid) % 100


def loopback_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """The environment variables that keep DDS on loopback, as a dict (for ``subprocess`` ``env``)."""
    if not FASTDDS_PROFILE.is_file():
        raise FileNotFoundError(f"loopback Fast DDS profile missing: {FASTDDS_PROFILE}")
    return {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(pick_domain_id() if domain_id is None else domain_id),
    }


def apply_loopback_ros_env(
    environ: MutableMapping[str, str] | None = None, domain_id: int | None = None
) -> dict[str, str]:
    """Set :func:`loopback_ros_env` in ``environ`` (default ``os.environ``); returns the values set.

    Also removes the deprecated ``ROS_LOCALHOST_ONLY`` so it cannot conflict.
    """
    env = os.environ if environ is None else environ
    values = loopback_ros_env(domain_id)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update(values)
    return values


@contextmanager
def loopback_ros_environment(domain_id: int | None = None) -> Iterator[dict[str, str]]:
    """Context manager: :func:`apply_loopback_ros_env` on ``os.environ``, restoring it afterwards."""
    saved = {k: os.environ.get(k) for k in _ROS_VARS}
    try:
        yield apply_loopback_ros_env(domain_id=domain_id)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
