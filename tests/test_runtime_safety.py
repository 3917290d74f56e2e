"""SafetyFilter: NaN guard, limits clipped and counted per kind, lateness and staleness holds."""

from __future__ import annotations

import numpy as np
import pytest

from df_policy.runtime.safety import Command, Hold, SafetyConfig, SafetyFilter


def test_config_validation():
    with pytest.raises(ValueError, match="low must be < high"):
        SafetyConfig(low=[0, 0], high=[1, 0])
    with pytest.raises(ValueError, match="max_velocity must be > 0"):
        SafetyConfig(max_velocity=0.0)
    with pytest.raises(ValueError, match="max_obs_age_s"):
        SafetyConfig(max_obs_age_s=0)
    with pytest.raises(ValueError, match="3 values but the action has 2"):
        SafetyFilter(SafetyConfig(low=[0, 0, 0]), action_dim=2, period_s=0.1)
    assert SafetyConfig(low=-1.0).vector("low", 3).tolist() == [-1.0, -1.0, -1.0]


def test_non_finite_is_never_sent_and_counted():
    f = SafetyFilter(SafetyConfig(), action_dim=2, period_s=0.1)
    first = f.filter(np.array([1.0, 2.0]), now=0.0)
    assert isinstance(first, Command)
    for bad in ([np.nan, 0.0], [0.0, np.inf], [-np.inf, np.nan]):
        out = f.filter(np.array(bad), now=0.1)
        assert isinstance(out, Hold) and out.kind == "non_finite_action"
        np.testing.assert_array_equal(out.action, [1.0, 2.0])  # the last safe command is re-sent
    assert f.holds["non_finite_action"] == 3 and f.commands == 1
    g = SafetyFilter(SafetyConfig(), action_dim=2, period_s=0.1)
    out = g.filter(np.array([np.nan, 0.0]), now=0.0)
    assert isinstance(out, Hold) and out.action is None  # nothing was ever sent: send nothing


def test_position_velocity_acceleration_limits_clip_and_count():
    cfg = SafetyConfig(low=[0.0, -1.0], high=[10.0, 1.0], max_velocity=[5.0, 100.0], max_acceleration=[50.0, 1e6])
    f = SafetyFilter(cfg, action_dim=2, period_s=0.1)
    c = f.filter(np.array([20.0, -3.0]), now=0.0)  # first command: only positions apply
    np.testing.assert_allclose(c.action, [10.0, -1.0])
    assert c.violations == ("position",) and f.violations["position"] == 1
    assert f.violations_per_dim["position"].tolist() == [1, 1]
    # dim 0 asks for 100 units/s from rest: acceleration caps |Δv| at 50 * 0.1 = 5 units/s
    c = f.filter(np.array([0.0, -1.0]), now=0.1)
    np.testing.assert_allclose(c.action, [9.5, -1.0])
    assert "acceleration" in c.violations and f.violations_per_dim["acceleration"].tolist() == [1, 0]
    # accelerate further: v would be 10 units/s > vmax 5: velocity clips
    c = f.filter(np.array([0.0, -1.0]), now=0.2)
    np.testing.assert_allclose(c.action, [9.0, -1.0])
    assert c.violations == ("acceleration", "velocity")
    assert f.violations["velocity"] == 1
    # every sent command satisfies every limit, whatever is asked for
    rng = np.random.default_rng(0)
    prev, prev_v, t = c.action, -5.0 * np.ones(1), 0.2
    for _ in range(200):
        t += 0.1
        out = f.filter(rng.normal(0, 1e4, size=2), now=t)
        x = out.action
        assert cfg.low[0] <= x[0] <= cfg.high[0] and cfg.low[1] <= x[1] <= cfg.high[1]
        v = (x[0] - prev[0]) / 0.1
        assert abs(v) <= 5.0 + 1e-9
        assert abs(v - prev_v[0]) / 0.1 <= 50.0 + 1e-6  # acceleration limit
        prev, prev_v = x, np.array([v])
    report = f.report()
    assert report["violations"]["position"] > 1 and report["commands"] == 203


