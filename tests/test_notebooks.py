"""The notebooks run top to bottom in small mode, executed by a real notebook runner, as CI does.

Each notebook is executed by nbclient in a fresh Jupyter kernel ('python3': the ipykernel of the
interpreter running the tests) with `GAN_JAX_SMALL=1`, one CPU device, fast compilation and a
persistent compilation cache shared with tests/test_docs_commands.py. A failing cell fails the test
with the cell's source and its traceback. Beyond "no cell failed", each notebook must show what it
promises (its pictures and tables). The notebooks are stored without outputs.
"""

import os
import resource
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import REPO, subprocess_env

NOTEBOOKS_DIR = os.path.join(REPO, "notebooks")
CELL_TIMEOUT_S = 600
# notebook -> (minimum number of PNG outputs, texts that its outputs must contain)
EXPECTED = {
    "01_quickstart.ipynb": (6, ["parallel mode", "compiled and ran the first", "modes covered",
                                "parameters' SHA-256", "samples.png"]),
    "02_paper_figures.ipynb": (3, ["D* (Proposition 1)", "Table 1: Parzen window-based log-likelihood",
                                   "Adversarial nets | 225 ± 2", "median squared distance"]),
    "03_ablation.ipynb": (4, ["12 runs in 4 cells, 2 vmapped programs", "'finished': True",
                              "mean ± sample std over seeds", "modes covered"]),
}


def _kernel_env(tmp_path_factory) -> dict:
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # one cache for the session's workers
  env = subprocess_env(1)
  env.update(GAN_JAX_SMALL="1", JAX_COMPILATION_CACHE_DIR=str(base / "jax_compile_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("PYTEST_XDIST_WORKER", None)
  env.pop("PYTEST_CURRENT_TEST", None)
  return env


def _children_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once it has exited
  return usage.ru_utime + usage.ru_stime


def _output_text(nb) -> str:
  parts = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.output_type == "stream":
        parts.append(out.text)
      for mime in ("text/plain", "text/markdown"):
        parts.append(out.get("data", {}).get(mime, ""))
  return "\n".join(parts)


def _count_images(nb) -> int:
  return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_every_notebook_has_expectations():
  found = sorted(f for f in os.listdir(NOTEBOOKS_DIR) if f.endswith(".ipynb"))
  assert found == sorted(EXPECTED), f"notebooks {found} vs expectations for {sorted(EXPECTED)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_stored_without_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)
  nbformat.validate(nb)
  dirty = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
  assert not dirty, f"{name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_top_to_bottom_in_small_mode(name, tmp_path_factory):
  nb = nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)
  client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                          resources={"metadata": {"path": NOTEBOOKS_DIR}})
  t0, cpu0 = time.perf_counter(), _children_cpu_s()
  try:
    client.execute(env=_kernel_env(tmp_path_factory))
  except CellExecutionError as e:
    pytest.fail(f"{name}: a cell failed\n{e}", pytrace=False)
  print(f"{name}: {time.perf_counter() - t0:.1f} s wall, {_children_cpu_s() - cpu0:.1f} s CPU (kernel)")
  min_images, texts = EXPECTED[name]
  assert _count_images(nb) >= min_images, f"{name}: {_count_images(nb)} images, expected {min_images}"
  text = _output_text(nb)
  missing = [t for t in texts if t not in text]
  assert not missing, f"{name}: outputs lack {missing}; they were:\n{text[-4000:]}"
  errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
  assert not errors
