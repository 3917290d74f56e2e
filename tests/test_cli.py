"""The `dfp` command line, run in-process and once as a real console script."""

from __future__ import annotations

import json
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


def test_demo_writes_a_valid_store_and_summary(tmp_path, capsys):
    assert dfp(["demo", "--out", str(tmp_path / "demo"), "--episodes", "3"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["episodes"] == 3 and summary["steps"] == 120
    assert dfp(["data", "validate", summary["store"]]) == 0


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
    assert dfp(["data", "recover", str(synth_store)]) == 0
    assert "recovered as episode 6 (5 steps)" in capsys.readouterr().out
    assert dfp(["data", "validate", str(synth_store)]) == 0
