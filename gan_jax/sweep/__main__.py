"""`python -m gan_jax.sweep --sweep=FILE.py[:ARG] --workdir=DIR`: runs or resumes a sweep."""

import sys

from absl import flags

from gan_jax import cli, sweep

sweep._SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (get_config + get_sweep), optionally FILE.py:ARG.")
sweep._WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; rerun on it to resume.")
sweep._MAX_MEMBERS = flags.DEFINE_integer("max_members", 64, "Most runs vmapped into one program (1: alone).")
sweep._MAX_GROUPS = flags.DEFINE_integer("max_groups", 0, "Stop after this many groups (0: all); rerun to go on.")

if __name__ == "__main__":
  flags.mark_flags_as_required(["sweep", "workdir"])
  sys.exit(cli.run(sweep.main))
