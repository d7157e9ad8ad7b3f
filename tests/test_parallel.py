"""Multi-accelerator training: `pmap` and `sharding` compute the update `none` computes.

On 8 fake CPU devices, each mode trains the same global batch from the same seed; parameters and
metrics must agree to float tolerance (the summation order of a cross-device mean differs, nothing
else). That only holds if every device draws its own slice of the noise, dropout masks and data:
with one device's randomness repeated, or gradients summed instead of averaged, the runs diverge.
A real two-process run through `jax.distributed` (gloo CPU collectives on localhost) then trains,
checkpoints and resumes, and must end where the single-device run ends.

Compilation dominates on CPU, so each model is compiled once per mode, and the single-device runs are
shared between tests (`_reference`).
"""

import functools
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import CONFIGS, REPO, load_config, subprocess_env
from gan_jax import parallel
from gan_jax.core import build, gan as gan_lib
from gan_jax.run import checkpoint
from gan_jax.errors import UserError

TOY_STEPS = 8
PAPER_STEPS = 34  # 1,500 digits / batch 48: epoch 1 ends after step 31, so the epoch rollover runs
# Accuracies count examples; one logit within float noise of 0 may flip sign between modes.
COUNTS = ("d_acc_real", "d_acc_fake")


def _toy_config():
  """toy_1d: MLP discriminator without dropout, Adam; 2 examples per device."""
  c = load_config("toy_1d", "smoke")
  c.batch_size = 16
  c.parallel.mode = "none"
  return c


def _paper_config():
  """mnist_paper's model and optimizer (maxout D with dropout, paper SGD, simultaneous update) on
  the offline digits, narrowed to compile fast. D starts from U(-0.1, 0.1), not the paper's 0.005,
  so that a few dozen steps move every layer far above float rounding: the comparison means
  something."""
  c = load_config("mnist_paper", "smoke")
  c.data.source, c.data.name = "digits", "digits"
  c.batch_size = 48  # 6 per device; no layer is 48 or 6 wide, so the HLO check below is unambiguous
  c.model.noise_dim, c.model.g_hidden, c.model.d_hidden = 16, (32, 32), (16, 16)
  c.model.d_init_scale = 0.1
  c.parallel.mode = "none"
  return c


CONFIGS_BY_NAME = {"toy": (_toy_config, TOY_STEPS), "paper": (_paper_config, PAPER_STEPS)}


def _train(name: str, mode: str) -> dict:
  """Trains config `name` for its steps in one dispatch under `mode`; host copies of everything."""
  make, steps = CONFIGS_BY_NAME[name]
  data, gan, state = build.setup(make())
  init = jax.device_get(state)
  runner = parallel.Runner(gan, mode)
  arrays = runner.put(data.arrays)
  state, metrics = runner.run(runner.put(init), arrays, steps)
  hlo = runner.compiled(state, arrays, steps).as_text() if mode == "sharding" else ""
  return {"init": init, "state": runner.get(state), "metrics": jax.device_get(metrics),
          "devices": runner.num_devices, "hlo": hlo}


@functools.lru_cache(maxsize=None)
def _reference(name: str) -> dict:
  """The single-device run of `name`, computed once per test process."""
  return _train(name, "none")


def _params(state):
  return {"g": state.g_params, "d": state.d_params}


