"""PNG figures: sample grids, toy-data scatter plots and training curves (matplotlib, Agg backend)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from gan_jax.run import files


def tile(images: np.ndarray, ncol: int | None = None, pad: int = 1) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> one [rows*(H+pad)+pad, ncol*(W+pad)+pad, C] mosaic."""
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  out = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.float32)
  for i, im in enumerate(images):
    r, col = divmod(i, ncol)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = im
  return out


def save_grid(images: np.ndarray, path: str, ncol: int | None = None, title: str | None = None,
              scale_px: int = 4) -> str:
  """Saves [N, H, W, C] images in [0, 1] as one grid PNG; returns the path."""
  mosaic = tile(images, ncol)
  h, w = mosaic.shape[:2]
  fig = plt.figure(figsize=(max(w * scale_px / 100, 2), max(h * scale_px / 100, 2) + (0.3 if title else 0)),
                   dpi=100)
  ax = fig.add_axes([0, 0, 1, 1 if not title else 1 - 0.3 / fig.get_figheight()])
  ax.imshow(mosaic.squeeze(-1) if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=1,
            interpolation="nearest")
  ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=9, y=0.995)
  files.atomic_savefig(fig, path)
  return path


def save_toy_samples(samples: np.ndarray, path: str, title: str, toy=None, d_fn=None) -> str:
  """1-D: histogram of samples, the true density and D(x); 2-D: scatter of samples over the modes."""
  samples = np.asarray(samples)
  fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
  if samples.shape[-1] == 1:
    lo, hi = np.percentile(samples, [0.5, 99.5])
    if toy is not None:
      c = np.asarray(toy.centers)[:, 0]
      lo, hi = min(lo, c.min() - 4 * toy.std), max(hi, c.max() + 4 * toy.std)
    grid = np.linspace(lo, hi, 400)[:, None]
    ax.hist(samples[:, 0], bins=80, range=(lo, hi), density=True, color="tab:green", alpha=0.5,
            label="p_g (samples)")
    if toy is not None:
      ax.plot(grid[:, 0], np.exp(np.asarray(toy.log_prob(grid))), "k:", label="p_data")
    if d_fn is not None:
      ax2 = ax.twinx()
      ax2.plot(grid[:, 0], d_fn(grid), "b--", label="D(x)")
      ax2.set_ylim(0, 1)
      ax2.set_ylabel("D(x)")
    ax.set_xlabel("x")
    ax.legend(loc="upper left", fontsize=8)
  else:
    if toy is not None:
      c = np.asarray(toy.centers)
      ax.scatter(c[:, 0], c[:, 1], s=80, facecolors="none", edgecolors="k", label="modes")
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, color="tab:green", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
  ax.set_title(title, fontsize=10)
  files.atomic_savefig(fig, path)
  return path


def save_curves(records: list[dict], path: str, title: str = "") -> str:
  """Losses (left) and D(x), D(G(z)) (right) against step, from metric records."""
  steps = np.array([r["step"] for r in records])
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
  for key, style in (("d_loss", "tab:blue"), ("g_loss", "tab:orange")):
    if records and key in records[0]:
      a.plot(steps, [r[key] for r in records], color=style, label=key, lw=1)
  a.set_xlabel("step")
  a.set_title("losses", fontsize=10)
  a.legend(fontsize=8)
  for key, label, style in (("d_real", "D(x)", "tab:blue"), ("d_fake", "D(G(z))", "tab:red")):
    if records and key in records[0]:
      b.plot(steps, [r[key] for r in records], color=style, label=label, lw=1)
  b.axhline(0.5, color="gray", ls=":", lw=1)
  b.set_ylim(-0.02, 1.02)
  b.set_xlabel("step")
  b.set_title("discriminator outputs (0.5 at equilibrium)", fontsize=10)
  b.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  files.atomic_savefig(fig, path)
  return path