def test_initial_command_makes_rate_limits_apply_from_the_start():
    f = SafetyFilter(SafetyConfig(max_velocity=1.0), action_dim=1, period_s=0.1)
    f.reset(last_command=np.array([0.0]))
    c = f.filter(np.array([5.0]), now=0.1)
    np.testing.assert_allclose(c.action, [0.1])
    assert c.violations == ("velocity",)
    np.testing.assert_allclose(c.raw, [5.0])


def test_late_actions_and_stale_observations_hold():
    f = SafetyFilter(SafetyConfig(max_obs_age_s=0.25, max_action_age_s=0.05), action_dim=1, period_s=0.1)
    assert f.max_action_age_s == 0.05
    late = f.filter(np.array([1.0]), now=1.0, target_time=0.9)
    assert isinstance(late, Hold) and late.kind == "late_action"
    assert isinstance(f.filter(np.array([1.0]), now=1.0, target_time=0.96), Command)
    assert f.check_observation(None, now=1.0).kind == "stale_observation"
    assert f.check_observation(0.8, now=1.0) is None
    stale = f.check_observation(0.7, now=1.0)
    assert isinstance(stale, Hold) and "0.300 s old" in stale.reason
    assert f.holds == {**f.holds, "late_action": 1, "stale_observation": 2}
    default = SafetyFilter(SafetyConfig(), action_dim=1, period_s=0.1)
    assert default.max_action_age_s == pytest.approx(0.05)  # half a period


def test_velocity_limit_follows_the_command_time_not_the_wall_time():
    # the hardware reaches each command in command_dt_s (the published time_from_start): a
    # stall of 1 s between two sends must not allow a 1 s worth of motion in one command
    f = SafetyFilter(SafetyConfig(max_velocity=1.0, command_dt_s=0.05), action_dim=1, period_s=0.1)
    f.reset(last_command=np.array([0.0]))
    np.testing.assert_allclose(f.filter(np.array([5.0]), now=0.1).action, [0.05])
    np.testing.assert_allclose(f.filter(np.array([5.0]), now=1.1).action, [0.10])  # after a stall
    with pytest.raises(ValueError, match="command_dt_s"):
        SafetyConfig(command_dt_s=0.0)


def test_tracking_bound_against_the_measured_position_faults_and_latches():
    cfg = SafetyConfig(max_velocity=10.0, max_tracking_error=[0.2, 0.5], names=["shoulder", "elbow"])
    f = SafetyFilter(cfg, action_dim=2, period_s=0.1)
    with pytest.raises(ValueError, match="names has 2 names but the action has 3 dimensions"):
        SafetyFilter(SafetyConfig(names=["shoulder", "elbow"]), action_dim=3, period_s=0.1)
    measured = np.array([0.0, 0.0])
    f.reset(last_command=measured)
    # no measured position: never sent
    h = f.filter(np.array([0.1, 0.1]), now=0.0)
    assert isinstance(h, Hold) and h.kind == "no_measurement"
    assert isinstance(f.filter(np.array([0.1, 0.1]), now=0.1, measured=measured), Command)
    # a dead controller: the arm stays at 0 while the commands walk away (velocity-limited
    # steps of 1.0 rad each): the first command beyond 0.2 in dimension 0 is never sent
    h = f.filter(np.array([0.3, 0.1]), now=0.2, measured=measured)
    assert isinstance(h, Hold) and h.kind == "tracking_error"
    assert "joint 'shoulder' (dimension 0) is 0.3000 from the measured position 0.0000" in h.reason
    assert f.fault == h.reason
    # latched: even a command at the measured position is refused until reset
    h = f.filter(np.array([0.0, 0.0]), now=0.3, measured=measured)
    assert isinstance(h, Hold) and h.kind == "tracking_error" and f.holds["tracking_error"] == 2
    f.reset(last_command=measured)
    assert f.fault is None and isinstance(f.filter(np.zeros(2), now=0.4, measured=measured), Command)
    with pytest.raises(ValueError, match="tracking_mode"):
        SafetyConfig(tracking_mode="ignore")


