"""Tests for the benchmark (`python -m gan_jax.bench`), its FLOP counts, and the trainer's compile count."""

import functools
import json
import logging
import os
import subprocess
import sys

import jax
import pytest

from conftest import REPO, load_config, subprocess_env
from gan_jax.bench import configs, flops, profile, reference
from gan_jax import parallel, train
from gan_jax.core import build

ROW_FIELDS = {"model", "mode", "compute_dtype", "runs", "batch", "iters_per_dispatch", "iters_per_s",
              "iters_per_s_median", "images_per_s", "compile_s", "dispatch_times_s", "tflops_per_s",
              "vs_bare", "floor_iters_per_s"}


def _bench(tmp_path, *flags, model="dcgan32"):
  """Runs the benchmark command on tiny settings; returns (stdout, the JSON report)."""
  out = tmp_path / "bench.json"
  cmd = [sys.executable, "-m", "gan_jax.bench", f"--models={model}", "--steps_per_dispatch=2", "--repeats=1",
         "--num_examples=64", "--batch_size=4", "--quick", f"--json_out={out}", *flags]
  proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, json.loads(out.read_text())


def _check_rows(rows: dict, batch: int):
  for (mode, _), row in rows.items():
    assert set(row) == ROW_FIELDS
    assert row["batch"] == batch and row["iters_per_s"] > 0 and row["compile_s"] > 0
    assert row["images_per_s"] == pytest.approx(row["iters_per_s"] * batch)  # it/s summed over runs
    assert len(row["dispatch_times_s"]) == 1
    assert row["vs_bare"] > 0 and row["floor_iters_per_s"] > 0
    if mode.startswith("bare"):
      assert row["vs_bare"] == 1.0


def test_cli_writes_table_json_and_profile(tmp_path):
  """The paper's MLP at batch 4 (a seconds-long check; the DCGAN's rows are in the slow test below)."""
  stdout, report = _bench(tmp_path, "--modes=scan,bare", "--profile", model="mnist_mlp")
  assert "vs bare" in stdout and "round 1/1" in stdout and "ETA" in stdout and "wrote" in stdout
  assert report["quick"] and report["steps_per_dispatch"] == 2 and report["platform"] == "cpu"
  assert {"date", "command", "device_kind", "jax_version", "flops_per_iteration", "rows"} <= set(report)
  rows = {(r["mode"], r["compute_dtype"]): r for r in report["rows"]}
  assert set(rows) == {("scan", "float32"), ("bare", "float32")}
  _check_rows(rows, 4)
  scan, bare = rows[("scan", "float32")], rows[("bare", "float32")]
  assert scan["vs_bare"] == pytest.approx(scan["images_per_s"] / bare["images_per_s"])
  assert scan["iters_per_dispatch"] == 2
  flops = report["flops_per_iteration"]["mnist_mlp"]["float32"]
  assert scan["tflops_per_s"] == pytest.approx(scan["iters_per_s"] * flops / 1e12)
  assert scan["floor_iters_per_s"] == pytest.approx(report["matmul_peak_tflops"] * 1e12 / flops)
  # --profile: one step's instruction time by kind, from a jax.profiler trace.
  (prof,) = report["profiles"]
  assert prof["model"] == "mnist_mlp"
  for loop in ("trainer", "bare"):
    assert set(prof[loop]["kinds"]) == set(profile.PROFILE_KINDS)
    assert all(ms > 0 for ms in prof[loop]["kinds"].values())  # matmuls, dropout masks, the rest
    assert prof[loop]["passes"]["backward"] > 0 and prof[loop]["top"]
    assert prof[loop]["total"] == pytest.approx(sum(prof[loop]["kinds"].values()))
  assert "random numbers" in stdout and "bare loop" in stdout and "trainer's slowest" in stdout


