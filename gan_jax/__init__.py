"""gan_jax: generative adversarial networks in JAX and Flax.

  run = gan_jax.load_run("runs/digits")   # a trained run: its config, state and a sampler
  images = run.sample(64, seed=0)
"""

__version__ = "0.2.0"
__all__ = ["load_run"]


def load_run(workdir: str, step: int | str | None = None, data_dir: str | None = None):
  """The trained run in `workdir` at checkpoint `step` (default: the newest; 'best': the best kept by
  evaluation during training); see gan_jax.run.reader."""
  from gan_jax.run.reader import load_run as _load_run  # pylint: disable=g-import-not-at-top  (JAX on use)
  return _load_run(workdir, step, data_dir)
