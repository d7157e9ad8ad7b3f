"""Every shell command in README.md and docs/*.md is run, so that none goes stale.

The convention (docs/README.md, "Commands in these docs"): every ```bash block is a script that this
test runs with `bash -e -o pipefail`, in the order of the page, in one sandbox per page (a page is
self-contained: a block may use what an earlier block of the same page trained), after these
substitutions, which turn training into its seconds-long "smoke" form:

  setup       `python3 -m venv .venv && . .venv/bin/activate && ` is dropped and `pip install ...`
              is not run: CI's fresh-machine command (.ci/run) installs `.[test]`; the extras a
              `pip install -e '.[EXTRA]'` names must exist in pyproject.toml.
  pytest      the exact command of .ci/run is what CI runs, so it is not run again here; any other
              `python -m pytest ...` is checked without running it (running the suite inside the
              suite would recurse): its test files and names exist, and its `-m` markers are
              registered and used by those files.
  configs     `--config=FILE.py` and `--sweep=FILE.py` without an argument get `:smoke` (not for
              `gan_jax.paper.*`, whose `--config` takes none);
              `--config.{num_steps,steps_per_dispatch,log_every,sample_every,checkpoint_every}=...`
              overrides are dropped (the smoke variant sets them).
  commands    `python -m MODULE` of the modules in `SMOKE_FLAGS` gets the flags listed there
              (fewer samples, steps or repeats); absl flags given later win. A block whose check
              form repeats an earlier block of the page is not run twice.
  paths       the sandbox holds links to the repository's `experiments/`, `gan_jax/`, `tests/`, ...
              (not `docs/` or `runs/`, which commands write); `/tmp/` is the sandbox's `tmp/`;
              `$GAN_JAX_DATA` is the sandbox's `data/`, where a page that mentions MNIST finds
              synthetic MNIST-format IDX files in `mnist/` (random pixels, 50,500 training and 1,000
              test images), so nothing is downloaded; `~/gan_jax_data/mnist` and `/path/to/mnist`
              name that folder too. A command naming `../shared` is refused.

The HTML comment on the line before a block (blank lines between are allowed) changes that:
  `<!-- not run in CI: REASON -->`   the block is not run (it needs a GPU, a TPU, a cluster, the
                                      network; REASON says which);
  `<!-- CI expects exit N -->`       the block must exit with status N, with one `error: ...` line
                                      on stderr and no traceback (a documented mistake).
Other fences that look like shell (```sh, ```shell, ```console) are refused: commands go in ```bash
blocks, transcripts and output in plain ``` or ```text blocks.

`python` is the interpreter running the tests. The sandbox's processes see 1 CPU device, `--xla_backend_optimization_level=0` and a persistent
compilation cache shared with the notebook tests, as everything here is compile-bound.
"""

import dataclasses
import glob
import os
import re
import resource
import shlex
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest

from conftest import REPO, subprocess_env

DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
SETUP_PREFIX = re.compile(r"python3? -m venv \S+ && \. \S+/bin/activate && ")
PIP_INSTALL = re.compile(r"^(?:pip3?|python3? -m pip) install\b(?P<args>[^;&|#]*)(?P<rest>.*)$")
LOOP_KEYS = ("num_steps", "steps_per_dispatch", "log_every", "sample_every", "checkpoint_every")
# An argument: quoted strings and characters that are not shell operators or spaces.
ARG = r"""(?:'[^']*'|"[^"]*"|[^\s;&|#'"])+"""
SMOKE_FLAGS = {
    "gan_jax.paper.table1": "--num_samples=200 --num_validation=100 --num_test=200 --num_centroids=10",
    "gan_jax.paper.trajectory": "--num_samples=200 --num_validation=100 --num_test=200",
    "gan_jax.paper.figure1": "--steps_a=20 --steps_d=20 --steps_g=5 --steps_end=20",
    "gan_jax.evaluation.parzen": "--num_validation=100 --num_test=200",
    "gan_jax.bench.vmap": "--members=8 --steps=5",  # 8: a multiple of any --devices on a page
    "gan_jax.bench": "--models=mnist_mlp --modes=scan --seeds=2 --repeats=1 --steps_per_dispatch=2 "
                     "--num_examples=1000",
}
# Where the docs say MNIST lies (the default data folder); in the check, synthetic IDX files.
MNIST_PATHS = ("~/gan_jax_data/mnist", "$GAN_JAX_DATA/mnist", "/path/to/mnist")
NOT_RUN = re.compile(r"<!--\s*not run in CI:\s*(?P<reason>.*?)\s*-->")
EXPECT = re.compile(r"<!--\s*CI expects exit (?P<code>\d+)\s*-->")
TIMEOUT_S = 600


