"""Evaluation during training (`eval_every`): metrics to eval.jsonl and TensorBoard, sample grids as
TensorBoard images, the best checkpoint kept apart; `python -m gan_jax.evaluate` on a run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env
from gan_jax import train
from gan_jax.run import logs
from gan_jax.run.reader import checkpoint_steps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("eval_run"))
  c = load_config("digits", "smoke")
  c.parallel.mode, c.num_steps, c.steps_per_dispatch = "none", 60, 10
  c.log_every, c.sample_every, c.checkpoint_every = 10, 30, 30
  c.eval_every, c.eval.metrics, c.eval.num_samples, c.eval.extractor = 20, "fid,pr", 300, "classifier"
  summary = train.train_and_evaluate(c, workdir)
  return workdir, summary


def test_metrics_are_written_at_every_eval_step_with_their_protocol(run):
  workdir, summary = run
  with open(os.path.join(workdir, "eval.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [20, 40, 60]
  for r in records:
    assert {"fid", "precision", "recall"} <= set(r) and np.isfinite(r["fid"])
    assert (r["n_fake"], r["n_real"], r["split"]) == (300, 1500, "train")
    assert r["extractor"].startswith("classifier")
  scalars = logs.read_tensorboard(workdir)
  assert [s for s, _ in scalars["eval/fid"]] == [20, 40, 60]
  assert [v for _, v in scalars["eval/fid"]] == pytest.approx([r["fid"] for r in records])
  assert summary["eval"]["step"] == 60 and os.path.exists(os.path.join(workdir, "eval.png"))
  # No evaluation record leaks into the training metrics (their curves stay as they were).
  assert not any("eval/fid" in r for r in logs.read_metrics(workdir))


def test_the_best_checkpoint_is_kept_apart(run):
  workdir, summary = run
  with open(os.path.join(workdir, "eval.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  best = min(records, key=lambda r: r["fid"])
  assert summary["best"] == {"step": best["step"], "metric": "fid", "value": pytest.approx(best["fid"])}
  assert checkpoint_steps(workdir, "checkpoints_best") == [best["step"]]
  assert checkpoint_steps(workdir) == [30, 60]  # the rolling ones are untouched


def test_sample_grids_reach_tensorboard_as_images(run):
  workdir, _ = run
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  steps = []
  for path in logs._event_files(workdir):  # pylint: disable=protected-access
    for data in logs._read_records(path)[0]:  # pylint: disable=protected-access
      event = event_pb2.Event.FromString(data)
      steps += [event.step for v in event.summary.value if v.WhichOneof("value") == "image"]
  assert steps == [30, 60]


def test_evaluate_command_scores_the_best_checkpoint(run, tmp_path):
  workdir, summary = run
  out = tmp_path / "r.json"
  proc = subprocess.run([sys.executable, "-m", "gan_jax.evaluate", f"--workdir={workdir}", "--step=best",
                         "--metrics=fid", "--num_samples=300", "--extractor=classifier", f"--json_out={out}"],
                        cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["step"] == summary["best"]["step"] and result["n_fake"] == 300
  assert result["fid"] == pytest.approx(summary["best"]["value"], rel=1e-6)  # the same samples, the same number
  assert "fid:" in proc.stdout and "300 generated vs 1500 train images" in proc.stdout


@pytest.mark.parametrize("args,expected", [
    (["--metrics=fid,xyz"], "unknown metric"),
    (["--real=a.npy"], "pass both --real and --fake"),
    ([], "pass either --workdir=RUN or both --real and --fake"),
    (["--real=/nonexistent.npy", "--fake={tmp}/good.npy", "--weights=/nonexistent.pth"],
     "/nonexistent.npy does not exist"),  # the images are checked before the weights are loaded
    (["--real={tmp}/good.npy", "--fake={tmp}/empty.npy", "--weights=/nonexistent.pth"],
     "cannot read {tmp}/empty.npy as a .npy array"),
    (["--real={tmp}/good.npy", "--fake={tmp}/good.npy", "--json_out={tmp}/mine.json"],
     "mine.json exists; pass --force"),
])
def test_evaluate_mistakes_are_one_line(tmp_path, args, expected):
  np.save(tmp_path / "good.npy", np.zeros((4, 8, 8, 3), np.uint8))
  (tmp_path / "empty.npy").write_bytes(b"")
  (tmp_path / "mine.json").write_text("a user's file")
  args = [a.format(tmp=tmp_path) for a in args]
  proc = subprocess.run([sys.executable, "-m", "gan_jax.evaluate", *args], cwd=REPO, env=subprocess_env(1),
                        capture_output=True, text=True, timeout=300, check=False)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert expected.format(tmp=tmp_path) in errors[0], errors
  assert (tmp_path / "mine.json").read_text() == "a user's file"


@pytest.mark.slow  # one Inception forward pass on a CPU: about a minute with compilation
def test_evaluate_command_on_two_npy_files(tmp_path):
  from gan_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
  weights = tmp_path / "random_inception.npz"
  np.savez(weights, **inception.state_dict_from_params(inception.init_variables(0)))
  rng = np.random.default_rng(0)
  np.save(tmp_path / "real.npy", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
  np.save(tmp_path / "fake.npy", rng.random((6, 32, 32, 3), dtype=np.float32))
  out = tmp_path / "r.json"
  proc = subprocess.run([sys.executable, "-m", "gan_jax.evaluate", f"--real={tmp_path / 'real.npy'}",
                         f"--fake={tmp_path / 'fake.npy'}", f"--weights={weights}", "--metrics=fid,kid,pr,dc",
                         f"--json_out={out}"], cwd=REPO, env=subprocess_env(1), capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert (result["n_real"], result["n_fake"], result["extractor"]) == (6, 6, "inception-v3-fid")
  assert np.isfinite(result["fid"]) and 0 <= result["precision"] <= 1 and 0 <= result["coverage"] <= 1
