"""The paper reproduction kit on tiny settings: reading a run, Table 1, the Parzen trajectory,
Figures 1-3, the nearest-neighbour search, and one clear line for each user mistake.

One module-scoped run (the digits smoke config, no training: checkpoints of initial states) serves
every test, so few programs are compiled.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env
from gan_jax.core import build
from gan_jax.run import checkpoint
from gan_jax.errors import UserError
from gan_jax.evaluation import parzen
from gan_jax.paper import figure1, figures, nearest, run as run_lib, table1, theory, trajectory

SIZES = {"num_samples": 200, "num_validation": 100, "num_test": 100}


def _save(workdir, steps_and_states, config):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=10)
  for step, state in steps_and_states:
    ckpt.save(step, state.replace(step=np.int32(step)), config)
  ckpt.close()


def _shift_generator(state, delta):
  g = dict(state.g_params)
  g["output"] = dict(g["output"], bias=g["output"]["bias"] + delta)
  return state.replace(g_params=g)


@pytest.fixture(scope="module", name="run")
def fixture_run(tmp_path_factory):
  """A digits workdir with checkpoints at steps 20 and 40 holding different generators."""
  config = load_config("digits", "smoke")
  config.parallel.mode = "none"
  _, _, state = build.setup(config)
  workdir = str(tmp_path_factory.mktemp("run"))
  _save(workdir, [(20, state), (40, _shift_generator(state, -1.0))], config)
  return workdir, config, state


def test_reader_lists_finished_checkpoints_only_and_leaves_unfinished_ones_alone(run):
  workdir, _, state = run
  unfinished = os.path.join(workdir, "checkpoints", "60.orbax-checkpoint-tmp-123")
  os.makedirs(unfinished, exist_ok=True)  # what a live run is writing
  try:
    reader = run_lib.RunReader(workdir)
    assert reader.steps() == [20, 40] and reader.latest_or(None) == 40
    restored = reader.restore(40)
    assert int(restored.step) == 40
    np.testing.assert_array_equal(restored.g_params["output"]["bias"],
                                  np.asarray(state.g_params["output"]["bias"]) - 1.0)
    assert os.path.isdir(unfinished)
    with pytest.raises(UserError, match="no finished checkpoint at step 30"):
      reader.restore(30)
  finally:
    os.rmdir(unfinished)


def test_paper_table_has_the_four_paper_rows_and_the_measured_ones():
  result = {"mean": 211.04, "std_err": 2.01, "sigma": 0.1668, "n_test": 10000}
  base = {"training_images": {"mean": 241.2, "std_err": 2.0, "sigma": 0.17, "n_samples": 10000},
          "kmeans_centroids": {"mean": 279.4, "std_err": 2.1, "sigma": 0.13, "n_samples": 1000}}
  info = {"dataset": "mnist", "step": 1000000, "epoch": 2000, "workdir": "runs/x", "n_samples": 10000,
          "n_validation": 1000, "command": "python -m gan_jax.paper.table1 --workdir=runs/x",
          "date": "2026-11-22", "device": "cpu (2 cores)", "seconds": 100}
  text = table1.format_table(result, base, info)
  for row in ("| DBN | 138 ± 2 |", "| Stacked CAE | 121 ± 1.6 |", "| Deep GSN | 214 ± 1.1 |",
              "| Adversarial nets | 225 ± 2 |", "**211.0 ± 2.0**", "| 241.2 ± 2.0 |", "| 279.4 ± 2.1 |",
              "σ = 0.167", "step 1,000,000 (epoch 2000)", "higher than them"):
    assert row in text, row


def test_table1_scores_the_checkpoint_reproducibly_with_baselines(run, tmp_path):
  workdir, _, _ = run
  logs = []
  out = str(tmp_path / "table1.md")
  record = table1.run_table1(workdir, step=40, out=out, num_centroids=20, log=logs.append, **SIZES)
  assert open(out, encoding="utf-8").read() == record["markdown"]
  assert "**Adversarial nets, this run**" in record["markdown"] and "DBN" not in record["markdown"]
  # The saved samples re-scored by the Parzen module give the same number: checkable independently.
  samples = np.load(record["samples"])
  assert samples.shape == (200, 64) and 0 <= samples.min() and samples.max() <= 1
  reader = run_lib.RunReader(workdir)
  validation, test = reader.eval_splits(100, 100)
  again = parzen.evaluate(samples, validation, test)
  assert record["result"]["mean"] == pytest.approx(again.mean, abs=1e-4)
  assert record["result"]["sigma"] == again.sigma
  base = record["baselines"]
  assert base["training_images"]["n_samples"] == 200 and base["kmeans_centroids"]["n_samples"] == 20
  assert base["training_images"]["mean"] > record["result"]["mean"]  # an untrained G is worse than data
  saved = json.load(open(os.path.join(workdir, "paper", "table1.json"), encoding="utf-8"))
  assert saved["result"] == record["result"] and saved["step"] == 40


def test_trajectory_scores_each_checkpoint_once_and_resumes(run):
  workdir, config, state = run
  logs = []
  first = trajectory.run_trajectory(workdir, log=logs.append, **SIZES)
  assert sorted(first["points"]) == [20, 40]
  assert first["points"][20]["mean"] != first["points"][40]["mean"]
  assert first["points"][40]["epoch"] == round(40 / 15, 2)  # digits: 1,500 images, batch 100
  assert os.path.getsize(first["png"]) > 10000
  _save(workdir, [(60, _shift_generator(state, 1.0))], config)  # training went on
  logs.clear()
  second = trajectory.run_trajectory(workdir, log=logs.append, **SIZES)
  assert "2 checkpoints already scored, 1 to score" in logs[0]
  assert sorted(second["points"]) == [20, 40, 60]
  assert second["points"][40] == first["points"][40]
  saved = json.load(open(first["json"], encoding="utf-8"))
  assert sorted(saved["points"], key=int) == ["20", "40", "60"]


def test_nearest_neighbours_match_brute_force():
  rng = np.random.default_rng(0)
  train_x, queries = rng.random((1000, 30)), rng.random((7, 30))
  queries[3] = train_x[517]  # an exact copy is found at distance 0
  idx, dist = nearest.nearest_neighbours(queries, train_x, chunk=96)  # 1000 is not a multiple of 96
  full = ((queries[:, None, :] - train_x[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(idx, full.argmin(1))
  np.testing.assert_allclose(dist, full.min(1), rtol=1e-6)  # float32 inputs
  assert idx[3] == 517 and dist[3] == 0


def test_figures_2_and_3_show_samples_with_their_nearest_training_example(run, tmp_path):
  workdir, _, _ = run
  record = figures.run_figures(workdir, str(tmp_path), step=40, rows=2, cols=3, log=lambda _: None,
                               command="python -m gan_jax.paper.figures ...")
  assert record["date"] and record["device"] and record["command"].startswith("python -m gan_jax.paper.figures")
  f2 = record["figure2"]
  reader = run_lib.RunReader(workdir)
  samples = reader.samples(reader.restore(40), 6, seed=0)
  train_x = reader.training_images().reshape(-1, 64)
  expected = [int(((train_x - s) ** 2).sum(1).argmin()) for s in samples[2::3]]  # each row's last
  assert f2["neighbour_index"] == expected
  import matplotlib.image  # pylint: disable=import-outside-toplevel
  for name in ("figure2.png", "figure3.png"):
    image = matplotlib.image.imread(str(tmp_path / name))
    assert image.shape[0] > 200 and image.shape[1] > 400, name
  # The framed neighbour column is yellow: some pixels are (1, 0.8, 0).
  image = matplotlib.image.imread(str(tmp_path / "figure2.png"))[..., :3]
  assert np.any(np.all(np.abs(image - [1.0, 0.8, 0.0]) < 0.02, axis=-1))


def test_figure1_trains_d_to_d_star_and_ends_with_d_near_half(tmp_path):
  config = figure1.load_config(os.path.join(REPO, "experiments", "paper", "figure1_1d.py") + ":smoke")
  config.parallel.mode = "none"
  out = str(tmp_path / "figure1.png")
  record = figure1.make_figure1(config, out, steps_a=400, steps_d=2000, steps_g=20, steps_end=1600,
                                log=lambda _: None, d_tolerance=0.1, half_tolerance=0.1)
  panels = record["panels"]
  assert sorted(panels) == ["a", "b", "c", "d"]
  # Proposition 1 through the figure's own measurements: D trained alone reaches D* on the support.
  assert record["checks"]["d_matches_d_star"] and panels["b"]["max_abs_d_minus_d_star"] <= 0.1
  assert record["steps_d"] == record["d_steps_trace"][-1][0] <= 2000
  assert panels["b"]["max_abs_d_minus_d_star"] < panels["a"]["max_abs_d_minus_d_star"]
  assert panels["b"]["jsd"] == panels["a"]["jsd"]  # G was frozen
  assert panels["d"]["jsd"] < panels["a"]["jsd"]
  lo, hi = panels["d"]["support_x"]
  assert lo < 2.0 < hi and panels["d"]["support_points"] > 100
  import matplotlib.image  # pylint: disable=import-outside-toplevel
  image = matplotlib.image.imread(out)
  assert image.shape[1] > 3 * image.shape[0]  # four panels side by side
  saved = json.load(open(out[:-4] + ".json", encoding="utf-8"))
  assert saved["panels"]["b"] == panels["b"] and saved["checks"] == record["checks"]


def test_figure1_measures_p_g_exactly_and_takes_d_star_from_theory():
  """p_g of an affine G of Gaussian noise is N(b, a^2); the figure's p_g, D* and JSD agree with
  that density through gan_jax.paper.theory."""
  from gan_jax.core import build  # pylint: disable=import-outside-toplevel
  config = figure1.load_config(os.path.join(REPO, "experiments", "paper", "figure1_1d.py") + ":smoke")
  config.parallel.mode = "none"
  _, gan, state = build.setup(config)
  g = {"output": {"kernel": np.array([[0.6]], np.float32), "bias": np.array([1.5], np.float32)}}
  edges = np.linspace(-1.0, 5.0, 601)
  m = figure1.measure(gan, g, state.d_params, edges, "gaussian")
  p_g = np.exp(theory.gaussian_log_pdf(m["grid"], 1.5, 0.6))
  np.testing.assert_allclose(m["p_g"], p_g, atol=2e-3 * p_g.max())
  np.testing.assert_allclose(m["d_star"], theory.optimal_discriminator(m["p_data"], m["p_g"]))
  jsd = theory.jensen_shannon(lambda x: theory.gaussian_log_pdf(x, 2.0, 0.5),
                              lambda x: theory.gaussian_log_pdf(x, 1.5, 0.6), -1.0, 5.0)
  assert m["jsd"] == pytest.approx(jsd, abs=1e-3)
  assert m["g_mean"] == pytest.approx(1.5, abs=1e-3) and m["g_std"] == pytest.approx(0.6, abs=1e-3)


@pytest.mark.parametrize("precision,marker", [("float32", "operand_precision={highest,highest}"),
                                              ("tensorfloat32", "operand_precision={high,high}"),
                                              ("default", None)])
def test_precision_reaches_the_compiled_training_program(precision, marker, tmp_path, monkeypatch):
  from gan_jax import parallel, train  # pylint: disable=import-outside-toplevel
  texts = set()
  compiled = parallel.Runner.compiled

  def spy(self, *args, **kwargs):
    fn = compiled(self, *args, **kwargs)
    texts.add(fn.as_text())
    return fn

  monkeypatch.setattr(parallel.Runner, "compiled", spy)
  config = load_config("toy_1d", "smoke")
  config.parallel.mode, config.num_steps, config.precision = "none", 10, precision
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["matmul_precision"] == precision and texts
  for text in texts:  # every dot of the step (G's and D's dense layers, forward and backward)
    dots = [line for line in text.splitlines() if " dot(" in line]
    assert dots
    if marker:
      assert all(marker in line for line in dots), dots[0]
    else:
      assert not any("operand_precision" in line for line in dots), dots[0]


def test_paper_configs_pin_float32_matmuls():
  for name in ("mnist_paper", "cifar10_fc", "cifar10_conv"):
    assert load_config(name).precision == "float32", name
  assert load_config("toy_1d").precision == "default"


@pytest.mark.parametrize("module,args,message", [
    ("table1", ["--workdir=/nonexistent/run"], "--workdir=/nonexistent/run does not exist"),
    ("figure1", ["--out=figure1.txt"], "must name a .png file"),
    ("figure1", [f"--out={__file__}/figure1.png"], "cannot be made: " + __file__ + " is a file"),
    ("table1", ["--workdir=/nonexistent/run", "--num_centroids=0"], "--num_centroids must be >= 1, got 0"),
    ("trajectory", ["--workdir=/nonexistent/run", "--num_samples=-1"], "--num_samples, --num_validation"),
    ("main", ["--config=experiments/configs/toy_1d.py:smoke", "--workdir=runs/never_written",
              "--config.precision=float64"], "config key precision must be one of default, float32"),
])
def test_user_mistakes_are_one_line(module, args, message):
  module = "gan_jax.main" if module == "main" else f"gan_jax.paper.{module}"
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=subprocess_env(1), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-1000:]
  assert not os.path.exists(os.path.join(REPO, "runs", "never_written"))


def test_reader_refuses_an_empty_workdir(tmp_path):
  with pytest.raises(UserError, match="no finished checkpoint"):
    run_lib.RunReader(str(tmp_path))


def test_a_damaged_baselines_cache_is_computed_again(tmp_path):
  from gan_jax.paper import baselines  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  train, validation, test = (rng.random((n, 4)).astype(np.float32) for n in (40, 10, 10))
  cache = tmp_path / "parzen_baselines.json"
  cache.write_text('{"key": {"data": "x"}, "resu')  # a write cut short
  lines = []
  first = baselines.score(train, validation, test, str(cache), {"data": "x"}, num_images=20, num_centroids=5,
                          log=lines.append)
  assert any("cannot be read" in line for line in lines) and set(first) == {baselines.TRAINING_IMAGES,
                                                                             baselines.KMEANS}
  lines.clear()
  assert baselines.score(train, validation, test, str(cache), {"data": "x"}, num_images=20, num_centroids=5,
                         log=lines.append) == first
  assert any("reusing" in line for line in lines)  # the recomputed cache was written whole
