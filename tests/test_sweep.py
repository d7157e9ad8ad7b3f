"""Sweeps (gan_jax.sweep): the grid and its checks, grouping into vmapped programs, the result tables
and the statistics report, a sweep interrupted by a signal, then resumed by the same command, and a
random search with its budget curves, its groups sharded over devices."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, subprocess_env
from gan_jax import sweep
from gan_jax.errors import UserError
from gan_jax.sweep import search

RING = os.path.join(REPO, "experiments", "ablations", "ring_losses.py")


def _sweep_file(tmp_path, spec: str) -> str:
  """A sweep file on the ring smoke config with the given get_sweep() body."""
  path = tmp_path / "my_sweep.py"
  path.write_text(textwrap.dedent(f"""\
      from gan_jax import config as config_lib

      def get_config(arg=""):
        c = config_lib.from_file({RING!r} + ":smoke")
        c.eval_every = int(arg or 0)
        return c

      def get_sweep(arg=""):
        return {spec}
      """))
  return str(path)


# ---------------------------------------------------------------------------- the grid
def test_grid_order_named_axes_and_overrides(tmp_path):
  path = _sweep_file(tmp_path, """{"axes": {"loss": {"ns": {"loss.name": "non_saturating"},
                                                      "wgan_gp": {"loss.name": "wasserstein",
                                                                  "loss.penalty": "wgan_gp"}},
                                            "model.g_hidden": [[16], [8, 8]]},
                                   "seeds": [3, 4], "metrics": ["modes_covered"]}""")
  base, spec = sweep.load_sweep_file(path)
  runs = sweep.expand(base, spec)
  assert len(runs) == 2 * 2 * 2
  assert [r.cell_name for r in runs[::2]] == [
      "loss=ns, model.g_hidden=16", "loss=ns, model.g_hidden=8x8",
      "loss=wgan_gp, model.g_hidden=16", "loss=wgan_gp, model.g_hidden=8x8"]
  r = runs[7]
  assert (r.seed, r.config.seed, r.config.loss.name, r.config.loss.penalty) == (4, 4, "wasserstein", "wgan_gp")
  assert tuple(r.config.model.g_hidden) == (8, 8) and r.config.parallel.mode == "none"
  assert base.loss.penalty == "none"  # the base config is not modified
  assert len({r.dirname for r in runs}) == len(runs)


def test_cells_that_differ_only_in_vmappable_values_share_a_program(tmp_path):
  path = _sweep_file(tmp_path, """{"axes": {"optimizer.d_lr": [1e-3, 2e-3], "k_disc_steps": [1, 2]},
                                   "seeds": [0, 1, 2]}""")
  runs = sweep.expand(*sweep.load_sweep_file(path))
  groups = sweep.plan_groups(runs, max_members=64)
  # k_disc_steps changes the program; learning rates and seeds do not.
  assert [len(g) for g in groups] == [6, 6]
  assert {r.config.k_disc_steps for r in groups[0]} == {1}
  assert [len(g) for g in sweep.plan_groups(runs, max_members=4)] == [4, 2, 4, 2]
  assert len(sweep.plan_groups(runs, max_members=1)) == 12


@pytest.mark.parametrize("spec, message", [
    ('{"axes": {"loss.nme": ["hinge"]}}', "unknown config key 'loss.nme'; every key"),
    ('{"axes": {"loss": ["hinge"]}}', "unknown config key 'loss'; it is a group; name a key inside it"),
    ('{"axes": {"k_disc_steps": []}}', "sweep axis 'k_disc_steps' has no values, so the grid is empty"),
    ('{"axes": {"k_disc_steps": [1]}, "metrics": ["fid"]}', "unknown metric 'fid' in the sweep's metrics"),
    ('{"axes": {"k_disc_steps": [1]}, "seeds": []}', "seeds must be a non-empty list of integers"),
    ('{"axes": {"seed": [1, 2]}}', "'seed' cannot be a sweep axis"),
    ('{"axes": {"k_disc_steps": ["five"]}}', "value 'five' does not fit config key 'k_disc_steps'"),
    ('{"axis": {}}', "unknown sweep entries ['axis']"),
    ('{"search": [1]}', "sweep 'search' must be a dict"),
    ('{"search": {"trials": 3}}', "sweep search has no 'space'; give"),
    ('{"search": {"space": {"optimizer.g_lr": {"kind": "uniform", "low": 0, "high": 1}}, "trials": 2, "sed": 1}}',
     "unknown sweep search entries ['sed']"),
    ('{"search": {"space": {"optimizer.g_lr": {"kind": "loguniform", "low": 0, "high": 1}}, "trials": 2}}',
     "sweep search: search space key 'optimizer.g_lr': loguniform needs positive bounds"),
    ('{"search": {"space": {"optimizer.g_lr": {"kind": "uniform", "low": 0.1, "high": 1}}, "trials": 0}}',
     "sweep search: the number of random-search trials must be a positive integer"),
    ('{"search": {"space": {"optimizer.glr": {"kind": "uniform", "low": 0.1, "high": 1}}, "trials": 2}}',
     "sweep axis 'trial' (r000): unknown config key 'optimizer.glr'"),
    ('{"search": {"space": {"seed": {"kind": "randint", "low": 0, "high": 9}}, "trials": 2}}',
     "the sweep search space cannot draw 'seed'"),
    ('{"axes": {"optimizer.g_lr": [0.1]}, "search": {"space": {"optimizer.g_lr": {"kind": "uniform", '
     '"low": 0.1, "high": 1}}, "trials": 2}}', "sweep axis 'optimizer.g_lr' and the search space both set"),
    ('{"axes": {"trial": [1]}, "search": {"space": {"optimizer.g_lr": {"kind": "uniform", "low": 0.1, '
     '"high": 1}}, "trials": 2}}', "sweep search name 'trial' must be a new axis name"),
])
def test_bad_sweeps_are_user_errors(tmp_path, spec, message):
  path = _sweep_file(tmp_path, spec)
  with pytest.raises(UserError, match=re.escape(message)) as e:
    sweep.run_sweep(path, str(tmp_path / "out"))
  assert "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "out" / "results.csv")


def test_a_metric_for_other_data_is_a_user_error(tmp_path):
  path = _sweep_file(tmp_path, '{"metrics": ["frechet_distance"]}')
  with pytest.raises(UserError, match="metric 'frechet_distance' needs image data, not toy/ring_2d"):
    sweep.run_sweep(path, str(tmp_path / "out"))


def test_command_line_errors_are_one_line(tmp_path):
  path = _sweep_file(tmp_path, '{"axes": {"loss.nme": ["hinge"]}}')
  proc = subprocess.run([sys.executable, "-m", "gan_jax.sweep", f"--sweep={path}", f"--workdir={tmp_path}"],
                        capture_output=True, text=True, env=subprocess_env(1), cwd=REPO, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: sweep axis 'loss.nme'"), proc.stderr
  assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- running and resuming
def _rows(workdir):
  with open(os.path.join(workdir, "results.csv"), encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_sweep_interrupted_by_a_signal_then_resumed(tmp_path):
  """The smoke sweep (2 cells x 2 seeds, one vmapped group per cell) is stopped by SIGINT after its
  first group, then the same sweep resumes: the first cell is kept, the second trained."""
  workdir = str(tmp_path / "ring")
  proc = subprocess.Popen([sys.executable, "-m", "gan_jax.sweep", f"--sweep={RING}:smoke",
                           f"--workdir={workdir}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=subprocess_env(1), cwd=REPO)
  first = os.path.join(workdir, "runs", "loss=non_saturating", "seed_1", sweep.RESULT_FILE)
  deadline = time.time() + 300
  while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, (out, err)
  assert "rerun the same command to resume" in out
  assert [r["cell"] for r in _rows(workdir)] == ["loss=non_saturating"] * 2
  kept = {r["seed"]: r["params_sha256"] for r in _rows(workdir)}
  assert "2 of 4 runs finished" in open(os.path.join(workdir, "results.md"), encoding="utf-8").read()

  summary = sweep.run_sweep(f"{RING}:smoke", workdir, command="test")
  assert (summary["skipped"], summary["trained"], summary["finished"]) == (2, 2, True)
  rows = _rows(workdir)
  assert [(r["cell"], r["seed"]) for r in rows] == [
      ("loss=non_saturating", "0"), ("loss=non_saturating", "1"), ("loss=wgan_gp", "0"), ("loss=wgan_gp", "1")]
  assert {r["seed"]: r["params_sha256"] for r in rows[:2]} == kept
  for r in rows:
    assert 1 <= float(r["modes_covered"]) <= 8 and 0 <= float(r["high_quality_frac"]) <= 1
    assert r["group_size"] == "2" and float(r["time_s"]) > 0
  md = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  assert "4 of 4 runs finished" in md and "| loss | modes_covered | high_quality_frac | kl_modes |" in md
  assert sum("★" in line for line in md.splitlines() if line.startswith("|")) == 1 and " ± " in md
  for png in ("results.png", "samples.png", "stats_budget_modes_covered.png", "stats_budget_kl_modes.png"):
    assert os.path.getsize(os.path.join(workdir, png)) > 5000
  # The statistics report, linked from results.md: per metric its direction, the sentence on the
  # loss axis, the cell table, the paired comparison and the budget curves (one arm per cell).
  assert "[stats.md](stats.md)" in md
  stats_md = open(os.path.join(workdir, "stats.md"), encoding="utf-8").read()
  assert "Statistics over 2 seeds (0, 1)" in stats_md and "## kl_modes (lower is better)" in stats_md
  assert "- loss, modes_covered (higher is better): " in stats_md
  assert "| non_saturating | wgan_gp | pooled | 2 |" in stats_md
  assert "### modes_covered: expected best of k runs (one arm per cell)" in stats_md
  assert "| loss=wgan_gp | 2 |" in stats_md

  # Nothing left to do: a third run trains nothing. A result from another config is trained again.
  assert sweep.run_sweep(f"{RING}:smoke", workdir, command="test")["trained"] == 0
  path = os.path.join(workdir, "runs", "loss=wgan_gp", "seed_0", sweep.RESULT_FILE)
  result = json.load(open(path, encoding="utf-8"))
  result["config"]["num_steps"] = 1
  json.dump(result, open(path, "w", encoding="utf-8"))
  base, spec = sweep.load_sweep_file(f"{RING}:smoke")
  stale = [r for r in sweep.expand(base, spec) if sweep.load_result(workdir, r) is None]
  assert [(r.cell_name, r.seed) for r in stale] == [("loss=wgan_gp", 0)]


# ---------------------------------------------------------------------------- random search
def test_random_search_sweep_with_budget_curves_on_devices(tmp_path):
  """A loss axis x 4 random configurations x 1 seed: 2 groups of 4 (the learning rates vmap), each
  sharded over 4 of the 8 test devices; the report gives one budget curve per loss."""
  path = _sweep_file(tmp_path, """{"axes": {"loss": {"ns": {"loss.name": "non_saturating"},
                                                      "hinge": {"loss.name": "hinge"}}},
                                   "search": {"space": {"optimizer.g_lr": search.loguniform(1e-3, 1e-2),
                                                        "optimizer.d_lr": search.loguniform(1e-3, 1e-2)},
                                              "trials": 4, "seed": 7},
                                   "seeds": [0], "metrics": ["modes_covered", "kl_modes"]}""")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  with open(path, "w", encoding="utf-8") as f:
    f.write("from gan_jax.sweep import search\n" + text)
  base, spec = sweep.load_sweep_file(path)
  runs = sweep.expand(base, spec)
  trials = search.sample_configs(spec["search"]["space"], 4, seed=7)
  assert [r.cell_name for r in runs[:5]] == [f"loss=ns, trial=r00{i}" for i in range(4)] + ["loss=hinge, trial=r000"]
  assert runs[6].config.optimizer.g_lr == trials["r002"]["optimizer.g_lr"]
  assert [len(g) for g in sweep.plan_groups(runs, 64)] == [4, 4]

  workdir = str(tmp_path / "out")
  summary = sweep.run_sweep(path, workdir, devices=4, command="test")
  assert (summary["trained"], summary["finished"]) == (8, True)
  rows = _rows(workdir)
  assert [r["trial"] for r in rows] == ["r000", "r001", "r002", "r003"] * 2
  assert float(rows[5]["optimizer.d_lr"]) == trials["r001"]["optimizer.d_lr"]
  result = json.load(open(os.path.join(workdir, runs[5].dirname, sweep.RESULT_FILE), encoding="utf-8"))
  assert (result["group_size"], result["devices"]) == (4, 4)
  md = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  assert "| loss | trial | optimizer.g_lr | optimizer.d_lr | modes_covered |" in md
  stats_md = open(os.path.join(workdir, "stats.md"), encoding="utf-8").read()
  assert "### modes_covered: expected best of k runs (arms: loss)" in stats_md
  assert "| loss=ns | 4 |" in stats_md and "| loss=hinge | 4 |" in stats_md and "| k=4 |" in stats_md
  assert "along trial" not in stats_md  # trials are draws, not treatments: no pairwise comparisons
  assert "- loss, kl_modes (lower is better): " in stats_md and "paired over 4 trials" in stats_md
  assert os.path.getsize(os.path.join(workdir, "stats_budget_modes_covered.png")) > 5000


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "experiments", "ablations"))
                                        if f.endswith(".py")))
@pytest.mark.parametrize("arg", ["", "smoke"])
def test_every_sweep_file_expands_into_valid_runs(name, arg):
  from gan_jax import validation  # pylint: disable=g-import-not-at-top
  path = os.path.join(REPO, "experiments", "ablations", name)
  base, spec = sweep.load_sweep_file(f"{path}:{arg}" if arg else path)
  runs = sweep.expand(base, spec)
  assert runs and len({r.dirname for r in runs}) == len(runs)
  for run in runs:
    validation.validate(run.config)


def test_bad_group_limits(tmp_path):
  path = os.path.join(REPO, "experiments", "ablations", "ring_losses.py:smoke")
  with pytest.raises(UserError, match="--max_groups must be 0 \\(all groups\\) or more, got -1"):
    sweep.run_sweep(path, str(tmp_path / "sweep"), max_groups=-1)
  with pytest.raises(UserError, match="--max_members must be >= 1, got 0"):
    sweep.run_sweep(path, str(tmp_path / "sweep"), max_members=0)
  assert not os.path.exists(tmp_path / "sweep")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "experiments", "ablations"))
                                        if f.endswith(".py")))
def test_every_sweep_file_refuses_an_unknown_argument(name):
  """A typo (`:smok`) is an error, not the full sweep."""
  path = os.path.join(REPO, "experiments", "ablations", name)
  with pytest.raises(UserError, match="unknown config argument 'smok'"):
    sweep.load_sweep_file(f"{path}:smok")


def test_evaluation_during_training_reports_each_runs_best_without_changing_training(tmp_path):
  spec = '{"axes": {"loss.name": ["hinge"]}, "seeds": [0, 1], "metrics": ["modes_covered", "kl_modes"]}'
  path = _sweep_file(tmp_path, spec)
  plain = sweep.run_sweep(path, str(tmp_path / "plain"))
  scored = sweep.run_sweep(path + ":5", str(tmp_path / "scored"))
  assert plain["finished"] and scored["finished"]
  for seed in (0, 1):
    run_dir = os.path.join("runs", "loss.name=hinge", f"seed_{seed}", sweep.RESULT_FILE)
    a = json.loads((tmp_path / "plain" / run_dir).read_text())
    b = json.loads((tmp_path / "scored" / run_dir).read_text())
    assert a["params_sha256"] == b["params_sha256"]  # the evaluations' dispatch boundaries change nothing
    assert "best_metrics" not in a and [e["step"] for e in b["eval_history"]] == [5, 10, 15, 20]
    history = {e["step"]: e["modes_covered"] for e in b["eval_history"]}
    best = b["best_metrics"]["modes_covered"]
    assert best["value"] == max(history.values()) and history[best["step"]] == best["value"]
    assert b["best_metrics"]["kl_modes"]["value"] == min(e["kl_modes"] for e in b["eval_history"])
    assert b["metrics"]["modes_covered"] == history[20]  # the final value
  assert "best modes_covered during training" in (tmp_path / "scored" / "results.md").read_text()