def _assert_same_training(run, ref, steps, batch):
  """`run` ended where `ref` did: parameters, optimizer and data state, per-step metrics."""
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(_params(ref["state"])), jax.tree.leaves(_params(ref["init"]))))
  assert moved > 1e-3, f"training hardly changed the parameters ({moved}): the comparison is vacuous"
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               _params(run["state"]), _params(ref["state"]))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               (run["state"].g_opt_state, run["state"].d_opt_state),
               (ref["state"].g_opt_state, ref["state"].d_opt_state))
  assert int(run["state"].step) == int(ref["state"].step) == steps
  np.testing.assert_array_equal(run["state"].data.perm, ref["state"].data.perm)
  assert (int(run["state"].data.epoch), int(run["state"].data.position)) == (
      int(ref["state"].data.epoch), int(ref["state"].data.position))
  assert set(run["metrics"]) == set(ref["metrics"])
  for key, value in ref["metrics"].items():
    expected = (1,) if key in gan_lib.GRAD_NORM_METRICS else (steps,)  # norms: the last iteration's
    assert run["metrics"][key].shape == value.shape == expected, key
    if key in COUNTS:
      np.testing.assert_allclose(run["metrics"][key], value, atol=1.5 / batch, err_msg=key)
    else:
      np.testing.assert_allclose(run["metrics"][key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", ["toy", "paper"])
def test_pmap_and_sharding_match_one_device(name):
  ref = _reference(name)
  batch = CONFIGS_BY_NAME[name][0]().batch_size
  for mode in ("pmap", "sharding"):
    run = _train(name, mode)
    assert run["devices"] == 8 == jax.device_count()
    _assert_same_training(run, ref, CONFIGS_BY_NAME[name][1], batch)
    if mode == "sharding":
      # The batch is split, not replicated: the compiled per-device program holds arrays of batch / 8
      # examples and none of the global batch (no weight or step count has either size).
      assert f"f32[{batch // 8}," in run["hlo"]
      assert f"f32[{batch}," not in run["hlo"]


def test_indivisible_batch_and_bad_settings_are_user_errors():
  config = _toy_config()
  config.batch_size = 12
  _, gan, _ = build.setup(config)
  for mode in ("pmap", "sharding", "auto"):
    with pytest.raises(UserError, match=r"^batch_size 12 is not divisible by the 8 devices of "
                       r"parallel.mode='(pmap|sharding)'; use a multiple of 8$"):
      parallel.Runner(gan, mode)
  assert parallel.Runner(gan, "none").num_devices == 1
  with pytest.raises(UserError, match="unknown parallel.mode 'gpus'"):
    parallel.Runner(gan, "gpus")
  bad = {"coordinator_address": "localhost:1234", "num_processes": 2, "process_id": 2}
  with pytest.raises(UserError, match="0 <= parallel.process_id < num_processes"):
    parallel.maybe_initialize_distributed(bad)
  with pytest.raises(UserError, match="parallel.coordinator_address"):
    parallel.maybe_initialize_distributed({"num_processes": 2, "process_id": 0})


@pytest.mark.slow
def test_indivisible_batch_on_the_command_line(tmp_path):
  """The same mistake through `python -m gan_jax.main`: one `error:` line, exit 2, no traceback."""
  result = subprocess.run(
      [sys.executable, "-m", "gan_jax.main", f"--config={CONFIGS}/toy_1d.py:smoke",
       f"--workdir={tmp_path / 'run'}", "--config.batch_size=12"],
      env=subprocess_env(8), cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last == ("error: batch_size 12 is not divisible by the 8 devices of parallel.mode='sharding'; "
                  "use a multiple of 8"), last


# One process of a multi-process run: trains half the steps, then resumes to the end in a second
# `train_and_evaluate` (as a restarted job would), printing each summary.
_DRIVER = r"""
import json, sys
import jax
path, arg, overrides, workdir, cache = sys.argv[1:6]
# The resumed phase compiles the same program again; the persistent cache turns that into a lookup.
jax.config.update("jax_compilation_cache_dir", cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
from gan_jax import config as config_lib
config = config_lib.from_file(f"{path}:{arg}" if arg else path)
for key, value in json.loads(overrides).items():
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = tuple(value) if isinstance(value, list) else value
from gan_jax import train
total = config.num_steps
for num_steps in (total // 2, total):
  config.num_steps = num_steps
  summary = train.train_and_evaluate(config, workdir)
  print("SUMMARY", jax.process_index(), json.dumps(summary), flush=True)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = list(value) if isinstance(value, tuple) else value
  return out


def _overrides(config) -> dict:
  """The keys in which `config` differs from mnist_paper's smoke config, as flat dotted keys."""
  base = _flat(load_config("mnist_paper", "smoke").to_dict())
  return {k: v for k, v in _flat(config.to_dict()).items() if base.get(k) != v}


def test_two_processes_train_checkpoint_and_resume_like_one_device(tmp_path):
  """Two processes with one CPU device each, `sharding` over both: both end with the same
  parameters, equal (to float tolerance) to the single-device run's; only process 0 writes logs; the
  Orbax checkpoint written by both is readable by a single-process run."""
  config = _paper_config()
  config.num_steps, config.steps_per_dispatch = PAPER_STEPS, PAPER_STEPS // 2
  config.log_every = config.checkpoint_every = PAPER_STEPS // 2
  config.sample_every = PAPER_STEPS
  config.num_samples = 16
  config.parallel.mode = "auto"
  config.parallel.coordinator_address = f"localhost:{_free_port()}"
  config.parallel.num_processes = 2
  workdir = tmp_path / "run"
  logs = [tmp_path / f"process_{pid}.log" for pid in range(2)]
  procs = []
  # Output goes to files: a full pipe would block one process, and the other in a collective with it.
  try:
    for pid in range(2):
      overrides = dict(_overrides(config), **{"parallel.process_id": pid})
      with open(logs[pid], "w", encoding="utf-8") as log:
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _DRIVER, os.path.join(CONFIGS, "mnist_paper.py"), "smoke",
             json.dumps(overrides), str(workdir), str(tmp_path / f"cache{pid}")],
            env=subprocess_env(1), cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    for p in procs:
      p.wait(timeout=400)
  except subprocess.TimeoutExpired:
    pytest.fail("the two processes did not finish in 400 s:\n" +
                "\n".join(log.read_text(encoding="utf-8")[-3000:] for log in logs))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  outputs = [log.read_text(encoding="utf-8") for log in logs]
  for pid, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {pid} failed:\n{out[-4000:]}"
  summaries = [[json.loads(line.split(" ", 2)[2]) for line in out.splitlines() if line.startswith("SUMMARY")]
               for out in outputs]
  for pid, runs in enumerate(summaries):
    assert [s["step"] for s in runs] == [PAPER_STEPS // 2, PAPER_STEPS], (pid, runs)
    assert all(s["parallel_mode"] == "sharding" and s["num_devices"] == 2 for s in runs), runs
    assert runs[1]["resumed_from"] == PAPER_STEPS // 2, runs  # the second run resumed
  final = [runs[-1] for runs in summaries]
  assert final[0]["params_sha256"] == final[1]["params_sha256"]
  assert final[0]["d_loss"] == final[1]["d_loss"]

  # Only process 0 wrote logs: each logged step appears once.
  with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
    assert [json.loads(line)["step"] for line in f] == [PAPER_STEPS // 2, PAPER_STEPS]
  assert (workdir / "summary.json").exists() and (workdir / "samples.png").exists()

  # The checkpoint both processes wrote restores in this (single-process) run, holds the final
  # parameters, and they are those of the single-device run.
  config.parallel.coordinator_address, config.parallel.num_processes = "", 0
  _, _, template = build.setup(config)
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  try:
    assert ckpt.latest_step() == PAPER_STEPS
    restored = jax.device_get(ckpt.restore(template, config))
  finally:
    ckpt.close()
  assert gan_lib.params_sha256(restored) == final[0]["params_sha256"]
  ref = _reference("paper")
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               _params(restored), _params(ref["state"]))
  np.testing.assert_allclose(final[0]["d_loss"], ref["metrics"]["d_loss"][-1], rtol=1e-5)
