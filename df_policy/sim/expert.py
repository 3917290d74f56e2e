"""Scripted expert for :class:`~df_policy.sim.arm_env.SimArmEnv`: the teleoperator's
stand-in that records demonstrations.

It reads the privileged task state (cube and target poses), plans a top-down pick-and-place
in Cartesian space and outputs the env's action: **joint position targets** ``(6,)`` rad,
computed by :class:`~df_policy.sim.ik.ArmIK`. Phases::

    APPROACH  tool point above the cube (hover height), jaws open and aligned with a cube face
    DESCEND   down to the cube centre
    CLOSE     close the jaws (a fixed number of steps)
    LIFT      up to the carry height; if the cube did not come along, back to APPROACH
    TRANSPORT over the target square (corrected for where the cube sits in the jaws)
    LOWER     until the cube is just above the table
    OPEN      open the jaws (a fixed number of steps)
    RETREAT   up to the hover height, then DONE (holds still)

Motion is smooth: a Cartesian reference moves toward each phase's goal at a bounded speed and
the joint targets change by at most ``max_joint_speed_rad_s / control_hz`` per step. A phase
ends when the measured tool point is within ``position_tolerance_m`` of its goal, or after
``phase_timeout_s``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from .arm_env import SimArmEnv, TaskState
from .ik import ArmIK, IKConfig, top_down_rotation

__all__ = ["EpisodeOutcome", "ExpertConfig", "Phase", "ScriptedExpert", "record_expert_episode", "run_expert_episode"]


class Phase(enum.Enum):
    APPROACH = "approach"
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"
    TRANSPORT = "transport"
    LOWER = "lower"
    OPEN = "open"
    RETREAT = "retreat"
    DONE = "done"


_MOVING = {Phase.APPROACH, Phase.DESCEND, Phase.LIFT, Phase.TRANSPORT, Phase.LOWER, Phase.RETREAT}
_CAREFUL = {Phase.DESCEND, Phase.LIFT, Phase.LOWER}
_GRIPPER_CLOSED_PHASES = {Phase.CLOSE, Phase.LIFT, Phase.TRANSPORT, Phase.LOWER}


@dataclass(frozen=True)
class ExpertConfig:
    """Expert settings (metres, radians, seconds).

    Attributes:
        hover_height_m: tool point above the cube centre while approaching / retreating.
        carry_height_m: cube centre above its resting height while carried.
        release_clearance_m: cube bottom above the table when the jaws open.
        speed_m_s: Cartesian reference speed in free space.
        careful_speed_m_s: reference speed near the cube and table (DESCEND, LIFT, LOWER).
        max_joint_speed_rad_s: largest change of an arm joint target per second.
        gripper_speed_rad_s: largest change of the gripper target per second.
        gripper_open_rad, gripper_closed_rad: gripper targets (closed = joint lower limit:
            the servo then squeezes with its full torque).
        close_steps, open_steps: control steps spent closing / opening.
        position_tolerance_m: a moving phase ends when the tool point is this close to its goal.
        phase_timeout_s: a moving phase ends after this long regardless.
        max_regrasps: how often a failed lift may restart the approach.
    """

    hover_height_m: float = 0.045
    carry_height_m: float = 0.045
    release_clearance_m: float = 0.004
    speed_m_s: float = 0.15
    careful_speed_m_s: float = 0.08
    max_joint_speed_rad_s: float = 2.0
    gripper_speed_rad_s: float = 5.0
    gripper_open_rad: float = 1.0
    gripper_closed_rad: float = -0.17
    close_steps: int = 5
    open_steps: int = 4
    position_tolerance_m: float = 0.006
    phase_timeout_s: float = 3.0
    max_regrasps: int = 2
    ik: IKConfig = field(default_factory=IKConfig)

    def __post_init__(self) -> None:
        for name in (
            "hover_height_m", "carry_height_m", "speed_m_s", "careful_speed_m_s", "max_joint_speed_rad_s",
            "gripper_speed_rad_s", "position_tolerance_m", "phase_timeout_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not (math.isfinite(self.release_clearance_m) and self.release_clearance_m >= 0):
            raise ValueError(f"release_clearance_m must be >= 0, got {self.release_clearance_m!r}")
        if not self.gripper_open_rad > self.gripper_closed_rad:
            raise ValueError("gripper_open_rad must be greater than gripper_closed_rad")
        for name in ("close_steps", "open_steps", "max_regrasps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")


def _yaw(quat: np.ndarray) -> float:
    """Yaw (rad) of the body x axis of a ``(w, x, y, z)`` quaternion, projected on the table."""
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


class ScriptedExpert:
    """Pick-and-place expert for one env (see the module docstring). Call :meth:`reset`
    after every ``env.reset`` and :meth:`act` once per control step."""

    def __init__(self, env: SimArmEnv, config: ExpertConfig | None = None) -> None:
        self.env = env
        self.config = config or ExpertConfig()
        self.ik = ArmIK(env.model, "grasp", env.joint_names[:5], self.config.ik)
        self._h = env.config.scene.cube_half_size_m
        self._dt = env.dt_s
        self.reset()

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def done(self) -> bool:
        return self._phase is Phase.DONE

    def reset(self) -> None:
        """Start over from the env's current state."""
        env = self.env
        self._phase = Phase.APPROACH
        self._phase_steps = 0
        self._regrasps = 0
        self._q_cmd = env.last_action
        self._ref = env.task_state().ee_pos.copy()
        self._jaw: np.ndarray | None = None
        self._goal = self._ref.copy()
        self._place_offset = np.zeros(2)

    # ------------------------------------------------------------------ planning

    def _choose_jaw(self, s: TaskState) -> np.ndarray:
        """Jaw axis along a cube face normal: the one needing the least change of wrist roll."""
        yaw = _yaw(s.cube_quat)
        goal = np.array([s.cube_pos[0], s.cube_pos[1], self._h + self.config.hover_height_m])
        best, best_cost = None, math.inf
        for k in range(4):
            a = yaw + k * math.pi / 2
            jaw = np.array([math.cos(a), math.sin(a), 0.0])
            res = self.ik.solve(self._q_cmd[:5], goal, top_down_rotation(jaw))
            cost = abs(res.q[4] - self._q_cmd[4]) + 100.0 * (res.pos_error_m + 0.05 * res.rot_error_rad)
            if cost < best_cost:
                best, best_cost = jaw, cost
        assert best is not None
        return best

    def _phase_goal(self, s: TaskState) -> np.ndarray:
        cfg, h, p = self.config, self._h, self._phase
        cube = s.cube_pos
        if p is Phase.APPROACH:
            return np.array([cube[0], cube[1], h + cfg.hover_height_m])
        if p is Phase.DESCEND:
            return np.array([cube[0], cube[1], h])
        if p is Phase.LIFT:
            return np.array([self._ref[0], self._ref[1], h + cfg.carry_height_m + (self._ref[2] - cube[2])])
        if p is Phase.TRANSPORT:
            xy = s.target_pos[:2] + self._place_offset
            return np.array([xy[0], xy[1], self._ref[2]])
        if p is Phase.LOWER:
            drop = cube[2] - (h + cfg.release_clearance_m)
            return np.array([self._ref[0], self._ref[1], self._ref[2] - drop])
        if p is Phase.RETREAT:
            return np.array([self._ref[0], self._ref[1], h + cfg.hover_height_m])
        return self._ref.copy()

    def _enter(self, phase: Phase, s: TaskState) -> None:
        self._phase = phase
        self._phase_steps = 0
        if phase is Phase.APPROACH or (phase is Phase.DESCEND and self._jaw is None):
            self._jaw = self._choose_jaw(s)
        if phase is Phase.TRANSPORT:
            # keep the cube's offset in the jaws: move the tool so the cube lands on the target
            self._place_offset = s.ee_pos[:2] - s.cube_pos[:2]
        if phase in _MOVING:
            self._goal = self._phase_goal(s)

    def _advance(self, s: TaskState) -> None:
        cfg = self.config
        timeout = self._phase_steps * self._dt >= cfg.phase_timeout_s
        p = self._phase
        if p in _MOVING:
            close = np.linalg.norm(s.ee_pos - self._goal) < cfg.position_tolerance_m
            reached = bool(np.allclose(self._ref, self._goal) and close)
            if not (reached or timeout):
                return
        elif p is Phase.CLOSE and self._phase_steps < cfg.close_steps:
            return
        elif p is Phase.OPEN and self._phase_steps < cfg.open_steps:
            return
        elif p is Phase.DONE:
            return
        if p is Phase.LIFT and s.cube_pos[2] < self._h + 0.5 * cfg.carry_height_m:
            if self._regrasps < cfg.max_regrasps:  # the cube slipped: try again
                self._regrasps += 1
                self._enter(Phase.APPROACH, s)
                return
        order = list(Phase)
        self._enter(order[order.index(p) + 1], s)

    # ------------------------------------------------------------------ acting

    def act(self) -> np.ndarray:
        """The next action: joint position targets ``float64 (6,)`` rad."""
        cfg = self.config
        s = self.env.task_state()
        if self._jaw is None:
            self._enter(Phase.APPROACH, s)
        self._advance(s)
        if self._phase in (Phase.APPROACH, Phase.DESCEND):
            self._goal = self._phase_goal(s)  # follow the cube if it moved
        if self._phase in _MOVING:
            speed = cfg.careful_speed_m_s if self._phase in _CAREFUL else cfg.speed_m_s
            delta = self._goal - self._ref
            dist = float(np.linalg.norm(delta))
            step = speed * self._dt
            self._ref = self._goal.copy() if dist <= step else self._ref + delta * (step / dist)
        assert self._jaw is not None
        res = self.ik.solve(self._q_cmd[:5], self._ref, top_down_rotation(self._jaw))
        q = self._q_cmd.copy()
        max_arm = cfg.max_joint_speed_rad_s * self._dt
        q[:5] += np.clip(res.q - q[:5], -max_arm, max_arm)
        grip = cfg.gripper_closed_rad if self._phase in _GRIPPER_CLOSED_PHASES else cfg.gripper_open_rad
        max_grip = cfg.gripper_speed_rad_s * self._dt
        q[5] += float(np.clip(grip - q[5], -max_grip, max_grip))
        q = np.clip(q, self.env.lower, self.env.upper)
        self._q_cmd = q
        self._phase_steps += 1
        return q.copy()


