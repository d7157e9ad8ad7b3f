"""The streamed pipeline's speed: images/s alone, and DCGAN iterations/s with and without it.

  python -m gan_jax.bench.stream --folder=DIR [--make=50000] [--batch_size=64] [--iters=2]
                                 [--rounds=12] [--quick] [--json_out=PATH]

`--make=N` first writes N 64x64 RGB PNGs (smooth colour fields with noise, about 5 KB each) into DIR,
which must be new or empty; without it DIR must already hold images (any size: they are centre-cropped
and resized to 64x64).

Rows:
  pipeline  the Grain iterator alone (`gan_jax.data.stream`, as a streamed run builds it): decoded
            64x64 images per second, `data.workers` threads (0: one per core);
  device    a 64x64 DCGAN (experiments/configs/dcgan_32.py with a fourth layer: G 512-256-128-64,
            D 64-128-256-512; `--quick` divides the widths by 4) trained on synthetic uint8 images
            resident on the device: the ceiling;
  stream    the same DCGAN trained from the folder as `gan_jax.train` does it: each dispatch's batches
            taken from the iterator while the previous dispatch runs, placed by `parallel.Runner`.

The two training rows are timed round-robin, `--iters` iterations (one per dispatch, as on a CPU) per
round and pipeline, who goes first alternating. Each row reports its best round, `stream/device` the
ratio of the two, and the report adds each round's paired ratio and their median (their spread is the
measurement's noise). Compilation is left out.
"""

import datetime
import os
import sys
import time

import jax
import numpy as np
from absl import flags

from gan_jax import cli, parallel
from gan_jax.bench.configs import QUICK_WIDTH_DIVISOR, bench_config
from gan_jax.core import build
from gan_jax.data import pipeline, stream
from gan_jax.errors import UserError
from gan_jax.run import environment, files

RESOLUTION = 64


