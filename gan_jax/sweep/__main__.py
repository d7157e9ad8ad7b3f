"""`python -m gan_jax.sweep --sweep=FILE.py[:ARG] --workdir=DIR`: runs or resumes a sweep; rerun to resume.

With `--shard=i/N` (or inside a SLURM job array) this job trains its share of the sweep, then runs
no other job has claimed; the same command without --shard then writes the merged report.
"""

import os
import sys

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError
from gan_jax.sweep import claims, runner

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (get_config + get_sweep), optionally FILE.py:ARG.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; rerun on it to resume.")
_MAX_MEMBERS = flags.DEFINE_integer("max_members", 64, "Most runs vmapped into one program (1: alone).")
_MAX_GROUPS = flags.DEFINE_integer("max_groups", 0, "Stop after this many groups (0: all); rerun to go on.")
_SHARD = flags.DEFINE_string("shard", None, "i/N: this job is job i (from 0) of N sharing the workdir. "
                             "Default: SLURM_ARRAY_TASK_ID of a SLURM job array, else the whole sweep.")
_DEVICES = flags.DEFINE_integer("devices", 0, "Local devices per vmapped group, its members sharded over "
                                "them (0: all when the group's size is a multiple of their number, else 1).")
_CLAIM_TIMEOUT = flags.DEFINE_float("claim_timeout", claims.DEFAULT_TIMEOUT_S,
                                    "Seconds after which another job's unrefreshed claim on a run is taken over.")


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  shard = claims.resolve_shard(_SHARD.value, os.environ)
  summary = runner.run_sweep(_SWEEP.value, _WORKDIR.value, _MAX_MEMBERS.value, _MAX_GROUPS.value,
                             shard=shard, devices=_DEVICES.value, claim_timeout_s=_CLAIM_TIMEOUT.value)
  where = os.path.join(_WORKDIR.value, "results.md")
  done = summary["runs"] - summary["remaining"]
  busy = (f"; {summary['busy']} are being trained by other jobs" if summary["busy"] else "")
  if summary["interrupted"]:
    print(f"stopped: {done} of {summary['runs']} runs finished; rerun the same command to resume."
          + ("" if shard else f" Partial tables: {where}"), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # A dispatch still running on the device would hold the exit until it finishes (minutes for a
    # big model on a CPU); every finished run and the tables are on disk, so leave now.
    os._exit(130)  # pylint: disable=protected-access
  elif shard:
    then = ("every run is finished: run the same command without --shard to write the report" if summary["finished"]
            else "once every job is done, run the same command without --shard to write the report")
    print(f"shard {shard}: trained {summary['trained']} runs in {summary['wall_time_s']:.0f} s; {done} of "
          f"{summary['runs']} runs of the sweep finished{busy}; {then}", flush=True)
  elif not summary["finished"]:
    print(f"stopped: {done} of {summary['runs']} runs finished{busy}; rerun the same command to "
          f"{'finish' if summary['busy'] else 'resume'}. Partial tables: {where}", flush=True)
  else:
    print(f"sweep finished: {summary['runs']} runs ({summary['trained']} trained now) in "
          f"{summary['wall_time_s']:.0f} s; tables: {where}", flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["sweep", "workdir"])
  sys.exit(cli.run(main))