def test_tracking_ratio_reports_the_closest_approach_to_the_fault():
    """``tracking_ratio_max``: the largest |command - measured| / max_tracking_error of any joint
    since the reset, measured before a clip, with the joint's name; a reset starts it again."""
    f = SafetyFilter(SafetyConfig(max_tracking_error=[0.2, 0.5], names=["shoulder", "elbow"], tracking_mode="clip"),
                     action_dim=2, period_s=0.1)
    measured = np.zeros(2)
    assert f.report()["tracking_ratio_max"] == 0.0 and f.report()["tracking_ratio_max_dim"] is None
    f.filter(np.array([0.1, 0.4]), now=0.0, measured=measured)  # 0.5 and 0.8 of the bounds
    assert f.report()["tracking_ratio_max"] == pytest.approx(0.8)
    assert f.report()["tracking_ratio_max_dim"] == "joint 'elbow' (dimension 1)"
    f.filter(np.array([0.0, 0.0]), now=0.1, measured=measured)  # a smaller one keeps the maximum
    assert f.report()["tracking_ratio_max"] == pytest.approx(0.8)
    c = f.filter(np.array([0.3, 0.0]), now=0.2, measured=measured)  # 1.5: clipped, but reported as asked
    assert c.action[0] == pytest.approx(0.2) and f.report()["tracking_ratio_max"] == pytest.approx(1.5)
    assert f.report()["tracking_ratio_max_dim"] == "joint 'shoulder' (dimension 0)"
    f.reset(last_command=measured)
    assert f.report()["tracking_ratio_max"] == 0.0


def test_tracking_grace_clips_the_first_commands_then_faults():
    """A policy whose first targets lead a still arm is clipped for tracking_grace_s after the
    first command (not a fault); a controller that never follows is still caught after it."""
    f = SafetyFilter(SafetyConfig(max_tracking_error=0.2, tracking_grace_s=0.25), action_dim=1, period_s=0.1)
    measured = np.zeros(1)
    f.reset(last_command=measured)
    h = f.filter(np.array([0.5]), now=1.0, measured=None)
    assert isinstance(h, Hold) and h.kind == "no_measurement"  # no command yet: the grace has not started
    for k, t in enumerate((1.1, 1.2, 1.3)):  # grace runs from the first command at t=1.1 to 1.35
        c = f.filter(np.array([0.5]), now=t, measured=measured)
        assert isinstance(c, Command) and c.action[0] == pytest.approx(0.2) and "tracking" in c.violations
        assert f.violations["tracking"] == k + 1 and f.fault is None
    h = f.filter(np.array([0.5]), now=1.4, measured=measured)  # the arm never moved: fault
    assert isinstance(h, Hold) and h.kind == "tracking_error" and f.fault is not None
    f.reset(last_command=measured)  # a reset (~/enable) starts a new grace
    assert isinstance(f.filter(np.array([0.5]), now=2.0, measured=measured), Command)
    with pytest.raises(ValueError, match="tracking_grace_s"):
        SafetyConfig(tracking_grace_s=-1.0)


def test_a_short_excursion_beyond_the_tracking_bound_is_clipped_a_lasting_one_faults():
    """With tracking_fault_after_s, one late measurement (the arm a period further behind a legal
    motion) is clipped into the bound and counted, not a fault; once the arm catches up the
    excursion is over. An arm that stays beyond the bound faults when the time is up, and no
    command beyond the bound is sent meanwhile."""
    cfg = SafetyConfig(max_velocity=1.0, max_tracking_error=0.25, tracking_fault_after_s=0.25)
    f = SafetyFilter(cfg, action_dim=1, period_s=0.1)
    f.reset(last_command=np.zeros(1))
    # a ramp at 1 rad/s; the arm lags 2 steps, then 3 (one late message), then catches up
    for t, target, measured in ((0.1, 0.1, 0.0), (0.2, 0.2, 0.0), (0.3, 0.3, 0.1), (0.4, 0.4, 0.1),
                                (0.5, 0.5, 0.3), (0.6, 0.6, 0.4)):
        c = f.filter(np.array([target]), now=t, measured=np.array([measured]))
        assert isinstance(c, Command) and abs(c.action[0] - measured) <= 0.25 + 1e-12, (t, c)
    assert f.violations["tracking"] == 1 and f.fault is None  # t=0.4: 0.3 from the arm, clipped to 0.35
    assert f.report()["tracking_ratio_max"] == pytest.approx(1.2)
    # the arm stops (blocked) at 0.35: clipped at 0.1, 0.2 s into the excursion, a fault at 0.3 s
    kinds = []
    for t in (0.7, 0.8, 0.9, 1.0):
        r = f.filter(np.array([t]), now=t, measured=np.array([0.35]))
        kinds.append("hold" if isinstance(r, Hold) else "sent")
        if isinstance(r, Command):
            assert r.action[0] <= 0.35 + 0.25 + 1e-12
    assert kinds == ["sent", "sent", "sent", "hold"] and "for 0.300 s" in f.fault, (kinds, f.fault)
    assert f.violations["tracking"] == 4
    # without the patience the first command beyond the bound faults at once
    strict = SafetyFilter(SafetyConfig(max_velocity=1.0, max_tracking_error=0.25), action_dim=1, period_s=0.1)
    strict.reset(last_command=np.array([0.3]))
    assert isinstance(strict.filter(np.array([0.4]), now=0.4, measured=np.array([0.1])), Hold)
    assert strict.fault is not None and "beyond the bound for" not in strict.fault
    with pytest.raises(ValueError, match="tracking_fault_after_s"):
        SafetyConfig(tracking_fault_after_s=-0.1)


