"""The command line end to end: a tiny run's outputs, and one clear line for each user mistake."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env

MOG = "experiments/configs/mog_2d.py:smoke"


def _main(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "gan_jax.main", *args], cwd=REPO, env=subprocess_env(1),
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  proc = _main(f"--config={MOG}", f"--workdir={workdir}", "--config.model.g_hidden=(16,)",
               "--config.model.d_hidden=(16,)")
  return workdir, proc


def test_tiny_run_writes_png_metrics_and_summary(tiny_run):
  workdir, proc = tiny_run
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "trained to step 40" in proc.stdout
  with open(workdir / "samples.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert (workdir / "curves.png").stat().st_size > 1000
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl", encoding="utf-8")]
  assert [r["step"] for r in records] == [10, 20, 30, 40]
  assert {"d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake"} <= set(records[0])
  summary = json.loads((workdir / "summary.json").read_text())
  for key in ("step", "wall_time_s", "iters_per_s", "d_loss", "g_loss", "params_sha256"):
    assert summary[key] is not None, key
  assert summary["step"] == 40 and len(summary["params_sha256"]) == 64
  assert os.listdir(workdir / "checkpoints")


def test_rerun_on_finished_workdir_trains_nothing_and_keeps_params(tiny_run):
  workdir, _ = tiny_run
  before = json.loads((workdir / "summary.json").read_text())["params_sha256"]
  proc = _main(f"--config={MOG}", f"--workdir={workdir}", "--config.model.g_hidden=(16,)",
               "--config.model.d_hidden=(16,)")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads((workdir / "summary.json").read_text())["params_sha256"] == before


@pytest.mark.parametrize("args, expected", [
    ([f"--config={MOG}", "--config.nope=1"], "unknown config key --config.nope"),
    ([f"--config={MOG}", "--config.model.nope=1"], "unknown config key --config.model.nope"),
    ([f"--config={MOG}", "--config.num_steps=abc"], "--config.num_steps=abc"),
    (["--config=experiments/configs/nope.py"], "config file experiments/configs/nope.py does not exist"),
    ([f"--config={MOG}", "--config.data.source=foo"], "unknown data.source 'foo'"),
    ([f"--config={MOG}", "--config.loss.name=foo"], "unknown loss.name 'foo'"),
    ([f"--config={MOG}", "--config.update_mode=foo"], "unknown update_mode 'foo'"),
    (["--config=experiments/configs/mnist_paper.py:smoke", "--config.data.dir=/nonexistent"],
     "/nonexistent does not exist"),
])
def test_user_mistakes_are_one_line(tmp_path, args, expected):
  proc = _main(*args, f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], proc.stderr[-1500:]


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  proc = _main(f"--config={MOG}", f"--workdir={blocker / 'sub'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "cannot write to workdir" in proc.stderr