@dataclasses.dataclass
class Block:
  """One fenced code block of a Markdown file."""

  path: str
  line: int  # 1-based line of the opening fence
  lang: str
  text: str
  marker: str  # the HTML comment right before the block, or ''

  @property
  def where(self) -> str:
    return f"{os.path.relpath(self.path, REPO)}:{self.line}"


def parse_blocks(path: str) -> list[Block]:
  """The fenced code blocks of a Markdown file, with the comment (if any) right before each."""
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  blocks, i = [], 0
  while i < len(lines):
    m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
    if not m:
      i += 1
      continue
    indent, fence, lang = m.groups()
    j = i + 1
    while j < len(lines) and not lines[j].strip().startswith(fence):
      j += 1
    k = i - 1
    while k >= 0 and not lines[k].strip():
      k -= 1
    marker = lines[k].strip() if k >= 0 and lines[k].strip().startswith("<!--") else ""
    body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:j])
    blocks.append(Block(path, i + 1, lang.lower(), body, marker))
    i = j + 1
  return blocks


def all_blocks() -> list[Block]:
  return [b for path in DOCS for b in parse_blocks(path)]


def ci_test_command() -> str:
  """The pytest command of .ci/run (its last line, after the setup prefix)."""
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    last = [line.strip() for line in f if line.strip() and not line.startswith("#")][-1]
  return last.split(" && ")[-1]


def pyproject_extras() -> set:
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    return set(tomllib.load(f)["project"].get("optional-dependencies", {}))


def _join_continuations(text: str) -> list[str]:
  out, current = [], ""
  for line in text.splitlines():
    if line.rstrip().endswith("\\"):
      current += line.rstrip()[:-1] + " "
    else:
      out.append(current + line)
      current = ""
  if current:
    out.append(current)
  return out


def check_form(text: str, sandbox: str) -> tuple[str, list[str]]:
  """The script the test runs for a block's `text`, and the problems found without running it.

  Args:
    text: the block's commands.
    sandbox: the folder the script runs in.

  Returns:
    (script, problems); the script is '' when nothing is left to run.
  """
  problems, lines = [], []
  ci = ci_test_command()
  for line in _join_continuations(text):
    line = SETUP_PREFIX.sub("", line)
    stripped = line.strip()
    pip = PIP_INSTALL.match(stripped)
    if pip:
      for extra in re.findall(r"\.\[([\w,-]+)\]", pip.group("args")):
        for name in extra.split(","):
          if name not in pyproject_extras():
            problems.append(f"pip install names the extra {name!r}, which pyproject.toml does not define")
      line = pip.group("rest").strip()
      line = re.sub(r"^(&&|;)\s*", "", line)
      stripped = line.strip()
    if stripped == ci:
      continue  # CI runs exactly this
    if re.match(r"python3? -m pytest\b", stripped):
      problems += check_pytest_command(stripped)
      continue
    if not re.search(r"-m gan_jax\.paper\.", line):
      line = re.sub(r"(--(?:config|sweep)=)([^\s:'\"]+\.py)(?=[\s'\";&|]|$)", r"\1\2:smoke", line)
    line = re.sub(rf"\s--config\.(?:{'|'.join(LOOP_KEYS)})={ARG}", "", line)
    for module, flags in SMOKE_FLAGS.items():
      line = re.sub(rf"(-m {re.escape(module)}(?![\w.])(?:\s+{ARG})*)", lambda m, f=flags: f"{m.group(1)} {f}", line)
    line = line.replace("/tmp/", os.path.join(sandbox, "tmp") + "/")
    if "../shared" in line:
      problems.append("a command names ../shared, which a user's machine does not have")
    for path in MNIST_PATHS:
      line = line.replace(path, os.path.join(os.path.dirname(sandbox), "data", "mnist"))
    lines.append(line)
  script = "\n".join(lines).strip()
  if not any(line.strip() and not line.strip().startswith("#") for line in lines):
    script = ""
  return script, problems