def test_profile_kinds_from_hlo():
  """Only the ENTRY computation's instructions count (a while loop's body is inside its time)."""
  hlo = """HloModule m
%body (p: (s32[], u32[4])) -> (s32[], u32[4]) {
  %add.9 = u32[4]{0} add(%a, %b), metadata={op_name="jit(f)/threefry2x32"}
}
ENTRY %main (x: f32[2,3]) -> f32[2,2] {
  %dot.1 = f32[2,2]{1,0} dot(%x, %y), metadata={op_name="jit(f)/jvp(D)/dot_general"}
  %ynn_fusion.3 = f32[2,2]{1,0} fusion(%x), kind=kCustom, metadata={op_name="jit(f)/transpose(jvp(D))/dot_general"}
  %while.5 = (s32[], u32[4]{0}) while(%t), condition=%c, body=%body, metadata={op_name="jit(f)/D/Dropout_0/jit(_bernoulli)/while"}
  ROOT %add_fusion.2 = f32[2,2]{1,0} fusion(%dot.1), kind=kLoop, metadata={op_name="jit(f)/add"}
}
"""
  ops = profile._top_level_ops(hlo)  # pylint: disable=protected-access
  matmul, rng, other = profile.PROFILE_KINDS
  assert ops == {"dot.1": (matmul, "forward"), "ynn_fusion.3": (matmul, "backward"),
                 "while.5": (rng, "forward"), "add_fusion.2": (other, "forward")}


@pytest.mark.slow
def test_cli_every_mode(tmp_path):
  """Every mode: one step per dispatch, vmapped seeds, bf16, and a ceiling for each dispatch style."""
  _, report = _bench(tmp_path, "--modes=step,scan,vmap,bf16,bare", "--seeds=2")
  rows = {(r["mode"], r["compute_dtype"]): r for r in report["rows"]}
  assert set(rows) == {("step", "float32"), ("scan", "float32"), ("vmap2", "float32"), ("bare", "float32"),
                       ("bare_step", "float32"), ("bf16", "bfloat16"), ("bare", "bfloat16")}
  _check_rows(rows, 4)
  assert rows[("vmap2", "float32")]["runs"] == 2
  for mode in ("step", "bare_step"):  # two one-step dispatches per timing
    assert rows[(mode, "float32")]["iters_per_dispatch"] == 2
  step, bare_step = rows[("step", "float32")], rows[("bare_step", "float32")]
  assert step["vs_bare"] == pytest.approx(step["images_per_s"] / bare_step["images_per_s"])


