"""Figure 1 of the paper, drawn from a real 1-D GAN: p_data, p_g, D and the mapping z -> x = G(z).

  python -m gan_jax.paper.figure1 --out=docs/figures/figure1.png

Trains a 1-D GAN (default `experiments/paper/figure1_1d.py`: z ~ N(0, 1), an affine G, p_data
Gaussian) and draws four panels from snapshots of that training, with measured quantities only:

  (a) after --steps_a ordinary iterations: p_g near p_data, D a partially accurate classifier;
  (b) then D alone trained against the frozen G until it matches the D* = p_data / (p_data + p_g)
      of Proposition 1 on the support (max |D - D*| <= --d_tolerance, at most --steps_d steps);
  (c) then G alone updated --steps_g steps against that D: G(z) flows towards where D says "data";
  (d) then ordinary training for --steps_end iterations: p_g ~ p_data and D ~ 1/2 on the support
      (the figure states max |D - 1/2| there against --half_tolerance).

Densities are exact, not estimated: p_data from its formula, p_g as the push-forward of the noise
through G (the fraction of 10^6 equal-probability quantiles of z whose G(z) falls in each grid bin,
exact for any 1-D G up to the bin width). D* and JSD(p_data, p_g) come from `gan_jax.paper.theory`.
The support is the grid points where p_data + p_g exceeds --support_fraction (1%) of its maximum;
every |D - D*| and |D - 1/2| figure is measured there, and D is drawn there only (outside, D was
never trained and means nothing). The measurements go to a JSON file beside the PNG.
"""

import datetime
import functools
import json
import math
import os
import sys
import time

import numpy as np

from gan_jax.errors import UserError
from gan_jax.paper import theory
from gan_jax.run import files

PANELS = ("a", "b", "c", "d")
NUM_QUANTILES = 1_000_000  # noise quantiles pushed through G to compute p_g
NUM_BINS = 800  # grid bins (the x axis of every panel)
_CAPTIONS = {
    "a": "(a) near convergence:\nD partially accurate",
    "b": "(b) D trained against the frozen G\nuntil |D − D*| ≤ {d_tolerance:g} on the support",
    "c": "(c) after G updates:\nG(z) flows to 'data'",
    "d": "(d) end of training:\np_g ≈ p_data, D ≈ 1/2 on the support",
}


def _one_player(gan, state, player: str, num_steps: int, offset):
  """`num_steps` updates of one network (`player` 'd' or 'g') with the other frozen; the batches
  of step i come from key `fold_in(., offset + i)`, so successive calls draw fresh data."""
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

  return jax.lax.scan(body, state, jax.numpy.arange(num_steps) + offset)


def noise_quantiles(noise: str, n: int) -> np.ndarray:
  """`n` equal-probability quantiles of the 1-D noise ('uniform' U[-sqrt 3, sqrt 3] or 'gaussian')."""
  from scipy import special  # pylint: disable=import-outside-toplevel

  q = (np.arange(n) + 0.5) / n
  if noise == "gaussian":
    return special.ndtri(q)
  return math.sqrt(3) * (2 * q - 1)


def _log_p_data(toy):
  """log p_data as a float64 function of x (an equal mixture of N(c, std^2) over toy's centres)."""
  centres = [c[0] for c in toy.centers]

  def log_p(x):
    logs = np.stack([theory.gaussian_log_pdf(x, c, toy.std) for c in centres])
    return np.logaddexp.reduce(logs, axis=0) - math.log(len(centres))

  return log_p


@functools.cache
def _programs():
  """Jitted helpers keyed by the (hashable) GAN, so each compiles once per GAN and shape."""
  import jax  # pylint: disable=import-outside-toplevel

  generate = jax.jit(lambda gan, g, z: gan.generate(g, z), static_argnums=0)
  d_prob = jax.jit(lambda gan, d, x: jax.nn.sigmoid(gan.discriminate(d, x)), static_argnums=0)
  return generate, d_prob