def check_pytest_command(command: str) -> list[str]:
  """Problems with a `python -m pytest ...` command, found without running it: the test files and
  test names it gives must exist, and a `-m` expression must name registered markers that those files
  use. (Running the suite from inside the suite would recurse; CI runs it.)"""
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    registered = {m.split(":")[0].strip() for m in tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]}
  args = shlex.split(command.split("#")[0])[3:]
  problems, paths, markers = [], [], []
  for i, arg in enumerate(args):
    if arg == "-m" and i + 1 < len(args):
      markers = [w for w in re.findall(r"[A-Za-z_]\w*", args[i + 1]) if w not in ("and", "or", "not")]
    elif arg.startswith("tests"):
      path, _, name = arg.partition("::")
      if not os.path.exists(os.path.join(REPO, path)):
        problems.append(f"pytest: {path} does not exist")
        continue
      paths.append(path)
      if name and os.path.isfile(os.path.join(REPO, path)):
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
          if f"def {name.split('[')[0]}(" not in f.read():
            problems.append(f"pytest: {path} has no test {name}")
  for marker in markers:
    if marker not in registered:
      problems.append(f"pytest: marker {marker!r} is not registered in pyproject.toml")
      continue
    files = [p for path in paths for p in ([os.path.join(REPO, path)] if path.endswith(".py") else
                                           glob.glob(os.path.join(REPO, path, "**", "test_*.py"), recursive=True))]
    files = files or glob.glob(os.path.join(REPO, "tests", "test_*.py"))
    if not any(f"@pytest.mark.{marker}" in open(f, encoding="utf-8").read() for f in files):
      problems.append(f"pytest: -m {marker} selects no test in {paths or ['tests']}")
  return problems


