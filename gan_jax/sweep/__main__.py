"""`python -m gan_jax.sweep --sweep=FILE.py[:ARG] --workdir=DIR`: runs or resumes a sweep; rerun to resume."""

import os
import sys

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError
from gan_jax.sweep import runner

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (get_config + get_sweep), optionally FILE.py:ARG.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; rerun on it to resume.")
_MAX_MEMBERS = flags.DEFINE_integer("max_members", 64, "Most runs vmapped into one program (1: alone).")
_MAX_GROUPS = flags.DEFINE_integer("max_groups", 0, "Stop after this many groups (0: all); rerun to go on.")


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  summary = runner.run_sweep(_SWEEP.value, _WORKDIR.value, _MAX_MEMBERS.value, _MAX_GROUPS.value)
  where = os.path.join(_WORKDIR.value, "results.md")
  if summary["interrupted"] or not summary["finished"]:
    print(f"stopped: {summary['skipped'] + summary['trained']} of {summary['runs']} runs finished; "
          f"rerun the same command to resume. Partial tables: {where}", flush=True)
    if summary["interrupted"]:
      sys.stdout.flush()
      sys.stderr.flush()
      # A dispatch still running on the device would hold the exit until it finishes (minutes for a
      # big model on a CPU); every finished run and the tables are on disk, so leave now.
      os._exit(130)  # pylint: disable=protected-access
  else:
    print(f"sweep finished: {summary['runs']} runs ({summary['trained']} trained now) in "
          f"{summary['wall_time_s']:.0f} s; tables: {where}", flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["sweep", "workdir"])
  sys.exit(cli.run(main))
