"""Command line: `python -m gan_jax.main --config=experiments/configs/X.py --workdir=DIR`.

Intentionally short: the logic is in `gan_jax.train`, which can be imported and tested. Any config key
can be overridden with `--config.KEY=VALUE` (e.g. `--config.num_steps=500`). Running the same command
on a workdir that has checkpoints resumes the run.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from gan_jax import cli, validation

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (Python).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and samples.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Start in a --workdir that holds other files (not a "
                               "run to resume): they are moved to WORKDIR/previous_<time>/, not deleted.")


def main(argv):
  del argv  # cli.run refuses stray arguments
  validation.validate(_CONFIG.value)  # before JAX starts and before the workdir is touched
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  logging.info("done: %s", summary)
  rate = summary["iters_per_s"]  # None when no step ran outside compilation (e.g. a short resume)
  print(f"trained to step {summary['step']} in {summary['wall_time_s']:.1f} s"
        f"{f' ({rate} it/s)' if rate is not None else ''}; outputs in {_WORKDIR.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  sys.exit(cli.run(main, _CONFIG))
