"""The accelerator agenda (`python -m gan_jax.bench.agenda`) end to end in its dry run: sections run
alone, finished ones are skipped, the training run resumes from its checkpoints, and the JSON and
Markdown reports hold the rows, the targets and the paper's numbers."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env


def _agenda(out, *args, expect=0):
  proc = subprocess.run([sys.executable, "-m", "gan_jax.bench.agenda", f"--out={out}", *args],
                        cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc


def _read(out, name):
  with open(os.path.join(out, name), encoding="utf-8") as f:
    return json.load(f) if name.endswith(".json") else f.read()


@pytest.fixture(scope="module", name="out")
def fixture_out(tmp_path_factory):
  """A dry-run agenda: the paper section alone first, then everything (the paper is skipped)."""
  out = str(tmp_path_factory.mktemp("agenda"))
  _agenda(out, "--dry_run", "--only=paper")
  assert not os.path.exists(os.path.join(out, "bench.json"))
  assert "Not run yet (`--only=bench`)" in _read(out, "agenda.md")
  proc = _agenda(out, "--dry_run")
  assert "paper: done before" in proc.stdout
  return out


def test_bench_rows_cover_the_targets_each_with_its_ceiling(out):
  rows = _read(out, "agenda.json")["sections"]["bench"]["rows"]
  got = {(r["model"], r["mode"], r["compute_dtype"]) for r in rows}
  for dtype in ("float32", "bfloat16"):
    for mode in ("step", "scan", "vmap2", "bare", "bare_step"):
      assert ("mnist_mlp", mode, dtype) in got
    assert {("dcgan32", "scan", dtype), ("dcgan32", "bare", dtype)} <= got
  for r in rows:
    assert r["iters_per_s"] > 0 and r["vs_bare"] is not None, r
    assert r["matmul_precision"] == ("float32" if (r["model"], r["compute_dtype"]) == ("mnist_mlp", "float32")
                                     else "default"), r


def test_paper_section_trains_scores_every_checkpoint_and_table1(out):
  record = _read(out, "agenda.json")
  paper = record["sections"]["paper"]
  assert paper["training"]["step"] == paper["training"]["num_steps"] == 8  # 4 epochs of 2 iterations
  assert paper["training"]["calls"] == 1 and paper["training"]["whole_run_recorded"]
  assert paper["training"]["matmul_precision"] == "float32"
  assert [p["epoch"] for p in paper["trajectory"]] == [2, 4]
  assert paper["table1_step"] == 8 and paper["table1"]["n_test"] == 100
  env = record["environment"]
  assert set(env["versions"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"}
  assert env["platform"] == "cpu" and record["dry_run"]


def test_reports_state_every_target_as_met_or_not(out):
  record, text = _read(out, "agenda.json"), _read(out, "agenda.md")
  assert len(record["targets"]) == 6
  for t in record["targets"]:
    assert t["measured"] is not None and isinstance(t["met"], bool), t
    assert f"| {t['target']} |" in text
  assert "| the 4-epoch run in <= 5 minutes |" in text
  for heading in ("## Targets", "## Benchmark", "## The paper's MNIST model", "## Sections",
                  "| Parzen LL |", "Table 1 (step 8)", "dry run"):
    assert heading in text, heading
  assert " met |" in text or " not met |" in text


def test_a_rerun_skips_finished_sections_and_resumes_the_training(out):
  os.remove(os.path.join(out, "paper.json"))  # redo the paper section: the run is already trained
  proc = _agenda(out, "--dry_run")
  assert "bench: done before" in proc.stdout
  paper = _read(out, "paper.json")
  assert [(s["resumed_from"], s["step"]) for s in paper["stretches"]] == [(0, 8), (8, 8)]
  assert paper["training"]["whole_run_recorded"] and paper["training"]["steps_trained"] == 8
  assert _read(out, "agenda.json")["targets"][4]["measured"] == paper["training"]["wall_time_s"]


def test_a_full_agenda_refuses_a_dry_runs_folder(out):
  proc = _agenda(out, expect=2)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "holds a dry agenda" in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", ["out_is_a_file", "damaged_report"])
def test_a_bad_out_folder_is_one_error_line(tmp_path, case):
  out = tmp_path / "agenda"
  if case == "out_is_a_file":
    out.write_text("a user's file")
    message = "is a file; pass a folder path"
  else:
    out.mkdir()
    (out / "agenda.json").write_text('{"dry_ru' if case == "damaged_report" else "[1, 2]")
    message = "cannot be read" if case == "damaged_report" else "is not an agenda report"
  proc = _agenda(str(out), "--dry_run", "--only=paper", expect=2)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  if case == "out_is_a_file":
    assert out.read_text() == "a user's file"


def test_help_describes_the_command():
  proc = subprocess.run([sys.executable, "-m", "gan_jax.bench.agenda", "--help"], cwd=REPO,
                        env=subprocess_env(1), capture_output=True, text=True, timeout=120, check=False)
  description, _, flag_text = proc.stdout.partition("flags:")
  assert proc.returncode == 0 and "accelerator agenda" in description
  for flag in ("--out", "--only", "--data_dir", "--[no]dry_run", "--[no]baselines"):
    assert flag in flag_text, flag