def measure(gan, g_params, d_params, edges: np.ndarray, noise: str,
            support_fraction: float = 0.01, num_lines: int = 15) -> dict:
  """Densities, D, D* and the z -> G(z) map of one snapshot on the bins `edges`, plus numbers.

  Returns:
    The curves on the bin centres ('grid', 'p_data', 'p_g', 'd', 'd_star', 'support' mask) and the
    arrows ('z', 'g_z'), and the numbers: 'jsd' (nats), max and mean of |D - D*| and |D - 1/2| on
    the support, its ends, G's mean and std.
  """
  generate, d_prob = _programs()
  grid = (edges[1:] + edges[:-1]) / 2
  z = noise_quantiles(noise, NUM_QUANTILES).astype(np.float32)[:, None]
  gz = np.sort(np.asarray(generate(gan, g_params, z), np.float64)[:, 0])
  p_g = np.diff(np.searchsorted(gz, edges, side="right")) / (len(gz) * np.diff(edges))
  log_p_data = _log_p_data(gan.sampler.toy)
  p_data = np.exp(log_p_data(grid))
  d = np.asarray(d_prob(gan, d_params, grid[:, None].astype(np.float32)), np.float64)
  d_star = theory.optimal_discriminator(p_data, p_g)
  total = p_data + p_g
  support = total > support_fraction * total.max()

  def log_p_g(x):
    i = np.searchsorted(edges, x, side="right") - 1
    inside = (i >= 0) & (i < len(p_g))
    dens = np.where(inside, p_g[np.clip(i, 0, len(p_g) - 1)], 0.0)
    with np.errstate(divide="ignore"):
      return np.log(dens)

  jsd = theory.jensen_shannon(log_p_data, log_p_g, edges[0], edges[-1], n=20 * len(grid) + 1)
  err, half = np.abs(d - d_star)[support], np.abs(d - 0.5)[support]
  worst = int(np.flatnonzero(support)[np.argmax(err)])
  lines = noise_quantiles(noise, num_lines).astype(np.float32)[:, None]
  return {
      "grid": grid, "p_data": p_data, "p_g": p_g, "d": d, "d_star": d_star, "support": support,
      "z": lines[:, 0], "g_z": np.asarray(generate(gan, g_params, lines))[:, 0],
      "jsd": float(jsd),
      "max_abs_d_minus_d_star": float(err.max()), "mean_abs_d_minus_d_star": float(err.mean()),
      "x_of_max_abs_d_minus_d_star": float(grid[worst]),
      "max_abs_d_minus_half": float(half.max()), "mean_abs_d_minus_half": float(half.mean()),
      "support_x": [float(grid[support][0]), float(grid[support][-1])],
      "support_points": int(support.sum()),
      "g_mean": float(gz.mean()), "g_std": float(gz.std()),
  }