# ---------------------------------------------------------------------------- the sandbox
def _idx(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_synthetic_mnist(folder: str, num_train: int = 50_500, num_test: int = 1_000):
  """MNIST-format IDX files of random 28x28 images (uncompressed)."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
      f.write(_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
      f.write(_idx(rng.integers(0, 10, (n,), dtype=np.uint8)))


def compile_cache_dir(tmp_path_factory) -> str:
  """One persistent compilation cache for the session (shared by the xdist workers)."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  return str(base / "jax_compile_cache")


def sandbox_env(cache_dir: str) -> dict:
  env = subprocess_env(1)
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  env.update(JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("PYTEST_XDIST_WORKER", None)
  env.pop("PYTEST_CURRENT_TEST", None)
  return env


def make_sandbox(root, cache_dir: str, with_mnist: bool) -> tuple[str, dict]:
  """(folder to run in, environment): links to the repository, a tmp/, synthetic MNIST if asked."""
  repo = root / "repo"
  repo.mkdir()
  for name in os.listdir(REPO):
    if name in ("docs", "runs", ".venv", ".git", ".pytest_cache") or name.endswith(".egg-info"):
      continue
    os.symlink(os.path.join(REPO, name), repo / name)
  (repo / "tmp").mkdir()
  if with_mnist:
    write_synthetic_mnist(str(root / "data" / "mnist"))
  env = sandbox_env(cache_dir)
  env["GAN_JAX_DATA"] = str(root / "data")  # the default data folder: commands may rely on it
  return str(repo), env


# ---------------------------------------------------------------------------- the tests
def test_every_block_is_bash_run_or_marked():
  blocks = all_blocks()
  assert any(b.lang == "bash" for b in blocks), "no ```bash block found: is the parser broken?"
  bad = []
  for b in blocks:
    if b.lang in ("sh", "shell", "console", "zsh"):
      bad.append(f"{b.where}: a ```{b.lang} block; put commands in ```bash blocks (run by this test) "
                 "and transcripts in ``` or ```text blocks")
    if b.marker and b.lang == "bash":
      m = NOT_RUN.fullmatch(b.marker)
      if m and not m.group("reason"):
        bad.append(f"{b.where}: `not run in CI` needs a reason (a GPU, a TPU, a cluster, the network)")
      elif not m and not EXPECT.fullmatch(b.marker) and "not run" in b.marker.lower():
        bad.append(f"{b.where}: unrecognised marker {b.marker!r}; write <!-- not run in CI: REASON -->")
  assert not bad, "\n".join(bad)


def test_readme_test_command_is_what_ci_runs():
  readme = [b for b in parse_blocks(DOCS[0]) if b.lang == "bash"]
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci_line = [line.strip() for line in f if line.strip() and not line.startswith("#")][-1]
  assert ci_line in [b.text.strip() for b in readme], (
      f"README.md's test command differs from .ci/run's {ci_line!r}")


def test_check_form_substitutions(tmp_path):
  sandbox = str(tmp_path / "repo")
  script, problems = check_form(
      "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
      "python -m gan_jax.main --config=experiments/configs/digits.py --workdir=/tmp/d \\\n"
      "    --config.num_steps=6000 --config.model.g_hidden='(8, 8)'  # a comment", sandbox)
  assert not problems
  assert " ".join(script.split()) == (f"python -m gan_jax.main --config=experiments/configs/digits.py:smoke "
                                      f"--workdir={sandbox}/tmp/d --config.model.g_hidden='(8, 8)' # a comment")
  script, _ = check_form("python -m gan_jax.paper.table1 --workdir=runs/x --num_samples=10000 && echo ok", sandbox)
  assert script == ("python -m gan_jax.paper.table1 --workdir=runs/x --num_samples=10000 "
                    f"{SMOKE_FLAGS['gan_jax.paper.table1']} && echo ok")
  script, problems = check_form("pip install -e '.[cuda]'\npip install -e '.[nonexistent]'", sandbox)
  assert script == "" and problems == ["pip install names the extra 'nonexistent', which pyproject.toml "
                                       "does not define"]
  assert check_form(ci_test_command(), sandbox)[0] == ""
  assert check_form("python -m pytest tests/test_docs_commands.py::test_check_form_substitutions -q",
                    sandbox) == ("", [])
  _, problems = check_form("python -m pytest tests/test_nothing.py -m 'not fast'", sandbox)
  assert problems == ["pytest: tests/test_nothing.py does not exist",
                      "pytest: marker 'fast' is not registered in pyproject.toml"]
  _, problems = check_form("python -m pytest tests/test_docs_commands.py -m slow", sandbox)
  assert problems == ["pytest: -m slow selects no test in ['tests/test_docs_commands.py']"]
  script, _ = check_form("python -m gan_jax.main --config=experiments/configs/digits.py:smoke "
                         "--config.data.dir=/path/to/mnist", sandbox)
  assert script.endswith(f"--config.data.dir={tmp_path}/data/mnist") and ".py:smoke:" not in script
  script, _ = check_form('ARGS="--config=experiments/configs/mog_2d.py"\n'
                         "python -m gan_jax.paper.figure1 --config=experiments/configs/toy_1d.py", sandbox)
  assert script.splitlines()[0] == 'ARGS="--config=experiments/configs/mog_2d.py:smoke"'
  assert "toy_1d.py --steps_a" in script.splitlines()[1]


@pytest.mark.parametrize("doc", [os.path.relpath(p, REPO) for p in DOCS])
def test_every_docs_command_runs(doc, tmp_path, tmp_path_factory):
  """Runs every ```bash block of one page in its check form; all its failures are reported together."""
  blocks = [b for b in parse_blocks(os.path.join(REPO, doc))
            if b.lang == "bash" and not NOT_RUN.fullmatch(b.marker)]
  needs_mnist = any("mnist" in b.text.lower() for b in blocks)
  cwd, env = make_sandbox(tmp_path, compile_cache_dir(tmp_path_factory), needs_mnist)
  failures, timings, seen = [], [], set()
  for b in blocks:
    script, problems = check_form(b.text, cwd)
    failures += [f"{b.where}: {p}" for p in problems]
    if not script or (script, b.marker) in seen:
      continue  # nothing to run, or the same check as an earlier block of the page
    seen.add((script, b.marker))
    expect = EXPECT.fullmatch(b.marker)
    want = int(expect.group("code")) if expect else 0
    t0, cpu0 = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    timings.append(f"{time.perf_counter() - t0:6.1f} s wall {_children_cpu_s() - cpu0:6.1f} s CPU  {b.where}")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    wrong = proc.returncode != want
    if expect and not wrong and (len(errors) != 1 or "Traceback" in proc.stderr):
      wrong = True
    if wrong:
      failures.append(
          f"{b.where}: exit {proc.returncode}, expected {want}\n--- ran (in {cwd}):\n{script}\n"
          f"--- stdout (tail):\n{proc.stdout[-1500:]}\n--- stderr (tail):\n{proc.stderr[-2500:]}\n"
          "Fix the command, or mark the block <!-- not run in CI: REASON --> if it needs hardware or "
          "the network (docs/README.md, 'Commands in these docs').")
  print(f"{doc}:\n" + "\n".join(timings))
  assert not failures, "\n\n".join(failures)


def _children_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime
