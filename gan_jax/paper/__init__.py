"""The paper reproduction kit (Goodfellow et al. 2014): Table 1, its Parzen trajectory, Figures 1-3.

Each module is a command, run from the repository root (docs/REPRODUCTION.md has them all):

  table1      python -m gan_jax.paper.table1 --workdir=RUN       Parzen LL beside the paper's Table 1
  trajectory  python -m gan_jax.paper.trajectory --workdir=RUN   Parzen LL of every kept checkpoint
  figures     python -m gan_jax.paper.figures --workdir=RUN      Figure 2 (nearest neighbours), 3
  figure1     python -m gan_jax.paper.figure1 --out=FILE.png     trains the 1-D GAN, draws Figure 1

The library parts: `run` (reads a trained run without disturbing one still training), `nearest`
(nearest training example on device), `baselines` (the Theis et al. 2016 reference scores).
"""