def draw(panels: dict, path: str, title: str, z_range: tuple, d_tolerance: float = 0.05) -> str:
  """The four panels in a row, in the paper's style; D (and D*) only on the support."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  scale = 0.9 / max(p["p_data"].max() for p in panels.values())
  fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9), dpi=120, sharey=True)
  y_x, y_z = -0.18, -0.62
  on = lambda p, v: np.where(p["support"], v, np.nan)
  for ax, (name, p) in zip(np.atleast_1d(axes), panels.items()):
    grid = p["grid"]
    lo, hi = grid[0], grid[-1]
    ax.plot(grid, np.minimum(p["p_data"] * scale, 1.25), "k:", lw=1.8, label="p_data")
    ax.plot(grid, np.minimum(p["p_g"] * scale, 1.25), "-", color="tab:green", lw=1.6, label="p_g")
    ax.plot(grid, on(p, p["d"]), "--", color="tab:blue", lw=1.6, label="D(x) on the support")
    if name == "b":
      ax.plot(grid, on(p, p["d_star"]), "-", color="tab:red", lw=1.0, alpha=0.8,
              label="D* = p_data / (p_data + p_g)")
    if name == "c" and "b" in panels:  # where G was before its updates: the flow towards the data
      ax.plot(grid, np.minimum(panels["b"]["p_g"] * scale, 1.25), "-", color="tab:green", lw=0.8,
              alpha=0.35, label="p_g before the G updates")
    for y, label in ((y_x, "x"), (y_z, "z")):
      ax.plot([lo, hi], [y, y], "k-", lw=0.8)
      ax.text(lo, y + 0.03, label, fontsize=8, style="italic")
    z_lo, z_hi = z_range
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
    ax.set_title(_CAPTIONS[name].format(d_tolerance=d_tolerance), fontsize=9)
    stats = f"JSD {p['jsd']:.4f}"
    if name in ("a", "b", "c"):
      stats += f"\nmax |D−D*| {p['max_abs_d_minus_d_star']:.3f}"
    if name == "d":
      stats += f"\nmax |D−½| {p['max_abs_d_minus_half']:.3f}"
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


def _x_range(gan, snapshots, noise) -> np.ndarray:
  """Bin edges holding p_data's mass (its centres ± 4 std) and 99.9% of every snapshot's p_g."""
  generate = _programs()[0]
  toy = gan.sampler.toy
  centres = np.asarray(toy.centers)[:, 0]
  lo, hi = centres.min() - 4 * toy.std, centres.max() + 4 * toy.std
  z = noise_quantiles(noise, 20000).astype(np.float32)[:, None]
  for g_params, _ in snapshots.values():
    s = np.asarray(generate(gan, g_params, z))[:, 0]
    lo, hi = min(lo, np.percentile(s, 0.05)), max(hi, np.percentile(s, 99.95))
  margin = 0.05 * (hi - lo)
  return np.linspace(lo - margin, hi + margin, NUM_BINS + 1)


def make_figure1(config, out: str, steps_a: int, steps_d: int, steps_g: int, steps_end: int,
                 seed: int = 0, log=print, d_tolerance: float = 0.05, half_tolerance: float = 0.05,
                 support_fraction: float = 0.01, command: str = "") -> dict:
  """Trains the 1-D GAN through the four phases, draws `out` and writes `out`.json.

  Args:
    config: a toy_1d-style config (1-D toy data and noise).
    out: the PNG path.
    steps_a: ordinary iterations before panel (a).
    steps_d: the most D-only steps (G frozen) before panel (b); D stops training as soon as
      max |D - D*| on the support is at most `d_tolerance` (checked every 250 steps).
    steps_g: G-only steps (D frozen) before panel (c).
    steps_end: ordinary iterations after (c), before panel (d).
    seed: the run's seed (recorded).
    log: progress printer.
    d_tolerance: the max |D - D*| on the support that ends phase (b).
    half_tolerance: the max |D - 1/2| on the support that panel (d) is checked against.
    support_fraction: the support is where p_data + p_g exceeds this fraction of its maximum.
    command: the command line, recorded in the JSON.

  Returns:
    The measurements per panel (without the curves), the checks and the settings.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from gan_jax.core import build  # pylint: disable=import-outside-toplevel

  if config.data.source != "toy" or config.model.noise_dim != 1 or config.data.name not in (
      "gaussian_1d", "mixture_1d"):
    raise UserError("figure1 needs a 1-D toy config (data.source='toy', data.name='gaussian_1d' or "
                    "'mixture_1d', model.noise_dim=1), like experiments/paper/figure1_1d.py")
  if min(steps_a, steps_d, steps_g, steps_end) < 1:
    raise UserError("--steps_a, --steps_d, --steps_g and --steps_end must all be >= 1")
  if not (0 < d_tolerance < 1 and 0 < half_tolerance < 0.5 and 0 < support_fraction < 1):
    raise UserError("--d_tolerance must be in (0, 1), --half_tolerance in (0, 0.5) and "
                    "--support_fraction in (0, 1)")
  t0 = time.perf_counter()
  noise = config.model.noise
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
  # The x range is fixed by p_data and G at (a); D-only training does not move G.
  edges = _x_range(gan, {"a": snapshots["a"]}, noise)
  d_steps, d_trace = 0, []
  while d_steps < steps_d:
    n = min(250, steps_d - d_steps)
    state, _ = one_player(gan, state, "d", n, d_steps)
    d_steps += n
    m = measure(gan, state.g_params, state.d_params, edges, noise, support_fraction)
    d_trace.append([d_steps, round(m["max_abs_d_minus_d_star"], 4)])
    if m["max_abs_d_minus_d_star"] <= d_tolerance:
      break
  log(f"(b) D alone: {d_steps} steps, max |D - D*| on the support {d_trace[-1][1]:.3f} "
      f"(tolerance {d_tolerance:g})")
  snapshots["b"] = (state.g_params, state.d_params)
  state, losses = one_player(gan, state, "g", steps_g, 0)
  log(f"(c) G alone: {steps_g} steps, g_loss {float(losses[0]):.3f} -> {float(losses[-1]):.3f}")
  snapshots["c"] = (state.g_params, state.d_params)
  state = ordinary(state, steps_end, "(d) ordinary training")
  snapshots["d"] = (state.g_params, state.d_params)

  edges = _x_range(gan, snapshots, noise)
  panels = {name: measure(gan, g, d, edges, noise, support_fraction)
            for name, (g, d) in snapshots.items()}
  dc = config.data
  p_data = (f"N({dc.mean:g}, {dc.std:g}²)" if dc.name == "gaussian_1d" else
            f"equal mixture of N(m, {dc.std:g}²), m in {tuple(dc.means)}")
  z_text = "z ~ N(0, 1)" if noise == "gaussian" else "z ~ U[-√3, √3]"
  z_range = (-3.0, 3.0) if noise == "gaussian" else (-math.sqrt(3), math.sqrt(3))
  draw(panels, out, f"Figure 1, measured: a 1-D GAN, p_data = {p_data}, {z_text}; "
       f"{steps_a + steps_end:,} iterations in all", z_range, d_tolerance)
  summary = {name: {k: v for k, v in p.items() if not isinstance(v, np.ndarray)}
             for name, p in panels.items()}
  checks = {
      "d_matches_d_star": summary["b"]["max_abs_d_minus_d_star"] <= d_tolerance,
      "d_near_half_at_the_end": summary["d"]["max_abs_d_minus_half"] <= half_tolerance,
  }
  from gan_jax.paper import run as run_lib  # pylint: disable=import-outside-toplevel
  record = {"out": out, "date": datetime.date.today().isoformat(),
            "device": run_lib.device_description(),
            "command": command or f"make_figure1(steps_a={steps_a}, steps_d={steps_d}, ...)",
            "steps_a": steps_a, "steps_d_max": steps_d, "steps_d": d_steps,
            "steps_g": steps_g, "steps_end": steps_end, "seed": seed, "noise": noise,
            "d_tolerance": d_tolerance, "half_tolerance": half_tolerance,
            "support": f"grid points where p_data + p_g > {support_fraction:g} x its maximum",
            "support_fraction": support_fraction, "bins": NUM_BINS, "noise_quantiles": NUM_QUANTILES,
            "d_steps_trace": d_trace, "checks": checks,
            "seconds": round(time.perf_counter() - t0, 1), "panels": summary}
  run_lib.write_text(os.path.splitext(out)[0] + ".json", json.dumps(record, indent=2) + "\n")
  for name, p in summary.items():
    log(f"panel ({name}): JSD {p['jsd']:.4f}; on the support [{p['support_x'][0]:.2f}, "
        f"{p['support_x'][1]:.2f}]: |D - D*| max {p['max_abs_d_minus_d_star']:.3f} mean "
        f"{p['mean_abs_d_minus_d_star']:.3f}, |D - 1/2| max {p['max_abs_d_minus_half']:.3f} mean "
        f"{p['mean_abs_d_minus_half']:.3f}; G mean {p['g_mean']:.3f} std {p['g_std']:.3f}")
  for check, ok in checks.items():
    log(f"{check}: {'yes' if ok else 'NO'}")
  log(f"wrote {out} in {record['seconds']:.0f} s")
  return record


