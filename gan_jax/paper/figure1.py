"""Figure 1 of the paper, drawn from a real 1-D GAN: p_data, p_g, D and the mapping z -> x = G(z).

  python -m gan_jax.paper.figure1 --out=docs/figures/figure1.png

Trains a 1-D GAN (default `experiments/paper/figure1_1d.py`, a toy_1d.py variant that settles;
z uniform on [-sqrt 3, sqrt 3], p_data Gaussian) and draws four panels from snapshots of that training, with measured quantities only:

  (a) after --steps_a ordinary iterations: p_g near p_data, D a partially accurate classifier;
  (b) then D alone trained --steps_d steps against the frozen G: D next to the computed
      D* = p_data / (p_data + p_g) of Proposition 1;
  (c) then G alone updated --steps_g steps against that D: G(z) flows towards where D says "data";
  (d) then ordinary training for --steps_end iterations: p_g ~ p_data and D ~ 1/2.

In every panel: p_data exact (black dotted), p_g estimated from 20,000 samples of G by a Gaussian
kernel density estimate (green), D(x) (blue dashed); below, the z line, the x line, and arrows
from evenly spaced z to G(z). Densities share one scale across panels. The measurements
(JSD(p_data, p_g), mean |D - D*| and |D - 1/2| weighted by (p_data + p_g) / 2) go to a JSON file
beside the PNG.
"""

import functools
import json
import math
import os
import sys
import time

import numpy as np

from gan_jax.errors import UserError
from gan_jax.run import files

PANELS = ("a", "b", "c", "d")
_CAPTIONS = {
    "a": "(a) near convergence:\nD partially accurate",
    "b": "(b) D trained against\nthe frozen G: D → D*",
    "c": "(c) after G updates:\nG(z) flows to 'data'",
    "d": "(d) end of training:\np_g ≈ p_data, D ≈ 1/2",
}


def _one_player(gan, state, player: str, num_steps: int):
  """`num_steps` updates of one network (`player` 'd' or 'g') with the other frozen."""
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  toy = gan.sampler.toy
  base = jax.random.fold_in(state.key, 7919 if player == "d" else 7927)

  def body(s, i):
    kx, kz = jax.random.split(jax.random.fold_in(base, i))
    x = jax.vmap(toy.sample)(jax.random.split(kx, gan.batch_size))
    z = gan.noise_batch(kz, gan.batch_size)
    if player == "d":
      fake = gan.generate(s.g_params, z)
      loss = lambda dp: gan.loss.d(gan.discriminate(dp, x), gan.discriminate(dp, fake))
      value, grads = jax.value_and_grad(loss)(s.d_params)
      updates, opt = gan.d_tx.update(grads, s.d_opt_state, s.d_params)
      return s.replace(d_params=optax.apply_updates(s.d_params, updates), d_opt_state=opt), value
    loss = lambda gp: gan.loss.g(gan.discriminate(s.d_params, gan.generate(gp, z)))
    value, grads = jax.value_and_grad(loss)(s.g_params)
    updates, opt = gan.g_tx.update(grads, s.g_opt_state, s.g_params)
    return s.replace(g_params=optax.apply_updates(s.g_params, updates), g_opt_state=opt), value

  return jax.lax.scan(body, state, jax.numpy.arange(num_steps))


