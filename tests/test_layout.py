"""The package's shape (docs/ARCHITECTURE.md): layers that import only downwards, no import cycle,
modules short enough to read in one sitting."""

import ast
import os

from conftest import REPO

PACKAGE = os.path.join(REPO, "gan_jax")
MAX_LINES = 450

# Layer of each top-level part of gan_jax; a module may import its own part or a lower layer.
LAYERS = {
    "errors": 0, "config": 1, "cli": 1, "validation": 2,
    "models": 3, "data": 3,
    "core": 4,
    "parallel": 5, "vmap": 5,
    "run": 6,
    "evaluation": 7,
    "train": 8,
    "sweep": 9, "paper": 9,
    "bench": 10,
    "main": 11, "sample": 11, "evaluate": 11, "__init__": 11,
}


def _modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        yield (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel), path


def _imports(path: str, module: str):
  """Every gan_jax module `path` imports (at any depth of the file, lazy imports included)."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name.startswith("gan_jax"))
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      if base.startswith("gan_jax"):
        for a in node.names:
          yield f"{base}.{a.name}" if base == "gan_jax" else base


def _part(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
  parts = {_part(m) for m, _ in _modules()}
  assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_run_only_downwards():
  upward = []
  for module, path in _modules():
    for target in _imports(path, module):
      src, dst = _part(module), _part(target)
      if dst == "__init__" or src == dst:
        continue
      if LAYERS[dst] >= LAYERS[src]:
        upward.append(f"{module} -> {target}")
  assert not upward, "imports that run up or sideways a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_modules():
  names = dict(_modules())
  graph = {}
  for module, path in names.items():
    graph[module] = set()
    for target in _imports(path, module):
      while target and target not in names:  # `from pkg import name` names a module or a symbol
        target = target.rpartition(".")[0]
      if target and target != module and not module.startswith(target + "."):
        graph[module].add(target)
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if nxt.startswith(node + "."):
        continue  # a package's __init__ naming its own modules
      if state.get(nxt) == 1:
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  assert not cycles, cycles


def test_modules_are_short():
  long = {m: n for m, path in _modules() if (n := len(open(path, encoding="utf-8").readlines())) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"