def default_config_path() -> str:
  """experiments/paper/figure1_1d.py of this checkout."""
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.normpath(os.path.join(here, "..", "..", "experiments", "paper", "figure1_1d.py"))


def load_config(path: str):
  """`get_config()` of a config file."""
  from gan_jax import config as config_lib  # pylint: disable=import-outside-toplevel

  return config_lib.from_file(path)


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  f = flags.FLAGS
  if not f.out.endswith(".png"):
    raise UserError(f"--out={f.out} must name a .png file")
  from gan_jax.run import files  # pylint: disable=import-outside-toplevel
  files.check_destination(f.out, "--out")
  config = load_config(f.config or default_config_path())
  config.parallel.mode = "none"
  config.seed = f.seed
  make_figure1(config, f.out, f.steps_a, f.steps_d, f.steps_g, f.steps_end, f.seed,
               d_tolerance=f.d_tolerance, half_tolerance=f.half_tolerance,
               support_fraction=f.support_fraction,
               command=" ".join(["python -m gan_jax.paper.figure1"] + sys.argv[1:]))


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("out", "docs/figures/figure1.png", "Output PNG (a .json of measurements beside it).")
  flags.DEFINE_string("config", None, "A 1-D toy config (default: experiments/paper/figure1_1d.py).")
  flags.DEFINE_integer("steps_a", 1500, "Ordinary iterations before panel (a).")
  flags.DEFINE_integer("steps_d", 5000, "At most this many D-only steps (G frozen) before panel (b).")
  flags.DEFINE_integer("steps_g", 300, "G-only steps (D frozen) before panel (c).")
  flags.DEFINE_integer("steps_end", 4000, "Ordinary iterations after (c), before panel (d).")
  flags.DEFINE_integer("seed", 0, "Seeds the run.")
  flags.DEFINE_float("d_tolerance", 0.05, "Phase (b) ends when max |D - D*| on the support is this.")
  flags.DEFINE_float("half_tolerance", 0.05, "Panel (d) is checked for max |D - 1/2| <= this.")
  flags.DEFINE_float("support_fraction", 0.01, "Support: p_data + p_g above this fraction of its max.")


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=ungrouped-imports

  _define_flags()
  sys.exit(cli.run(main))
