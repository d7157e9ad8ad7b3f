"""What the gradient-norm metrics cost: the paper MLP's trainer measuring them at every iteration,
and at the last iteration of each dispatch only (what `gan_jax.train` does), against the bare loop,
timed round-robin like `python -m gan_jax.bench` (docs/PERFORMANCE.md).

  python experiments/perf/grad_norm_cost.py [ROUNDS]

`d_grad_norm` and `g_grad_norm` (`optax.global_norm` of both gradient trees) read every gradient a
second time. The two trainer rows differ only in the `grad_norms` they pass to
`parallel.Runner.run`, which compiles `GAN.train_steps(grad_norms=...)`.
"""

import sys

import numpy as np

from gan_jax import config as config_lib
from gan_jax.bench import configs, timing


def main(rounds: int = 6, steps: int = 20):
  config = configs.bench_config("mnist_mlp")
  config.steps_per_dispatch = steps
  data = configs.synthetic_data(config, config.data.num_train)
  with config_lib.matmul_precision(config):  # compiled at mnist_paper's float32, as the benchmark does
    cases = [
        timing._trainer_case("mnist_mlp", "norms every it", config, data, steps, 1, grad_norms="every"),  # pylint: disable=protected-access
        timing._trainer_case("mnist_mlp", "norms last it", config, data, steps, 1, grad_norms="last"),  # pylint: disable=protected-access
        timing._bare_case("mnist_mlp", "bare", config, data, steps, 1),  # pylint: disable=protected-access
    ]
  timing.time_cases(cases, rounds)
  bare = np.asarray(cases[-1].times)
  for case in cases:
    print(f"{case.mode:<15} best {steps / min(case.times):6.2f} it/s   "
          f"median same-round ratio to bare {np.median(bare / np.asarray(case.times)):.3f}   "
          f"compile {case.compile_s:.1f} s")


if __name__ == "__main__":
  if sys.argv[1:] in (["--help"], ["-h"]):
    print(__doc__)
    sys.exit(0)
  if len(sys.argv) > 2 or (len(sys.argv) == 2 and not (sys.argv[1].isdigit() and int(sys.argv[1]) > 0)):
    print(f"error: usage: python {sys.argv[0]} [ROUNDS], ROUNDS a positive integer; got {sys.argv[1:]}",
          file=sys.stderr)
    sys.exit(2)
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
