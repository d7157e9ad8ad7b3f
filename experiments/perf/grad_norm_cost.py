"""What the trainer's gradient-norm metrics cost: the paper MLP's trainer with and without them,
against the bare loop, timed round-robin like `python -m gan_jax.bench` (docs/PERFORMANCE.md).

  python experiments/perf/grad_norm_cost.py [ROUNDS]

The trainer logs `d_grad_norm` and `g_grad_norm` (`optax.global_norm` of both gradient trees) at
every iteration; the second row replaces `optax.global_norm` by a constant while its program is
traced, so it differs from the first in those two reductions only.
"""

import sys

import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import bench, gan as gan_lib


def main(rounds: int = 6, steps: int = 20):
  config = bench.bench_config("mnist_mlp")
  config.steps_per_dispatch = steps
  data = bench.synthetic_data(config, config.data.num_train)
  cases = [bench._trainer_case("mnist_mlp", "trainer", config, data, steps, 1)]  # pylint: disable=protected-access
  global_norm = optax.global_norm
  gan_lib.optax.global_norm = lambda tree: jnp.float32(0)
  try:
    cases.append(bench._trainer_case("mnist_mlp", "no grad norms", config, data, steps, 1))  # pylint: disable=protected-access
  finally:
    gan_lib.optax.global_norm = global_norm
  cases.append(bench._bare_case("mnist_mlp", "bare", config, data, steps, 1))  # pylint: disable=protected-access
  bench.time_cases(cases, rounds)
  bare = np.asarray(cases[-1].times)
  for case in cases:
    print(f"{case.mode:<14} best {steps / min(case.times):6.2f} it/s   "
          f"median same-round ratio to bare {np.median(bare / np.asarray(case.times)):.3f}")


if __name__ == "__main__":
  if len(sys.argv) > 2 or (len(sys.argv) == 2 and not (sys.argv[1].isdigit() and int(sys.argv[1]) > 0)):
    print(f"error: usage: python {sys.argv[0]} [ROUNDS], ROUNDS a positive integer; got {sys.argv[1:]}",
          file=sys.stderr)
    sys.exit(2)
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
