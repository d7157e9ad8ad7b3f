"""Ablation (b): dropout in the discriminator, on real handwritten digits, scored by offline metrics.

  python -m gan_jax.sweep --sweep=experiments/ablations/digits_dropout.py --workdir=runs/digits_dropout

Base: experiments/configs/digits.py (the paper's MNIST pair scaled to scikit-learn's 8x8 digits), trained
for 3,000 steps. Cells: D's dropout as in the paper (keep 0.8 on pixels, 0.5 on hidden layers), on the
hidden layers only (the digits config's choice), and off; 3 seeds each, vmapped. Metrics, on 1,500
samples per run (the size of the training split): the Frechet distance of a small classifier's features
to the training digits (ranks the cells; the classifier is trained once and cached in
WORKDIR/classifier), the Inception-Score-style score and class coverage with that classifier, and the
paper's Parzen log-likelihood (sigma chosen on the validation digits). Results: docs/ABLATIONS.md.

Optional, real MNIST (needs the IDX files; not run for the docs, it takes hours on a CPU):

  python -m gan_jax.sweep --sweep=experiments/ablations/digits_dropout.py:mnist \
      --workdir=runs/mnist_dropout

`:smoke` is a seconds-long version (two of the cells) for tests.
"""

import os

from gan_jax import config as config_lib
from gan_jax.validation import check_arg

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def _load(name: str, arg: str = ""):
  path = os.path.join(_CONFIGS, f"{name}.py")
  return config_lib.from_file(f"{path}:{arg}" if arg else path)


def get_config(arg: str = ""):
  check_arg(arg, ("smoke", "mnist"))
  if arg == "mnist":
    c = _load("mnist_paper")
    c.num_steps = 100_000  # 200 epochs of the paper's model and schedule
    c.steps_per_dispatch = c.log_every = 500
    return c
  c = _load("digits")
  c.num_steps = 3000
  c.steps_per_dispatch = 500
  c.log_every = 100
  if arg == "smoke":
    c.num_steps, c.steps_per_dispatch, c.log_every = 20, 10, 10
    c.model.g_hidden, c.model.d_hidden = (32,), (16,)
  return c


def get_sweep(arg: str = ""):
  check_arg(arg, ("smoke", "mnist"))
  cells = {
      "paper (keep 0.8 in, 0.5 hidden)": {"model.d_input_keep": 0.8, "model.d_hidden_keep": 0.5},
      "hidden only (keep 0.5)": {"model.d_input_keep": 1.0, "model.d_hidden_keep": 0.5},
      "off": {"model.d_input_keep": 1.0, "model.d_hidden_keep": 1.0},
  }
  if arg == "smoke":  # two programs instead of three
    del cells["hidden only (keep 0.5)"]
  return {
      "axes": {"d_dropout": cells},
      "seeds": [0, 1, 2],
      "metrics": ["frechet_distance", "inception_score", "class_coverage", "parzen_ll"],
  }
