"""Figures 2 and 3 of the paper for a trained run.

  python -m gan_jax.paper.figures --workdir=runs/mnist_paper --out=docs/figures [--step=N] [--seed=0]

Figure 2 (`figure2.png`): random samples, not cherry-picked (the seed is recorded), in the reference
code's layout: 4 rows of 5 samples, and in a sixth, framed column the training example nearest
(squared L2 over the whole training set, on device: gan_jax.paper.nearest) to the sample beside it.
Figure 3 (`figure3.png`): rows of samples along straight lines between random pairs of noise vectors.
`figures.json` records the step, seed and the nearest-neighbour distances, with a reference: the
same distances for held-out validation images, which no one can have memorised.
"""

import datetime
import json
import math
import os
import sys

import numpy as np

from gan_jax.errors import UserError
from gan_jax.run import files

_FRAME = np.array([1.0, 0.8, 0.0], np.float32)  # the neighbour column's frame (yellow, as the paper)


def _rgb(images: np.ndarray) -> np.ndarray:
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _mosaic(rows_of_images, frame_last: bool = False) -> tuple[np.ndarray, list[float]]:
  """[R][C] images [H, W, 3] -> (one RGB mosaic, x centre of each column).

  With `frame_last`, the last column stands apart behind a gap, each image in a yellow frame.
  """
  h, w, _ = rows_of_images[0][0].shape
  pad = max(1, h // 14)
  ncol = len(rows_of_images[0])
  gap = 3 * pad if frame_last else 0
  out = np.ones((len(rows_of_images) * (h + pad) + pad, ncol * (w + pad) + pad + gap, 3), np.float32)
  centres = [pad + c * (w + pad) + (gap if frame_last and c == ncol - 1 else 0) + w / 2
             for c in range(ncol)]
  for r, row in enumerate(rows_of_images):
    for c, im in enumerate(row):
      y, x = pad + r * (h + pad), int(centres[c] - w / 2)
      if frame_last and c == ncol - 1:
        out[y - pad:y + h + pad, x - pad:x + w + pad] = _FRAME
      out[y:y + h, x:x + w] = im
  return out, centres


def _save_mosaic(mosaic: np.ndarray, path: str, title: str, caption: str, xlabels=(),
                 width_in: float = 6.0) -> str:
  """The mosaic at `width_in` inches wide, a title above, column labels, a wrapped caption below."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  h, w, _ = mosaic.shape
  img_w = width_in - 0.4
  img_h = img_w * h / w
  caption_lines = math.ceil(len(caption) / (width_in * 14))  # about 14 characters per inch at 7.5 pt
  top, bottom = 0.55 if xlabels else 0.4, 0.2 + 0.16 * caption_lines
  fig = plt.figure(figsize=(width_in, img_h + top + bottom), dpi=120)
  H = fig.get_figheight()
  ax = fig.add_axes([0.2 / width_in, bottom / H, img_w / width_in, img_h / H])
  ax.imshow(mosaic, interpolation="nearest")
  ax.set_axis_off()
  for x, text in xlabels:
    ax.text(x, -h * 0.01, text, ha="center", va="bottom", fontsize=8)
  fig.text(0.5, 1 - 0.08 / H, title, ha="center", va="top", fontsize=10, weight="bold")
  fig.text(0.5 / width_in, (bottom - 0.08) / H, caption, ha="left", va="top", fontsize=7.5,
           wrap=True)
  files.atomic_savefig(fig, path)
  return path


def figure2(reader, state, step: int, path: str, rows: int = 4, cols: int = 5, seed: int = 0) -> dict:
  """Samples with the nearest training example of each row's last sample; returns measurements."""
  from gan_jax.data import scale  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import nearest  # pylint: disable=import-outside-toplevel

  data = reader.data
  samples = reader.samples(state, rows * cols, seed)
  train = reader.training_images()
  flat_train = train.reshape(len(train), -1)
  last = samples[cols - 1::cols]
  idx, dist = nearest.nearest_neighbours(last, flat_train)
  _, all_dist = nearest.nearest_neighbours(samples, flat_train)
  validation, _ = reader.eval_splits(rows * cols, 1)
  _, val_dist = nearest.nearest_neighbours(validation, flat_train)
  show = lambda x: _rgb(scale.to_unit(x, data.image_shape, data.display_scale))
  grid = show(samples).reshape((rows, cols) + show(samples[:1]).shape[1:])
  neighbours = show(flat_train[idx])
  mosaic, centres = _mosaic([list(grid[r]) + [neighbours[r]] for r in range(rows)], frame_last=True)
  _save_mosaic(
      mosaic, path, f"Figure 2: samples ({data.name}, step {step:,})",
      f"Random samples, not cherry-picked (seed {seed}). Framed, rightmost: the training example "
      f"nearest to the sample beside it (squared L2 distance over all {len(train):,} training "
      f"examples). Nearest-neighbour squared distances: {', '.join(f'{d:.1f}' for d in dist)}.",
      xlabels=[((centres[0] + centres[cols - 1]) / 2, "samples"), (centres[-1], "nearest")],
      width_in=4.5)
  return {"path": path, "seed": seed, "rows": rows, "cols": cols,
          "neighbour_index": idx.tolist(), "neighbour_sq_dist": dist.round(3).tolist(),
          "median_nn_sq_dist_samples": float(np.median(all_dist)),
          "median_nn_sq_dist_validation": float(np.median(val_dist)),
          "n_validation_reference": int(len(validation))}


def figure3(reader, state, step: int, path: str, rows: int = 6, steps: int = 12, seed: int = 0) -> dict:
  """Rows of G(z) for z on straight lines between random pairs of noise vectors."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from gan_jax.data import scale  # pylint: disable=import-outside-toplevel

  gan, data = reader.gan, reader.data
  z = gan.noise_batch(jax.random.fold_in(jax.random.PRNGKey(seed), 3), 2 * rows)
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  line = (1 - t) * z[:rows, None] + t * z[rows:, None]  # [rows, steps, noise_dim]
  x = np.asarray(jax.jit(gan.generate)(state.g_params, line.reshape(rows * steps, -1)))
  ims = _rgb(scale.to_unit(x, data.image_shape, data.display_scale))
  ims = ims.reshape((rows, steps) + ims.shape[1:])
  _save_mosaic(
      _mosaic([list(r) for r in ims])[0], path, f"Figure 3: interpolation in z ({data.name}, step {step:,})",
      f"Each row: G((1 - t) z_a + t z_b) for {steps} evenly spaced t from 0 (left) to 1 (right), "
      f"for {rows} random pairs (z_a, z_b) of noise vectors (seed {seed}).")
  return {"path": path, "seed": seed, "rows": rows, "steps": steps}


def run_figures(workdir: str, out: str, step: int | None = None, dataset_dir: str | None = None,
                seed: int = 0, rows: int = 4, cols: int = 5, log=print, command: str = "") -> dict:
  """Writes figure2.png, figure3.png and figures.json into `out`; returns the record."""
  from gan_jax.paper import run as run_lib  # pylint: disable=import-outside-toplevel

  if rows < 1 or cols < 1:
    raise UserError(f"--rows and --cols must be >= 1, got {rows} and {cols}")
  reader = run_lib.image_run(workdir, dataset_dir)
  step = reader.latest_or(step)
  state = reader.restore(step)
  log(f"{reader.workdir}: checkpoint at step {step} (epoch {reader.epoch(step):g})")
  record = {"date": datetime.date.today().isoformat(), "device": run_lib.device_description(),
            "command": command, "workdir": workdir, "step": step, "epoch": reader.epoch(step),
            "dataset": reader.data.name,
            "figure2": figure2(reader, state, step, os.path.join(out, "figure2.png"), rows, cols, seed),
            "figure3": figure3(reader, state, step, os.path.join(out, "figure3.png"), seed=seed)}
  run_lib.write_text(os.path.join(out, "figures.json"), json.dumps(record, indent=2) + "\n")
  f2 = record["figure2"]
  log(f"wrote {f2['path']} (median squared L2 to the nearest training example: samples "
      f"{f2['median_nn_sq_dist_samples']:.1f}, validation images {f2['median_nn_sq_dist_validation']:.1f}) "
      f"and {record['figure3']['path']}")
  return record


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  f = flags.FLAGS
  if not f.workdir:
    raise UserError("--workdir is required: the folder of a trained run (gan_jax.main --workdir)")
  if f.out:  # before the run is loaded
    from gan_jax.run import files  # pylint: disable=import-outside-toplevel
    files.check_destination(f.out, "--out", folder=True)
  run_figures(f.workdir, f.out or os.path.join(f.workdir, "paper", "figures"), f.step,
              f.dataset_dir, f.seed, f.rows, f.cols,
              command=" ".join(["python -m gan_jax.paper.figures"] + sys.argv[1:]))


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("workdir", None, "Folder of a trained run.")
  flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/paper/figures).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
  flags.DEFINE_string("dataset_dir", None, "Overrides the run's data.dir.")
  flags.DEFINE_integer("seed", 0, "Seeds the samples and noise pairs (not cherry-picked: keep 0).")
  flags.DEFINE_integer("rows", 4, "Figure 2 rows.")
  flags.DEFINE_integer("cols", 5, "Figure 2 samples per row (a neighbour column is added).")


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=ungrouped-imports

  _define_flags()
  sys.exit(cli.run(main))