def _kde(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Gaussian kernel density estimate (Silverman's bandwidth) of 1-D samples on a grid."""
  n = len(samples)
  iqr = np.subtract(*np.percentile(samples, [75, 25]))
  scale = min(samples.std(), iqr / 1.349) if iqr > 0 else samples.std()
  bw = max(0.9 * scale * n ** -0.2, 1e-3)
  # Binned KDE: a fine histogram convolved with the kernel (exact enough, O(grid) not O(n grid)).
  edges = np.linspace(grid[0] - 5 * bw, grid[-1] + 5 * bw, 4001)
  counts, _ = np.histogram(samples, edges)
  centres = (edges[:-1] + edges[1:]) / 2
  dens = np.zeros_like(grid)
  for c, k in zip(centres[counts > 0], counts[counts > 0]):
    dens += k * np.exp(-0.5 * ((grid - c) / bw) ** 2)
  return dens / (n * bw * math.sqrt(2 * math.pi))


@functools.cache
def _programs():
  """Jitted helpers keyed by the (hashable) GAN, so each compiles once per GAN and shape."""
  import jax  # pylint: disable=import-outside-toplevel

  sample = jax.jit(lambda gan, g, key, n: gan.generate(g, gan.noise_batch(key, n)), static_argnums=(0, 3))
  generate = jax.jit(lambda gan, g, z: gan.generate(g, z), static_argnums=0)
  d_prob = jax.jit(lambda gan, d, x: jax.nn.sigmoid(gan.discriminate(d, x)), static_argnums=0)
  return sample, generate, d_prob


def measure(gan, g_params, d_params, grid: np.ndarray, seed: int, n: int = 20000,
            num_lines: int = 15) -> dict:
  """Densities, D, D* and the z -> G(z) map of one snapshot, on `grid`, plus summary numbers."""
  import jax  # pylint: disable=import-outside-toplevel

  sample, generate, d_prob = _programs()
  toy = gan.sampler.toy
  samples = np.asarray(sample(gan, g_params, jax.random.PRNGKey(seed), n))[:, 0]
  p_data = np.exp(np.asarray(toy.log_prob(grid[:, None]), np.float64))
  p_g = _kde(samples, grid)
  d = np.asarray(d_prob(gan, d_params, grid[:, None].astype(np.float32)), np.float64)
  d_star = p_data / np.maximum(p_data + p_g, 1e-300)
  m = (p_data + p_g) / 2
  dx = grid[1] - grid[0]
  weight = m / (m.sum() * dx)
  kl = lambda p: np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-300) / np.maximum(m, 1e-300)), 0)) * dx
  half = math.sqrt(3)
  z = np.linspace(-half, half, num_lines, dtype=np.float32)[:, None]
  gz = np.asarray(generate(gan, g_params, z))[:, 0]
  return {
      "grid": grid, "p_data": p_data, "p_g": p_g, "d": d, "d_star": d_star, "z": z[:, 0], "g_z": gz,
      "jsd": float(0.5 * (kl(p_data) + kl(p_g))),
      "mean_abs_d_minus_d_star": float(np.sum(weight * np.abs(d - d_star)) * dx),
      "mean_abs_d_minus_half": float(np.sum(weight * np.abs(d - 0.5)) * dx),
      "g_mean": float(samples.mean()), "g_std": float(samples.std()),
  }