@dataclass(frozen=True)
class EpisodeOutcome:
    """Result of one expert episode: ``seed``; ``success`` at the end; ``steps`` taken;
    ``first_success_step`` (``None`` if never); final ``progress``; expert ``phase`` at the end."""

    seed: int
    success: bool
    steps: int
    first_success_step: int | None
    progress: float
    phase: str


def record_expert_episode(
    env: SimArmEnv, seed: int, expert: ScriptedExpert | None = None, extra_steps_after_done: int = 3
) -> tuple[dict[str, np.ndarray], EpisodeOutcome]:
    """Like :func:`run_expert_episode`, but also returns the episode as arrays over time, ready
    for an episode store: step ``t`` holds the observation (every key of
    :meth:`SimArmEnv.observation`, images included) taken **before** action ``t``, and
    ``action`` (float32 ``(T, 6)``, joint targets in rad) is what the expert then commanded."""
    env.reset(seed)
    expert = expert or ScriptedExpert(env)
    expert.reset()
    steps: list[dict[str, np.ndarray]] = []
    first: int | None = None
    after = 0
    while True:
        obs = env.observation()
        action = expert.act()
        obs["action"] = action.astype(np.float32)
        steps.append(obs)
        result = env.step(action)
        if result.success and first is None:
            first = result.step
        if expert.done:
            after += 1
        if result.truncated or after > extra_steps_after_done:
            break
    arrays = {k: np.stack([st[k] for st in steps]) for k in steps[0]}
    outcome = EpisodeOutcome(int(seed), result.success, result.step, first, result.progress, expert.phase.value)
    return arrays, outcome


def run_expert_episode(
    env: SimArmEnv, seed: int, expert: ScriptedExpert | None = None, extra_steps_after_done: int = 3
) -> EpisodeOutcome:
    """Reset ``env`` with ``seed`` and let the expert act until it is done (plus
    ``extra_steps_after_done`` holding steps) or the episode time runs out. No rendering."""
    env.reset(seed)
    expert = expert or ScriptedExpert(env)
    expert.reset()
    first: int | None = None
    after = 0
    result = None
    while True:
        result = env.step(expert.act())
        if result.success and first is None:
            first = result.step
        if expert.done:
            after += 1
        if result.truncated or after > extra_steps_after_done:
            break
    return EpisodeOutcome(int(seed), result.success, result.step, first, result.progress, expert.phase.value)
