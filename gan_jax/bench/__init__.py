"""Speed: the gan_jax trainer against a bare JAX loop of the same arithmetic (`python -m gan_jax.bench`).

  configs.py    the two benchmark models' configs (the experiments') and synthetic data for them
  reference.py  the ceiling: the same models, optimizer and data gather written as plain JAX
  flops.py      analytic FLOPs per iteration; the device's measured matmul rate
  timing.py     the rows (trainer step/scan, vmapped seeds, bf16, bare), timed round-robin
  profile.py    where a step's time goes (a jax.profiler trace, by kind and pass)
  agenda.py     `python -m gan_jax.bench.agenda`: the rows the targets need and the paper's MNIST run on one
                accelerator, with one JSON and one Markdown report (docs/PERFORMANCE.md)
  vmap.py       `python -m gan_jax.bench.vmap`: N vmapped seeds against one run; `--check` accuracy
  __main__.py   the command line (docs/PERFORMANCE.md)
"""
