"""A ROS 2 node with its own rclpy context and executor, spun on a background thread.

Each :class:`NodeThread` owns a private ``rclpy.Context`` (never the global default one), so
several of them (a robot backend, a simulated driver, the policy node) can live in one process,
each as its own DDS participant, and be started and stopped independently. ``rclpy`` is
imported only in :meth:`NodeThread.start`.

Threading contract: create publishers/subscriptions/timers on :attr:`NodeThread.node` from any
thread after :meth:`~NodeThread.start`; callbacks run on the spin thread, one at a time.
Callbacks should catch their own exceptions; one that escapes is counted in
:attr:`NodeThread.callback_errors`, kept in :attr:`NodeThread.last_error`, and spinning goes on.
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._imports import RosUnavailableError, import_ros

__all__ = ["NodeThread", "NodeThreadConfig", "RosUnavailableError", "init_private_context", "wait_until"]


@dataclass(frozen=True)
class NodeThreadConfig:
    """Settings of a :class:`NodeThread`.

    Attributes:
        node_name: ROS node name (letters, digits, underscores; no leading digit).
        namespace: ROS namespace, ``""`` for the root.
        domain_id: DDS domain (0..232); ``None`` = ``ROS_DOMAIN_ID`` from the environment.
        spin_timeout_s: how long one executor wait may block; bounds the latency of :meth:`stop`.
        parameter_services: offer the node's parameters to other nodes (``~/get_parameters``,
            ...), as a controller that others read its ``joints`` from must.
        ros_args: ROS arguments for the node's context (what follows ``--ros-args`` on a command
            line: ``-r __ns:=/arm``, ``-r __node:=name``, ``-p name:=value``, ``--log-level L``),
            as ``launch_ros`` passes them; they win over ``node_name`` / ``namespace``.
    """

    node_name: str
    namespace: str = ""
    domain_id: int | None = None
    spin_timeout_s: float = 0.05
    parameter_services: bool = False
    ros_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ros_args", tuple(str(a) for a in self.ros_args))
        name = self.node_name
        if not name or not all(c.isalnum() or c == "_" for c in name) or name[0].isdigit():
            raise ValueError(f"node_name {name!r} must be letters, digits and underscores, not starting with a digit")
        if self.domain_id is not None and (isinstance(self.domain_id, bool) or not 0 <= int(self.domain_id) <= 232):
            raise ValueError(f"domain_id must be in 0..232 or None, got {self.domain_id!r}")
        if not self.spin_timeout_s > 0:
            raise ValueError(f"spin_timeout_s must be > 0, got {self.spin_timeout_s}")


_RUNNING: weakref.WeakSet[NodeThread] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop node threads left running: a context still spinning at interpreter exit aborts the process."""
    for node_thread in list(_RUNNING):
        try:
            node_thread.stop(timeout_s=1.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def init_private_context(program: str, ros_args: tuple[str, ...] | list[str] = (), domain_id: int | None = None) -> Any:
    """A new, initialised ``rclpy.Context`` of its own (never the global one), without rclpy's
    signal handlers (the caller owns SIGINT/SIGTERM): ``ros_args`` are what follows ``--ros-args``
    on a command line (``-r __ns:=/arm``, ``-p name:=value``, ``--params-file f``), read as
    ``program``'s; ``domain_id`` ``None`` = ``ROS_DOMAIN_ID``. Raises ``ValueError`` naming the
    arguments when rcl refuses them."""
    rclpy = import_ros("rclpy")
    signals = import_ros("rclpy.signals")
    context = import_ros("rclpy.context").Context()
    kwargs: dict[str, Any] = {"context": context, "signal_handler_options": signals.SignalHandlerOptions.NO}
    if ros_args:
        kwargs["args"] = [program, "--ros-args", *ros_args]
    if domain_id is not None:
        kwargs["domain_id"] = int(domain_id)
    try:
        rclpy.init(**kwargs)
    except RuntimeError as exc:  # rclpy's RCLError: an unparsable ROS argument
        raise ValueError(f"invalid ROS arguments {list(ros_args)}: {exc}") from exc
    return context


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true (returns True) or ``timeout_s`` passes (returns False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


class NodeThread:
    """Private context + node + single-threaded executor on a daemon thread (see module docstring).

    Lifecycle: :meth:`start` -> use :attr:`node` -> :meth:`stop`; also a context manager.
    ``start`` after ``stop`` creates a fresh context and node.
    """

    def __init__(self, config: NodeThreadConfig) -> None:
        if not isinstance(config, NodeThreadConfig):
            raise TypeError(f"expected a NodeThreadConfig, got {type(config).__name__}")
        self.config = config
        self.callback_errors = 0
        self.last_error: BaseException | None = None
        self._context: Any = None
        self._node: Any = None
        self._executor: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def node(self) -> Any:
        """The ``rclpy.node.Node``; raises if the thread is not started."""
        if self._node is None:
            raise RuntimeError(f"NodeThread {self.config.node_name!r} is not started")
        return self._node

    def start(self) -> Any:
        """Create the context, node and executor and start spinning. Returns the node."""
        with self._lock:
            if self._node is not None:
                return self._node
            rclpy = import_ros("rclpy")
            executors = import_ros("rclpy.executors")
            context = init_private_context(self.config.node_name, self.config.ros_args, self.config.domain_id)
            try:
                node = rclpy.create_node(
                    self.config.node_name,
                    namespace=self.config.namespace or None,
                    context=context,
                    start_parameter_services=self.config.parameter_services,
                )
                executor = executors.SingleThreadedExecutor(context=context)
                executor.add_node(node)
            except BaseException:
                context.try_shutdown()
                raise
            self._context, self._node, self._executor = context, node, executor
            self._stop.clear()
            self._thread = threading.Thread(target=self._spin, name=f"ros-{self.config.node_name}", daemon=True)
            self._thread.start()
            _RUNNING.add(self)
            return node

    def _spin(self) -> None:
        executor, context = self._executor, self._context
        timeout = self.config.spin_timeout_s
        while not self._stop.is_set() and context.ok():
            try:
                executor.spin_once(timeout_sec=timeout)
            except BaseException as exc:  # noqa: BLE001 - keep spinning, record the error
                if self._stop.is_set() or not context.ok():
                    break
                self.callback_errors += 1
                self.last_error = exc

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop spinning, destroy the node and shut the context down. Idempotent."""
        with self._lock:
            if self._node is None:
                return
            _RUNNING.discard(self)
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout_s)
            try:
                self._executor.shutdown(timeout_sec=timeout_s)
                self._node.destroy_node()
            finally:
                self._context.try_shutdown()
                self._context = self._node = self._executor = self._thread = None

    def now_ns(self) -> int:
        """The node clock's current time (ROS time), integer nanoseconds."""
        return int(self.node.get_clock().now().nanoseconds)

    def __enter__(self) -> NodeThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"NodeThread({self.config.node_name!r}, {state})"


def serve_until_signal(stop: Callable[[], None], banner: str = "READY") -> None:
    """Print ``banner`` (a parent process waits for it), block until SIGINT/SIGTERM, then call
    ``stop``. For a node run as its own process, at its end: SIGINT and SIGTERM are ignored from
    then on, so the process exits with status 0 once ``stop`` returns.

    Signals that arrive while ``stop`` runs (or after) are absorbed: a Ctrl-C under ``ros2
    launch`` reaches a node twice (the terminal signals the whole process group, then launch
    signals each child), and the second must not interrupt the shutdown with a
    ``KeyboardInterrupt``; launch escalates to SIGKILL if a node never exits."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        print(banner, flush=True)
        while not done.wait(0.2):
            pass
    finally:
        stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