def test_cli_user_errors():
  env = subprocess_env(1)
  for flag, message in (("--models=resnet", "unknown model 'resnet'"), ("--modes=scan,fast", "unknown mode"),
                        ("--seeds=8,x", "--seeds must be"),
                        ("--num_examples=10", "--num_examples=10 is smaller than one batch of 100 (mnist_mlp)")):
    proc = subprocess.run([sys.executable, "-m", "gan_jax.bench", flag], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ FLOPs and the bare loop
def _lowered_flops(fn, *args):
  """XLA's FLOP count of `fn` (HLO cost analysis of the lowered program: no compile needed)."""
  return jax.jit(fn).lower(*args).cost_analysis()["flops"]


@pytest.mark.parametrize("model,upsample", [("mnist_mlp", None), ("dcgan32", "transposed"),
                                            ("dcgan32", "resize_conv")])
def test_bare_loop_does_the_trainers_arithmetic(model, upsample):
  """By XLA's own count, the bare loop and the trainer do the same work per iteration, and the
  analytic count (matmuls and convolutions only) matches it."""
  c = configs.bench_config(model)
  if upsample:
    c.model.g_upsample = upsample
  c.steps_per_dispatch = 1
  data = configs.synthetic_data(c, 256)
  init, steps = reference.make_bare(c, data.example_shape, 256)
  bare = _lowered_flops(steps, init(0), data.arrays)
  gan = build.build_gan(c, data)
  trainer = _lowered_flops(functools.partial(gan.train_steps, num_steps=1),
                           jax.eval_shape(lambda: gan.init(0)), data.arrays)
  assert trainer == pytest.approx(bare, rel=0.01)
  assert flops.flops_per_iteration(c, data.example_shape) == pytest.approx(bare, rel=0.02)


def test_flop_formulas():
  mnist = configs.bench_config("mnist_mlp")
  g = 2 * (100 * 1200 + 1200 * 1200 + 1200 * 784)
  d = 2 * (784 * 1200 + 240 * 1200 + 240)
  g1, d1 = 2 * 100 * 1200, 2 * 784 * 1200
  assert flops.flops_per_iteration(mnist, (784,)) == 100 * (3 * g - g1 + 7 * d - 2 * d1)
  alternating = configs.bench_config("mnist_mlp")
  alternating.update_mode = "alternating"
  assert flops.flops_per_iteration(alternating, (784,)) == 100 * (4 * g - g1 + 8 * d - 2 * d1)
  # Taps that read real pixels: a 4x4 stride-2 conv loses one tap at each border, a 3x3 stride-1
  # conv one, and a 4x4 stride-2 transposed conv reads each input pixel 4 - (border) times.
  assert flops._taps(32, 4, 2) == 16 * 4 - 2  # pylint: disable=protected-access
  assert flops._taps(8, 3, 1) == 8 * 3 - 2  # pylint: disable=protected-access
  assert flops._taps(4, 4, 2, transpose=True) == 4 * 4 - 2  # pylint: disable=protected-access
  macs = flops.layer_macs(configs.bench_config("dcgan32"), (32, 32, 3))
  assert macs["g"][0] == 100 * 4 * 4 * 256 and macs["d"][-1] == 4 * 4 * 256
  assert macs["d"][0] == 62 * 62 * 3 * 64
  quick = configs.bench_config("dcgan32", quick=True)
  assert quick.model.g_channels == (64, 32, 16) and quick.batch_size == configs.QUICK_DCGAN_BATCH


# ------------------------------------------------------------------ no recompilation
class _CompileLog(logging.Handler):
  """Collects the names of functions JAX compiles (from `jax.log_compiles` messages)."""

  def __init__(self):
    super().__init__()
    self.names = []

  def emit(self, record):
    msg = record.getMessage()
    if msg.startswith("Finished XLA compilation of "):
      self.names.append(msg.split(" of ", 1)[1].split(" in ")[0])


@pytest.mark.parametrize("log_every,programs", [(2, 1), (4, 2)])
def test_trainer_compiles_its_step_once(tmp_path, log_every, programs):
  """Six dispatches with logs, sample grids and checkpoints in between: after the first dispatch
  compiles the update, nothing compiles twice (sampling included). With a log every other dispatch,
  the dispatches in between run a second program, without the gradient norms, compiled once."""
  c = load_config("digits", "smoke")
  c.parallel.mode = "none"
  c.model.g_hidden, c.model.d_hidden, c.model.noise_dim = (16,), (8,), 4
  c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 12, 2, log_every, 4, 6
  c.num_samples = 4
  handler = _CompileLog()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      summary = train.train_and_evaluate(c, str(tmp_path))
  finally:
    logger.removeHandler(handler)
  assert summary["step"] == 12
  names = handler.names
  assert names.count("jit(train_steps)") == programs, names
  after = [n for n in names[names.index("jit(train_steps)"):] if n != "jit(train_steps)"]
  assert len(after) == len(set(after)), after


def test_runner_donates_state_and_never_calls_the_host(tmp_path):
  """The multi-step program consumes its input state (donated buffers, no copy) and contains no host
  callback, infeed or outfeed: nothing inside the scanned loop waits on Python."""
  del tmp_path
  c = load_config("digits", "smoke")
  c.parallel.mode = "none"
  c.model.g_hidden, c.model.d_hidden, c.model.noise_dim = (16,), (8,), 4
  data, gan, state = build.setup(c)
  runner = parallel.Runner(gan, "none")
  state, arrays = runner.put(state), runner.put(data.arrays)
  compiled = runner.compiled(state, arrays, 3)
  hlo = compiled.as_text().lower()
  assert "while" in hlo  # the scanned loop is in this program...
  for host in ("callback", "outfeed", "infeed", "send(", "recv("):  # ...and never leaves the device
    assert host not in hlo, host
  new_state, metrics = runner.run(state, arrays, 3)
  jax.block_until_ready(metrics)
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state))
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(new_state))


def test_grad_norm_cost_script_refuses_a_bad_round_count():
  proc = subprocess.run([sys.executable, os.path.join("experiments", "perf", "grad_norm_cost.py"), "x"], cwd=REPO,
                        env=subprocess_env(1), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: ") and "positive integer" in proc.stderr and "Traceback" not in proc.stderr
  proc = subprocess.run([sys.executable, os.path.join("experiments", "perf", "grad_norm_cost.py"), "--help"],
                        cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and "What the gradient-norm metrics cost" in proc.stdout


def test_reproduce_script_answers_help_and_refuses_an_option():
  script = os.path.join("experiments", "paper", "reproduce_mnist.sh")
  proc = subprocess.run(["bash", script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0 and "reproduce_mnist.sh [DATA_DIR] [RUN_DIR]" in proc.stdout, proc.stderr
  proc = subprocess.run(["bash", script, "--data=x"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2 and proc.stderr.startswith("error: unknown option --data=x")