def make_folder(directory: str, count: int, seed: int = 0, log=print) -> None:
  """Writes `count` 64x64 RGB PNGs into `directory` (new or empty: nothing is overwritten)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if os.path.isdir(directory) and os.listdir(directory):
    raise UserError(f"--make writes into a new or empty folder, but {directory} holds files; pass another "
                    "--folder, or drop --make to use the images already there")
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:RESOLUTION, 0:RESOLUTION] / RESOLUTION
  t0 = time.perf_counter()
  for i in range(count):
    a = rng.uniform(0, 255, (3, 3))
    field = a[:, 0, None, None] + a[:, 1, None, None] * xx + a[:, 2, None, None] * yy
    noise = rng.normal(0, 12, (3, RESOLUTION, RESOLUTION))
    image = np.clip(field + noise, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(image).save(os.path.join(directory, f"{i:06d}.png"))
    if (i + 1) % 10000 == 0 or i + 1 == count:
      log(f"made {i + 1}/{count} PNGs ({(i + 1) / (time.perf_counter() - t0):.0f}/s)")


def dcgan64_config(folder_dir: str, batch_size: int, quick: bool):
  """The 64x64 DCGAN of the rows (see the module docstring), reading `folder_dir` streamed."""
  c = bench_config("dcgan32", "float32", False, batch_size)
  c.model.g_channels, c.model.d_channels = (512, 256, 128, 64), (64, 128, 256, 512)
  if quick:
    c.model.g_channels = tuple(w // QUICK_WIDTH_DIVISOR for w in c.model.g_channels)
    c.model.d_channels = tuple(w // QUICK_WIDTH_DIVISOR for w in c.model.d_channels)
  c.data.update(dict(source="folder", name="folder64", dir=folder_dir, resolution=RESOLUTION, channels=3,
                     pipeline="stream", num_train=10**9))
  c.steps_per_dispatch = 1
  return c


def pipeline_rate(records, batch_size: int, batches: int, workers: int) -> float:
  """Images/s of the Grain iterator alone, after `batches // 4` warm-up batches."""
  order = stream.StreamOrder(len(records), batch_size, seed=0)
  it = stream.make_iterator(records, order, workers)
  stream.take(it, max(batches // 4, 1))
  t0 = time.perf_counter()
  stream.take(it, batches)
  return batches * batch_size / (time.perf_counter() - t0)


def training_rates(config, streamed: pipeline.Data, iters: int, rounds: int, log=print) -> dict:
  """{'device': [it/s per round], 'stream': [...]}: `rounds` round-robin rounds of `iters` iterations
  each (the order alternating between rounds); `streamed` is `pipeline.build_data(config)`."""
  images = np.random.default_rng(0).integers(0, 256, (4096,) + streamed.records.example_shape, np.uint8)
  x, scale, shape = pipeline.prepare_images(images, config.data)
  synthetic = pipeline.Data(pipeline.Sampler(example_shape=shape, num_examples=len(x), scale=scale),
                            {"train": x}, None, "synthetic", image_shape=images.shape[1:], display_scale=scale)
  cases = {}
  for name, data in (("device", synthetic), ("stream", streamed)):
    gan = build.build_gan(config, data)
    runner = parallel.Runner(gan, "none")
    state = runner.put(gan.init(config.seed, None))
    feed = None
    if name == "stream":
      order = stream.StreamOrder(len(data.records), config.batch_size, config.seed)
      feed = stream.make_iterator(data.records, order, config.data.workers)
    cases[name] = {"runner": runner, "state": state, "feed": feed, "t": 0,
                   "arrays": None if feed else runner.put(data.arrays)}
  draws = config.k_disc_steps

  def next_arrays(case):
    if case["feed"] is None:
      return case["arrays"]
    images, _ = stream.take(case["feed"], draws)
    arrays = case["runner"].put_stream({"stream": images}, case["t"])
    case["t"] += draws
    return arrays

  def run(case, n):
    arrays = case.pop("pending") if "pending" in case else next_arrays(case)
    for _ in range(n):
      case["state"], metrics = case["runner"].run(case["state"], arrays, 1, "none")
      arrays = next_arrays(case)  # read while the dispatch runs, as the trainer does
    jax.block_until_ready((case["state"], metrics))
    case["pending"] = arrays  # taken ahead; the next round starts from here
    return metrics

  for name, case in cases.items():  # compile and warm up
    t0 = time.perf_counter()
    run(case, 1)
    log(f"{name}: compiled and warmed up in {time.perf_counter() - t0:.1f} s")
  rates = {name: [] for name in cases}
  for r in range(rounds):
    names = list(cases) if r % 2 == 0 else list(cases)[::-1]  # alternate who goes first
    for name in names:
      t0 = time.perf_counter()
      run(cases[name], iters)
      rates[name].append(iters / (time.perf_counter() - t0))
      log(f"round {r + 1}/{rounds} {name}: {rates[name][-1]:.4f} it/s")
  return rates


# Flags that must be at least 1 (`--make` and `--workers` may be 0).
_POSITIVE = ("batch_size", "pipeline_batches", "iters", "rounds")


def check_flags(values: dict) -> None:
  """One `UserError` for the first bad flag value, before anything is read or written."""
  if not values.get("folder"):
    raise UserError("--folder is required: a folder of images, or a new one with --make=N")
  for name in _POSITIVE:
    if values[name] < 1:
      raise UserError(f"--{name} must be at least 1, got {values[name]}")
  for name in ("make", "workers"):
    if values[name] < 0:
      raise UserError(f"--{name} must be 0 or more, got {values[name]}")
  if values.get("json_out"):  # checked before minutes of timing, not after
    files.check_destination(values["json_out"], "--json_out")


# The data layer's errors name config keys; this command's flags for them.
_FLAG_OF_KEY = {"--config.data.dir": "--folder", "--config.batch_size": "--batch_size",
                "--config.data.bad_files": "--bad_files", "--config.data.workers": "--workers"}


def _main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  check_flags({name: f[name].value for name in ("folder", "make", "workers", "json_out", *_POSITIVE)})
  if f.make:
    make_folder(f.folder, f.make)
  config = dcgan64_config(os.path.abspath(f.folder), f.batch_size, f.quick)
  config.data.workers, config.data.bad_files = f.workers, f.bad_files
  try:
    streamed = pipeline.build_data(config)
  except UserError as e:
    message = str(e)
    for key, flag in _FLAG_OF_KEY.items():
      message = message.replace(key, flag)
    raise UserError(message) from None
  opened_records = streamed.records
  print(f"{len(opened_records)} images in {f.folder}; batch {f.batch_size}", flush=True)
  rate = pipeline_rate(opened_records, f.batch_size, f.pipeline_batches, f.workers)
  print(f"pipeline: {rate:.0f} images/s ({stream.default_workers(f.workers)} decoding threads)", flush=True)
  rates = training_rates(config, streamed, f.iters, f.rounds, log=lambda s: print(s, flush=True))
  report = {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
      "command": "python -m gan_jax.bench.stream " + " ".join(sys.argv[1:]),
      "versions": environment.versions(), "workers": stream.default_workers(f.workers),
      "images": len(opened_records), "batch_size": f.batch_size, "quick": f.quick,
      "g_channels": list(config.model.g_channels), "d_channels": list(config.model.d_channels),
      "pipeline_images_per_s": round(rate, 1),
      "device_iters_per_s": round(max(rates["device"]), 4), "stream_iters_per_s": round(max(rates["stream"]), 4),
      "stream_over_device": round(max(rates["stream"]) / max(rates["device"]), 4),
      # Each round's stream rate over the device rate of the same round: the spread shows the noise.
      "paired_ratios": [round(s / d, 4) for s, d in zip(rates["stream"], rates["device"])],
      "median_paired_ratio": round(float(np.median([s / d for s, d in zip(rates["stream"], rates["device"])])), 4),
      "rounds": {k: [round(v, 4) for v in vs] for k, vs in rates.items()},
      "pipeline_images_per_s_needed": round(max(rates["device"]) * f.batch_size * config.k_disc_steps, 1),
  }
  print(f"\n{report['device']} ({report['cpu_count']} cores), {report['date']}, {report['command']}")
  print(f"pipeline alone       {report['pipeline_images_per_s']:>10.1f} images/s "
        f"(training at the ceiling needs {report['pipeline_images_per_s_needed']:.1f})")
  print(f"DCGAN-64, device     {report['device_iters_per_s']:>10.4f} it/s")
  print(f"DCGAN-64, stream     {report['stream_iters_per_s']:>10.4f} it/s")
  print(f"stream/device        {report['stream_over_device']:>10.4f} (best over best); median of the "
        f"{f.rounds} paired rounds {report['median_paired_ratio']:.4f} (min {min(report['paired_ratios']):.4f}, "
        f"max {max(report['paired_ratios']):.4f})")
  if f.json_out:
    files.atomic_write_json(f.json_out, report, indent=2)
    print(f"wrote {f.json_out}")


flags.DEFINE_string("folder", "", "Folder of images (with --make: a new or empty folder to fill).")
flags.DEFINE_integer("make", 0, "First write this many 64x64 PNGs into --folder.")
flags.DEFINE_integer("batch_size", 64, "Batch size of the pipeline and the DCGAN.")
flags.DEFINE_integer("workers", 0, "Decoding threads (0: one per CPU core).")
flags.DEFINE_enum("bad_files", "error", ["error", "skip"], "An unusable image: stop naming it, or skip it.")
flags.DEFINE_integer("pipeline_batches", 200, "Batches timed for the pipeline-alone row.")
flags.DEFINE_integer("iters", 2, "Iterations per pipeline per timed round.")
flags.DEFINE_integer("rounds", 12, "Round-robin rounds; the best is reported.")
flags.DEFINE_bool("quick", False, "DCGAN widths divided by 4 (for a quick look on a CPU).")
flags.DEFINE_string("json_out", "", "Write the report as JSON here.")

if __name__ == "__main__":
  sys.exit(cli.run(_main))