def draw(panels: dict, path: str, title: str) -> str:
  """The four panels in a row, in the paper's style."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  scale = 0.9 / max(p["p_data"].max() for p in panels.values())
  fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9), dpi=120, sharey=True)
  y_x, y_z = -0.18, -0.62
  for ax, (name, p) in zip(np.atleast_1d(axes), panels.items()):
    grid = p["grid"]
    lo, hi = grid[0], grid[-1]
    ax.plot(grid, np.minimum(p["p_data"] * scale, 1.25), "k:", lw=1.8, label="p_data")
    ax.plot(grid, np.minimum(p["p_g"] * scale, 1.25), "-", color="tab:green", lw=1.6, label="p_g")
    ax.plot(grid, p["d"], "--", color="tab:blue", lw=1.6, label="D(x)")
    if name == "b":
      ax.plot(grid, p["d_star"], "-", color="tab:red", lw=1.0, alpha=0.8,
              label="D* = p_data / (p_data + p_g)")
    if name == "c" and "b" in panels:  # where G was before its updates: the flow towards the data
      ax.plot(grid, np.minimum(panels["b"]["p_g"] * scale, 1.25), "-", color="tab:green", lw=0.8,
              alpha=0.35, label="p_g before the G updates")
    for y, label in ((y_x, "x"), (y_z, "z")):
      ax.plot([lo, hi], [y, y], "k-", lw=0.8)
      ax.text(lo, y + 0.03, label, fontsize=8, style="italic")
    z_lo, z_hi = p["z"][0], p["z"][-1]
    for z, gz in zip(p["z"], p["g_z"]):
      zx = lo + (z - z_lo) / (z_hi - z_lo) * (hi - lo) * 0.9 + 0.05 * (hi - lo)
      ax.annotate("", xy=(np.clip(gz, lo, hi), y_x), xytext=(zx, y_z),
                  arrowprops={"arrowstyle": "-|>", "lw": 0.6, "color": "0.35", "mutation_scale": 6})
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.72, 1.3)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("x", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.axhline(0.5, color="0.85", lw=0.6, zorder=0)
    ax.set_title(_CAPTIONS[name], fontsize=9)
    stats = f"JSD {p['jsd']:.3f}\n|D−½| {p['mean_abs_d_minus_half']:.3f}"
    if name == "b":
      stats += f"\n|D−D*| {p['mean_abs_d_minus_d_star']:.3f}"
    ax.text(0.98, 0.98, stats, transform=ax.transAxes, ha="right", va="top", fontsize=7,
            bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
  axes[0].set_ylabel("D(x), and densities × %.2f" % scale, fontsize=8)
  handles = {}
  for ax in np.atleast_1d(axes):
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8,
             frameon=False)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.07, 1, 0.95))
  files.atomic_savefig(fig, path)
  return path


def make_figure1(config, out: str, steps_a: int, steps_d: int, steps_g: int, steps_end: int,
                 seed: int = 0, log=print) -> dict:
  """Trains the 1-D GAN through the four phases, draws `out` and writes `out`.json.

  Args:
    config: a toy_1d-style config (1-D toy data and noise).
    out: the PNG path.
    steps_a: ordinary iterations before panel (a).
    steps_d: D-only steps (G frozen) before panel (b).
    steps_g: G-only steps (D frozen) before panel (c).
    steps_end: ordinary iterations after (c), before panel (d).
    seed: the seed of the samples that estimate p_g.
    log: progress printer.

  Returns:
    The measurements per panel (without the curves) and the settings.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from gan_jax.core import build  # pylint: disable=import-outside-toplevel

  if config.data.source != "toy" or config.model.noise_dim != 1 or config.data.name not in (
      "gaussian_1d", "mixture_1d"):
    raise UserError("figure1 needs a 1-D toy config (data.source='toy', data.name='gaussian_1d' or "
                    "'mixture_1d', model.noise_dim=1), like experiments/configs/toy_1d.py")
  if min(steps_a, steps_d, steps_g, steps_end) < 1:
    raise UserError("--steps_a, --steps_d, --steps_g and --steps_end must all be >= 1")
  t0 = time.perf_counter()
  _, gan, state = build.setup(config)
  chunk = math.gcd(steps_a, steps_end)
  train_chunk = jax.jit(functools.partial(gan.train_steps, num_steps=chunk))
  one_player = jax.jit(_one_player, static_argnums=(0, 2, 3))

  def ordinary(state, n, label):
    for i in range(n // chunk):
      state, metrics = train_chunk(state, {})
      done = (i + 1) * chunk
      if i == 0 or done == n or time.perf_counter() - ordinary.last > 10:
        ordinary.last = time.perf_counter()
        log(f"{label}: {done}/{n} iterations, d_loss {float(metrics['d_loss'][-1]):.3f}, "
            f"D(G(z)) {float(metrics['d_fake'][-1]):.3f}  ({time.perf_counter() - t0:.0f} s)")
    return state
  ordinary.last = 0.0

  snapshots = {}
  state = ordinary(state, steps_a, "(a) ordinary training")
  snapshots["a"] = (state.g_params, state.d_params)
  state, losses = one_player(gan, state, "d", steps_d)
  log(f"(b) D alone: {steps_d} steps, d_loss {float(losses[-1]):.3f}")
  snapshots["b"] = (state.g_params, state.d_params)
  state, losses = one_player(gan, state, "g", steps_g)
  log(f"(c) G alone: {steps_g} steps, g_loss {float(losses[0]):.3f} -> {float(losses[-1]):.3f}")
  snapshots["c"] = (state.g_params, state.d_params)
  state = ordinary(state, steps_end, "(d) ordinary training")
  snapshots["d"] = (state.g_params, state.d_params)

  # One x range for all panels: p_data's mass and where any snapshot's G puts its samples.
  toy = gan.sampler.toy
  centres = np.asarray(toy.centers)[:, 0]
  lo, hi = centres.min() - 4 * toy.std, centres.max() + 4 * toy.std
  sample = _programs()[0]
  for g_params, _ in snapshots.values():
    s = np.asarray(sample(gan, g_params, jax.random.PRNGKey(seed), 20000))[:, 0]
    lo, hi = min(lo, np.percentile(s, 0.5)), max(hi, np.percentile(s, 99.5))
  margin = 0.05 * (hi - lo)
  grid = np.linspace(lo - margin, hi + margin, 600)
  panels = {name: measure(gan, g, d, grid, seed) for name, (g, d) in snapshots.items()}
  total = steps_a + steps_end
  dc = config.data
  p_data = (f"N({dc.mean:g}, {dc.std:g}²)" if dc.name == "gaussian_1d" else
            f"equal mixture of N(m, {dc.std:g}²), m in {tuple(dc.means)}")
  draw(panels, out, f"Figure 1, measured: a 1-D GAN, p_data = {p_data}, z ~ U[-√3, √3]; "
       f"{total:,} iterations in all")
  summary = {name: {k: v for k, v in p.items() if not isinstance(v, np.ndarray)}
             for name, p in panels.items()}
  record = {"out": out, "steps_a": steps_a, "steps_d": steps_d, "steps_g": steps_g,
            "steps_end": steps_end, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "panels": summary}
  from gan_jax.paper import run as run_lib  # pylint: disable=import-outside-toplevel
  run_lib.write_text(os.path.splitext(out)[0] + ".json", json.dumps(record, indent=2) + "\n")
  for name, p in summary.items():
    log(f"panel ({name}): JSD {p['jsd']:.4f}, mean |D - D*| {p['mean_abs_d_minus_d_star']:.4f}, "
        f"mean |D - 1/2| {p['mean_abs_d_minus_half']:.4f}, G mean {p['g_mean']:.3f} std {p['g_std']:.3f}")
  log(f"wrote {out} in {record['seconds']:.0f} s")
  return record


def default_config_path() -> str:
  """experiments/paper/figure1_1d.py of this checkout (a toy_1d.py variant that settles)."""
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.normpath(os.path.join(here, "..", "..", "experiments", "paper", "figure1_1d.py"))


def load_config(path: str):
  """`get_config()` of a config file."""
  import importlib.util  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise UserError(f"--config={path} does not exist; pass a 1-D toy config such as "
                    "experiments/configs/toy_1d.py")
  spec = importlib.util.spec_from_file_location("figure1_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  f = flags.FLAGS
  if not f.out.endswith(".png"):
    raise UserError(f"--out={f.out} must name a .png file")
  config = load_config(f.config or default_config_path())
  config.parallel.mode = "none"
  config.seed = f.seed
  make_figure1(config, f.out, f.steps_a, f.steps_d, f.steps_g, f.steps_end, f.seed)


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("out", "docs/figures/figure1.png", "Output PNG (a .json of measurements beside it).")
  flags.DEFINE_string("config", None, "A 1-D toy config (default: experiments/paper/figure1_1d.py).")
  flags.DEFINE_integer("steps_a", 1000, "Ordinary iterations before panel (a).")
  flags.DEFINE_integer("steps_d", 3000, "D-only steps (G frozen) before panel (b).")
  flags.DEFINE_integer("steps_g", 100, "G-only steps (D frozen) before panel (c).")
  flags.DEFINE_integer("steps_end", 3000, "Ordinary iterations after (c), before panel (d).")
  flags.DEFINE_integer("seed", 0, "Seeds the run and the samples.")


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=ungrouped-imports

  _define_flags()
  sys.exit(cli.run(main))
