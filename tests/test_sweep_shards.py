"""A sweep split over jobs sharing its workdir (gan_jax/sweep/claims.py): --shard and SLURM arrays,
claims taken once and stale ones taken over, three shard processes started at once and then the
merged report, and a shard that finishes early taking the runs no other job has claimed."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, subprocess_env
from gan_jax import sweep
from gan_jax.errors import UserError
from gan_jax.sweep import claims as claims_lib
from test_sweep import _sweep_file

# One program (the learning rate vmaps), 6 runs: each of 3 shards owns a group of 2.
SPEC = '{"axes": {"optimizer.d_lr": [0.004, 0.002]}, "seeds": [0, 1, 2], "metrics": ["modes_covered"]}'


def _run(label: str, seed: int = 0):
  return sweep.Run(cell=(("x", label),), seed=seed, config=None)


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


# ---------------------------------------------------------------------------- shards
def test_shard_flag_and_slurm_array_environment():
  assert claims_lib.parse_shard("1/3") == sweep.Shard(1, 3) and str(sweep.Shard(1, 3)) == "1/3"
  for bad in ("3/3", "-1/2", "a/b", "2", "1/0"):
    with pytest.raises(UserError, match=r"is not i/N with 0 <= i < N") as e:
      claims_lib.parse_shard(bad)
    assert "\n" not in str(e.value)
  env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
  assert claims_lib.shard_from_env(env) == sweep.Shard(2, 4)
  assert claims_lib.shard_from_env({}) is None
  # --array=1-4: counted from 1; --array=0-12:4: four tasks in steps of 4, without TASK_COUNT.
  assert claims_lib.shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1",
                                    "SLURM_ARRAY_TASK_MAX": "4"}) == sweep.Shard(2, 4)
  assert claims_lib.shard_from_env({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0",
                                    "SLURM_ARRAY_TASK_MAX": "12", "SLURM_ARRAY_TASK_STEP": "4"}) == sweep.Shard(2, 4)
  assert claims_lib.resolve_shard("0/2", env) == sweep.Shard(0, 2)  # the flag wins
  with pytest.raises(UserError, match="SLURM_ARRAY_TASK_ID is set but not"):
    claims_lib.shard_from_env({"SLURM_ARRAY_TASK_ID": "0"})
  with pytest.raises(UserError, match="SLURM array task 7 is not one of 4 tasks"):
    claims_lib.shard_from_env({**env, "SLURM_ARRAY_TASK_ID": "7"})


def test_shard_chunks_split_runs_evenly_keeping_programs_together(tmp_path):
  path = _sweep_file(tmp_path, '{"axes": {"k_disc_steps": [1, 2]}, "seeds": [0, 1, 2, 3, 4]}')
  runs = sweep.expand(*sweep.load_sweep_file(path))
  chunks = sweep.shard_chunks(runs, 3)
  assert [len(c) for c in chunks] == [3, 3, 4]
  assert sorted(r.dirname for c in chunks for r in c) == sorted(r.dirname for r in runs)
  assert [r.config.k_disc_steps for c in chunks for r in c] == [1] * 5 + [2] * 5
  assert sweep.shard_chunks(runs, 1) == [[r for g in sweep.plan_groups(runs, 64) for r in g]]


# ---------------------------------------------------------------------------- claims
def _write_claim(claims, run, **fields):
  path = claims.path(run)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"run": run.dirname, "shard": "9/10", "host": socket.gethostname(), "pid": os.getppid(),
               "token": "other", "time": time.time(), **fields}, f)
  return path


def test_claims_once_live_claims_kept_stale_claims_taken_over(tmp_path, capsys):
  workdir = str(tmp_path)
  mine = claims_lib.Claims(workdir, "0/2", timeout_s=600)
  a, b, c, d, e = (_run(x) for x in "abcde")
  assert mine.try_claim(a) and mine.try_claim(a)  # held: claiming again is a no-op
  held = json.load(open(mine.path(a), encoding="utf-8"))
  assert (held["shard"], held["pid"], held["host"]) == ("0/2", os.getpid(), socket.gethostname())
  # Another job (a live process on this host) holds b: not taken.
  _write_claim(mine, b)
  assert not mine.try_claim(b)
  # c: its process is gone; d: a live process, but not refreshed for longer than the timeout;
  # e: another host, fresh: live.
  _write_claim(mine, c, pid=_dead_pid())
  path_d = _write_claim(mine, d)
  os.utime(path_d, (time.time() - 700, time.time() - 700))
  _write_claim(mine, e, host="elsewhere", pid=1)
  assert mine.try_claim(c) and mine.try_claim(d) and not mine.try_claim(e)
  for run in (a, c, d):
    mine.record(run)
  out = capsys.readouterr().out
  assert "taking over the stale claim of runs/x=c/seed_0 (shard 9/10" in out and "is gone" in out
  assert "runs/x=d/seed_0" in out and "not refreshed for 700 s (timeout 600 s)" in out
  assert json.load(open(mine.path(c), encoding="utf-8"))["token"] == mine.token
  # A leftover takeover lock blocks a takeover until it is old enough to be a crash's.
  _write_claim(mine, e, host="elsewhere", pid=1)
  os.utime(mine.path(e), (time.time() - 700, time.time() - 700))
  open(mine.path(e) + ".takeover", "w").close()
  assert not mine.try_claim(e)
  os.utime(mine.path(e) + ".takeover", (time.time() - 100, time.time() - 100))
  assert not mine.try_claim(e) and mine.try_claim(e)  # the old lock is removed, then the claim taken
  mine.record(e)
  log = [json.loads(line) for line in open(os.path.join(workdir, claims_lib.CLAIMS_LOG), encoding="utf-8")]
  assert [(x["run"][-8:-7], x["took_over"]) for x in log] == [("a", False), ("c", True), ("d", True), ("e", True)]
  mine.refresh(force=True)
  mine.release(a)
  assert not os.path.exists(mine.path(a))
  mine.release_all()
  assert not any(os.path.exists(mine.path(r)) for r in (a, c, d, e)) and os.path.exists(mine.path(b))
  with pytest.raises(UserError, match="--claim_timeout must be > 0"):
    claims_lib.Claims(workdir, timeout_s=0)


# ---------------------------------------------------------------------------- jobs sharing a workdir
def test_three_shards_at_once_then_the_merged_report(tmp_path):
  """Three shard processes start together on one workdir; every run is trained exactly once (the
  claims log holds one claim per run, and the shards' trained counts add up to the sweep); the same
  command without --shard then trains nothing and writes the report of all runs."""
  path = _sweep_file(tmp_path, SPEC)
  workdir = str(tmp_path / "out")
  command = [sys.executable, "-m", "gan_jax.sweep", f"--sweep={path}", f"--workdir={workdir}"]
  procs = [subprocess.Popen(command + [f"--shard={i}/3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env(1), cwd=REPO) for i in range(3)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, (out, err[-3000:])
  assert all("run the same command without --shard" in out for out, _ in outs)
  results = [os.path.join(root, f) for root, _, fs in os.walk(os.path.join(workdir, "runs"))
             for f in fs if f == sweep.RESULT_FILE]
  assert len(results) == 6
  log = [json.loads(line) for line in open(os.path.join(workdir, claims_lib.CLAIMS_LOG), encoding="utf-8")]
  assert len(log) == 6 and len({x["run"] for x in log}) == 6 and not any(x["took_over"] for x in log)
  shard_lines = [json.loads(line) for line in open(os.path.join(workdir, "sweep_log.jsonl"), encoding="utf-8")]
  assert sorted(x["shard"] for x in shard_lines) == ["0/3", "1/3", "2/3"]
  assert sum(x["trained"] for x in shard_lines) == 6
  assert not [f for _, _, fs in os.walk(workdir) for f in fs if f.startswith(claims_lib.CLAIM_FILE)]
  assert not os.path.exists(os.path.join(workdir, "results.md"))  # the shards leave the report

  merge = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(1), cwd=REPO, timeout=300)
  assert merge.returncode == 0, merge.stderr[-3000:]
  assert "sweep finished: 6 runs (0 trained now)" in merge.stdout
  assert "6 of 6 runs finished" in open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  assert "- optimizer.d_lr, modes_covered" in open(os.path.join(workdir, "stats.md"), encoding="utf-8").read()


def test_a_shard_takes_unclaimed_runs_of_other_shards_and_skips_claimed_ones(tmp_path):
  """Shard 0 of 2 runs alone: it trains its share, then shard 1's runs, all but one that a live job
  holds; that run is left, by the shard and by the plain command, until its claim is gone."""
  path = _sweep_file(tmp_path, SPEC)
  workdir = str(tmp_path / "out")
  runs = sweep.expand(*sweep.load_sweep_file(path))
  held = sweep.shard_chunks(runs, 2)[1][-1]
  claim = _write_claim(claims_lib.Claims(workdir), held)
  summary = sweep.run_sweep(path, workdir, shard=sweep.Shard(0, 2), command="test")
  assert (summary["trained"], summary["busy"], summary["remaining"], summary["finished"]) == (5, 1, 1, False)
  assert sweep.load_result(workdir, held) is None
  summary = sweep.run_sweep(path, workdir, command="test")
  assert (summary["trained"], summary["busy"], summary["finished"]) == (0, 1, False)
  os.remove(claim)
  summary = sweep.run_sweep(path, workdir, command="test")
  assert (summary["trained"], summary["finished"]) == (1, True)
