#!/usr/bin/env bash
# Everything docs/REPRODUCTION.md reports for MNIST, in order; each step resumes or reuses its cache
# when re-run. Usage (from the repository root):
#
#   experiments/paper/reproduce_mnist.sh [DATA_DIR] [RUN_DIR]
#
# DATA_DIR: the MNIST IDX folder (default: $GAN_JAX_DATA/mnist, or ~/gan_jax_data/mnist, where
# `python -m gan_jax.data.fetch mnist` puts it); RUN_DIR: default runs/mnist_paper.
# On one accelerator the 2,000-epoch run takes minutes (docs/PAPER.md); on 2 CPU cores it takes days.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "error: unknown option $1; usage: $0 [DATA_DIR] [RUN_DIR]" >&2; exit 2 ;;
esac
DATA="${1:-${GAN_JAX_DATA:-$HOME/gan_jax_data}/mnist}"
RUN="${2:-runs/mnist_paper}"
PY="${PYTHON:-python}"

# 1. The paper's MNIST model with the reference code's hyperparameters; a checkpoint every 20 epochs.
"$PY" -m gan_jax.main --config=experiments/configs/mnist_paper.py --workdir="$RUN" \
  --config.data.dir="$DATA" --config.checkpoint_every=10000 --config.keep_checkpoints=200 \
  --config.sample_every=10000
# 2. Table 1: the newest checkpoint's Parzen log-likelihood beside the paper's rows and baselines.
"$PY" -m gan_jax.paper.table1 --workdir="$RUN" --dataset_dir="$DATA" --out=docs/table1.md
# 3. The Parzen log-likelihood of every kept checkpoint, and its curve.
"$PY" -m gan_jax.paper.trajectory --workdir="$RUN" --dataset_dir="$DATA"
cp "$RUN/paper/parzen_trajectory.png" docs/figures/parzen_trajectory.png
# 4. Figures 2 and 3 from the newest checkpoint; Figure 1 from a freshly trained 1-D GAN.
"$PY" -m gan_jax.paper.figures --workdir="$RUN" --dataset_dir="$DATA" --out=docs/figures
"$PY" -m gan_jax.paper.figure1 --out=docs/figures/figure1.png
# 5. Algorithm 1's alternating update against the simultaneous one (short runs).
"$PY" experiments/paper/compare_updates.py --out=runs/paper_updates --epochs=6 --dataset_dir="$DATA"