def test_a_tracking_bound_tighter_than_one_velocity_step_is_named_at_start(caplog):
    """max_velocity 5 rad/s at 10 Hz lets a command move 0.5 rad, so a 0.35 rad tracking bound in
    fault mode latches a fault during a legal motion (the measured arm lags a command by at least
    that step): the filter names the joints when it is built; clip mode or a wide bound is fine."""
    names = ["shoulder_lift", "gripper"]
    with caplog.at_level("WARNING", logger="df_policy.runtime.safety"):
        f = SafetyFilter(SafetyConfig(max_velocity=5.0, max_tracking_error=[0.35, 1.0], names=names),
                         action_dim=2, period_s=0.1)
    assert f.tracking_tight_dims() == [0]
    assert "joint 'shoulder_lift' (dimension 0)" in caplog.text and "gripper" not in caplog.text
    # the legal motion it warns about: one velocity-limited step from a still arm faults
    f.reset(last_command=np.zeros(2))
    h = f.filter(np.array([0.5, 0.0]), now=0.0, measured=np.zeros(2))
    assert isinstance(h, Hold) and h.kind == "tracking_error"
    caplog.clear()
    for cfg in (SafetyConfig(max_velocity=2.4, max_tracking_error=[0.35, 1.0]),
                SafetyConfig(max_velocity=5.0, max_tracking_error=[0.35, 1.0], tracking_mode="clip"),
                SafetyConfig(max_velocity=5.0, max_tracking_error=[0.35, 1.0], command_dt_s=0.05)):
        with caplog.at_level("WARNING", logger="df_policy.runtime.safety"):
            assert SafetyFilter(cfg, action_dim=2, period_s=0.1).tracking_tight_dims() == []
    assert "max_tracking_error" not in caplog.text


def test_tracking_clip_mode_keeps_every_command_near_the_measured_arm():
    f = SafetyFilter(SafetyConfig(max_tracking_error=0.1, tracking_mode="clip", low=-1.0, high=1.0),
                     action_dim=2, period_s=0.1)
    rng = np.random.default_rng(3)
    for k in range(100):
        measured = rng.uniform(-1.0, 1.0, 2)
        c = f.filter(rng.normal(0, 5, 2), now=0.1 * k, measured=measured)
        assert isinstance(c, Command)
        assert (np.abs(c.action - measured) <= 0.1 + 1e-12).all() and (np.abs(c.action) <= 1.0).all()
    assert f.violations["tracking"] > 50 and f.fault is None


def test_bound_future_limits_every_planned_point_and_cuts_at_nan():
    f = SafetyFilter(SafetyConfig(max_velocity=1.0, low=-0.25, high=1.0), action_dim=1, period_s=0.1)
    out = f.bound_future(np.array([0.0]), np.array([[0.5], [0.5], [-1.0], [-1.0], [np.nan], [0.0]]))
    np.testing.assert_allclose(out[:, 0], [0.1, 0.2, 0.1, 0.0])  # 0.1 per point, cut at the NaN
    out = f.bound_future(np.array([0.0]), np.array([[-1.0]] * 4))
    np.testing.assert_allclose(out[:, 0], [-0.1, -0.2, -0.25, -0.25])  # position limit
    assert f.report()["commands"] == 0 and sum(f.violations.values()) == 0  # pure
