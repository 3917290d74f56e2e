"""The `dfp` command line, run in-process and once as a real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np

from df_policy.cli import main as dfp
from df_policy.data.store import EpisodeStore
from df_policy.data.synthetic import synthetic_episode


def test_console_script_runs():
    exe = shutil.which("dfp")
    assert exe, "dfp console script is not installed"
    out = subprocess.run([exe, "data", "--help"], capture_output=True, text=True, check=True).stdout
    assert "validate" in out and "convert" in out


def test_demo_runs_every_stage(tmp_path, capsys):
    """The README's first command at toy size: every stage runs on the simulated arm and reports."""
    out = tmp_path / "demo"
    assert dfp(["demo", "--out", str(out), "--episodes", "3", "--train-steps", "4", "--eval-episodes", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    store = summary["store"]
    assert store["episodes"] == 3 and store["expert_success_rate"] == 1.0 and store["dropped_steps"] == 0
    assert dfp(["data", "validate", str(out / "demos.zarr")]) == 0
    assert summary["train"]["steps"] == 4 and (out / "run" / "checkpoints" / "last" / "ema.safetensors").is_file()
    assert (out / "replay" / "metrics.json").is_file() and summary["replay"]["action_mse"] > 0
    loop = summary["closed_loop"]
    assert loop["episodes"] == 1
    assert loop["hold"]["success_rate"] == 0.0  # the cube never starts on the target
    assert all(0.0 <= loop[w]["success_rate"] <= 1.0 for w in ("policy", "replay"))
    assert (out / "rollout.gif").read_bytes()[:3] == b"GIF"
    assert (out / "closed_loop.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "hold the start pose" in report and "open-loop replay" in report
    assert "policy success" in capsys.readouterr().out


def test_mark_recover_and_errors(tmp_path, synth_store, capsys):
    assert dfp(["data", "mark", str(synth_store), "1", "2", "--bad", "--notes", "occluded"]) == 0
    assert dfp(["data", "info", str(synth_store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["bad_episodes"] == [1, 2]
    assert dfp(["data", "mark", str(synth_store), "99", "--bad"]) == 2
    assert "episode 99 out of range" in capsys.readouterr().err

    store = EpisodeStore.open(synth_store, mode="r+")
    w = store.begin_episode()
    w.flush_every = 2
    w.add_steps(synthetic_episode(np.random.default_rng(0), 5, 32))  # flushed, never committed
    assert dfp(["data", "validate", str(synth_store)]) == 1
    assert "partial episode" in capsys.readouterr().out
    assert dfp(["data", "recover", str(synth_store)]) == 2  # the "recorder" still holds the store
    assert f"open for writing by pid {os.getpid()}" in capsys.readouterr().err
    store.close()  # ... until it dies
    assert dfp(["data", "recover", str(synth_store)]) == 0
    assert "recovered as episode 6 (5 steps)" in capsys.readouterr().out
    assert dfp(["data", "validate", str(synth_store)]) == 0
