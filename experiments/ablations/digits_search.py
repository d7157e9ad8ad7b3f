"""Random search (d): learning rates and Adam's b1 for two GAN losses on the 8x8 digits, with budget curves.

  python -m gan_jax.sweep --sweep=experiments/ablations/digits_search.py --workdir=runs/digits_search

Base: experiments/configs/digits.py (the paper's MNIST pair narrowed for 64 pixels; Adam, batch 100),
trained for 1,500 steps (100 epochs of the 1,500 training digits). Arms: the non-saturating loss
and the hinge loss. Search: 16 configurations drawn once (seed 0) and run under both losses, so the
arms see the same hyperparameters: G's and D's learning rates log-uniform in [1e-4, 3e-3], Adam's b1
uniform in [0, 0.9]; one seed each, 32 runs. Learning rates and b1 vmap, so each arm is one program
of 16 members. Metrics on 1,500 samples per run, as in digits_dropout.py: the Frechet distance of a
small classifier's features to the training digits (ranks the runs, and the budget curves), the
classifier score and class coverage. The report (WORKDIR/stats.md) gives each arm's budget curve:
the expected best Frechet distance among k of its runs, k = 1..16. Results: docs/ABLATIONS.md.

`:smoke` is a seconds-long version (3 configurations, tiny networks) for tests.
"""

import os

from gan_jax import config as config_lib
from gan_jax.sweep import search
from gan_jax.validation import check_arg

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def get_config(arg: str = ""):
  check_arg(arg)
  c = config_lib.from_file(os.path.join(_CONFIGS, "digits.py"))
  c.num_steps = 1500
  c.steps_per_dispatch = 500
  c.log_every = 100
  if arg == "smoke":
    c.num_steps, c.steps_per_dispatch, c.log_every = 20, 10, 10
    c.model.g_hidden, c.model.d_hidden = (32,), (16,)
  return c


def get_sweep(arg: str = ""):
  check_arg(arg)
  return {
      "axes": {"loss": {"non_saturating": {"loss.name": "non_saturating"}, "hinge": {"loss.name": "hinge"}}},
      "search": {
          "space": {
              "optimizer.g_lr": search.loguniform(1e-4, 3e-3),
              "optimizer.d_lr": search.loguniform(1e-4, 3e-3),
              "optimizer.b1": search.uniform(0.0, 0.9),
          },
          "trials": 3 if arg == "smoke" else 16,
          "seed": 0,
      },
      "seeds": [0],
      "metrics": ["frechet_distance", "inception_score", "class_coverage"],
  }
