"""The streamed pipeline (`data.pipeline='stream'`, gan_jax/data/stream.py): the order, the shards of
each process, the Grain iterator and its position, the sampler's reading of a block, the choice of
pipeline, bad input, and training that resumes after kill -9 and splits over processes and devices.

The images are generated here (small PNGs); nothing is downloaded.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_config, subprocess_env
from gan_jax import train
from gan_jax.data import pipeline, stream
from gan_jax.data.pipeline import DataState, Sampler
from gan_jax.errors import UserError
from gan_jax.run import reader

import test_reliability as rel


# ----------------------------------------------------------------------------- order and shards
def _epoch(order, epoch):
  s = order.steps_per_epoch
  return np.concatenate([order.batch_records(t) for t in range(epoch * s, (epoch + 1) * s)])


def test_order_is_a_pure_function_of_seed_and_epoch():
  order = stream.StreamOrder(num_records=50, global_batch=16, seed=3)
  assert order.steps_per_epoch == 3
  epochs = [_epoch(order, e) for e in range(3)]
  for records in epochs:  # an epoch reads 48 distinct records of the 50 (the last 2 of its order left out)
    assert len(records) == 48 and len(set(records.tolist())) == 48 and records.max() < 50
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  again = stream.StreamOrder(num_records=50, global_batch=16, seed=3)
  np.testing.assert_array_equal(_epoch(again, 2), epochs[2])  # epoch 2 without reading epochs 0 and 1
  other = stream.StreamOrder(num_records=50, global_batch=16, seed=4)
  assert not np.array_equal(_epoch(other, 0), epochs[0])


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_read_disjoint_shards_of_the_same_global_batches(processes):
  one = stream.StreamOrder(num_records=100, global_batch=16, seed=0)
  parts = [stream.StreamOrder(100, 16, 0, p, processes) for p in range(processes)]
  for t in range(20):  # several epochs
    shards = [part.batch_records(t) for part in parts]
    assert all(len(s) == 16 // processes for s in shards)
    np.testing.assert_array_equal(np.concatenate(shards), one.batch_records(t))
  reads = [set(np.concatenate([part.batch_records(t) for t in range(6)]).tolist()) for part in parts]
  for i in range(processes):  # within an epoch, no record is read by two processes
    for j in range(i + 1, processes):
      assert not reads[i] & reads[j]


def test_shard_errors():
  with pytest.raises(UserError, match=r"^the training split has 10 records, fewer than one batch of 16: "
                                      r"every process would read an empty shard; lower --config.batch_size"):
    stream.StreamOrder(10, 16, 0)
  with pytest.raises(UserError, match="fewer than one batch of 4 across 4 processes.*or use fewer processes"):
    stream.StreamOrder(3, 4, 0, 0, 4)
  with pytest.raises(UserError, match="batch_size 6 is not divisible by the 4 processes"):
    stream.check_shards(100, 6, 4)
  with pytest.raises(UserError, match="data.workers must be an integer >= 0"):
    stream.default_workers(-1)


# ----------------------------------------------------------------------------- Grain iterator
def _numbered(n, shape=(2, 2, 1)):
  """Records whose pixels all hold their index (mod 256) and whose label is index % 3."""
  images = (np.arange(n, dtype=np.int64)[:, None, None, None] % 256 * np.ones((1,) + shape)).astype(np.uint8)
  return stream.ArrayRecords(images, (np.arange(n) % 3).astype(np.int32))


def test_iterator_reads_the_order_and_restarts_at_its_position():
  records, order = _numbered(40), stream.StreamOrder(40, 8, seed=1)
  it = stream.make_iterator(records, order, workers=2)
  images, labels = stream.take(it, 7)  # crosses the epoch boundary at batch 5
  assert images.shape == (7, 8, 2, 2, 1) and labels.shape == (7, 8)
  for t in range(7):
    np.testing.assert_array_equal(images[t, :, 0, 0, 0], order.batch_records(t))
    np.testing.assert_array_equal(labels[t], order.batch_records(t) % 3)
  assert stream.position(it) == 7
  later = stream.make_iterator(records, order, workers=1, start=4)
  np.testing.assert_array_equal(stream.take(later, 3)[0], images[4:7])


# ----------------------------------------------------------------------------- the sampler
def test_sampler_reads_block_rows_and_starts_new_epochs():
  sampler = Sampler(example_shape=(4,), num_examples=30, scale="unit", stream_steps=3)
  state = sampler.init_state(jax.random.PRNGKey(0))
  assert state.perm.shape == (1,)  # no order on the device
  state = DataState(perm=state.perm, epoch=np.int32(0), position=np.int32(2))  # global batch 2 next
  block = np.arange(4 * 5 * 4, dtype=np.uint8).reshape(4, 5, 2, 2, 1)  # rows for batches 2..5, b = 5
  arrays = {"stream": block, "stream_start": np.int32(2)}
  seen = []
  for _ in range(4):
    x, state = sampler.next(arrays, state, None, np.zeros((5, 2)), 0, 5)
    seen.append(np.asarray(x))
  for row in range(4):
    np.testing.assert_allclose(seen[row], block[row].reshape(5, 4) / 255.0)
  assert (int(state.epoch), int(state.position)) == (1, 3)  # batches 3..5 are epoch 1's 0..2


# ----------------------------------------------------------------------------- choosing, bad input
def _digits(**data):
  c = load_config("digits", "smoke")
  for k, v in data.items():
    c.data[k] = v
  return c


def test_auto_streams_above_the_device_limit_and_says_so(caplog):
  caplog.set_level("INFO")
  assert pipeline.build_data(_digits()).pipeline == "device"
  data = pipeline.build_data(_digits(device_limit_mb=0.01))
  assert data.pipeline == "stream" and data.arrays == {} and len(data.records) == 1500
  assert data.sampler.stream_steps == 15 and data.example_shape == (64,)
  assert "data pipeline: stream (digits, 1500 records of 8x8x1; 0 MB > data.device_limit_mb=0.01)" in caplog.text
  forced = pipeline.build_data(_digits(pipeline="stream"))
  np.testing.assert_allclose(forced.mean_example, pipeline.build_data(_digits()).mean_example, atol=1e-6)


def test_auto_reads_an_in_memory_split_once(monkeypatch):
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  calls = []
  load = sources.load_images
  monkeypatch.setattr(sources, "load_images", lambda *a: calls.append(a[1]) or load(*a))
  for pipeline_name in ("auto", "device", "stream"):
    calls.clear()
    pipeline.build_data(_digits(pipeline=pipeline_name))
    assert calls == ["train"], (pipeline_name, calls)


@pytest.mark.parametrize("data,message", [
    ({"pipeline": "disk"}, "unknown data.pipeline 'disk'; choose one of"),
    ({"pipeline": "stream", "gcn": True}, "data.gcn normalises with statistics of the whole split"),
    ({"pipeline": "stream", "workers": -2}, "data.workers must be an integer >= 0"),
])
def test_bad_stream_settings(data, message):
  with pytest.raises(UserError, match=message):
    pipeline.build_data(_digits(**data))


def test_toy_data_cannot_stream():
  c = load_config("mog_2d", "smoke")
  c.data.pipeline = "stream"
  with pytest.raises(UserError, match="toy data is sampled on the device"):
    pipeline.build_data(c)


def _folder(path, n=48, size=8, classes=("a", "b")):
  """n grey PNGs of size x size in class sub-folders, each image's pixels one value."""
  for i in range(n):
    d = path / classes[i % len(classes)]
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), i * 5 % 256, np.uint8)).save(d / f"{i:03d}.png")
  return path


def _folder_config(directory, base="digits", **data):
  c = load_config(base, "smoke")
  c.data.update(dict(source="folder", name="", dir=str(directory), channels=1, resolution=0,
                     pipeline="stream", workers=2))
  c.data.update(data)
  c.batch_size = 16
  return c


def test_folder_records_bad_files(tmp_path):
  directory = _folder(tmp_path / "f", n=20)
  (directory / "a" / "004.png").write_bytes(b"not a png")  # a bad file
  Image.fromarray(np.zeros((9, 8), np.uint8)).save(directory / "b" / "007.png")  # another size
  files = sorted(os.path.relpath(os.path.join(r, f), directory) for r, _, fs in os.walk(directory) for f in fs)
  records = stream.FolderRecords(str(directory), files, None, 0, 1, "error")  # opens one file only
  assert records.example_shape == (8, 8, 1)
  bad = files.index(os.path.join("a", "004.png"))
  with pytest.raises(UserError, match=r"cannot use image .*a/004\.png: it is not a readable image .*"
                                      r"pass --config.data.bad_files=skip$"):
    records[bad]  # pylint: disable=pointless-statement
  with pytest.raises(UserError, match=r"b/007\.png: it is 8x9x1, not 8x8x1 like the others"):
    records[files.index(os.path.join("b", "007.png"))]  # pylint: disable=pointless-statement
  # Set-up reads the records of the mean example (all of a small set): the error comes at once.
  with pytest.raises(UserError, match=r"^cannot use image .*(a/004|b/007)\.png"):
    pipeline.build_data(_folder_config(directory))
  skipping = pipeline.build_data(_folder_config(directory, bad_files="skip")).records
  bad = skipping.files.index(os.path.join("a", "004.png"))
  np.testing.assert_array_equal(skipping[bad][0], skipping[(bad + 1) % len(skipping)][0])
  assert {skipping.files[i] for i in skipping.skipped} == {os.path.join("a", "004.png"), os.path.join("b", "007.png")}
  with pytest.raises(UserError, match="has no PNG or JPEG images"):
    (tmp_path / "empty").mkdir()
    pipeline.build_data(_folder_config(tmp_path / "empty"))
  with pytest.raises(UserError, match="the training split has 10 records, fewer than one batch of 16"):
    pipeline.build_data(_folder_config(_folder(tmp_path / "small", n=10)))


# ----------------------------------------------------------------------------- training
def _params(state):
  return jax.tree.map(np.asarray, {"g": state.g_params, "d": state.d_params})


def test_streamed_training_is_the_same_on_one_device_pmap_and_sharding(tmp_path):
  """A streamed run on a folder (class sub-folders as labels, a conditional DCGAN with batch norm in G)
  computes the same update on one device, under pmap over 8 devices and under jit with a Mesh, to
  float tolerance as on the device path. (The unconditional stream runs in the kill -9 and
  two-process tests below.)"""
  base, num_classes = "cdcgan_mnist", 2
  directory = _folder(tmp_path / "f")
  results = {}
  for mode in ("none", "pmap", "sharding"):
    c = _folder_config(directory, base)
    c.model.num_classes = num_classes
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 6, 3, 3, 6, 6
    c.parallel.mode, c.k_disc_steps = mode, 2
    c.optimizer.name, c.optimizer.g_lr, c.optimizer.d_lr = "sgd", 0.05, 0.05  # Adam would magnify rounding
    summary = train.train_and_evaluate(c, str(tmp_path / mode))
    assert summary["data_pipeline"] == "stream" and summary["parallel_mode"] == mode

    results[mode] = _params(reader.load_run(str(tmp_path / mode)).state)
    with open(tmp_path / mode / "checkpoints" / "6" / "data_iterator" / "process_0-of-1.json") as f:
      assert json.load(f) == {"next_index": 12}  # 6 steps of 2 batches
  for mode in ("pmap", "sharding"):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), results[mode],
                 results["none"])


def test_kill_minus_nine_mid_epoch_resumes_to_the_same_hash(xla_cache, tmp_path):
  """kill -9 while a checkpoint in the middle of an epoch is being written; the same command then
  resumes from the one before (its Grain position) and ends with the uninterrupted run's hash."""
  directory = _folder(tmp_path / "f", n=50)  # 3 batches of 16 an epoch
  overrides = {"data.source": "folder", "data.name": "", "data.dir": str(directory), "data.channels": 1,
               "data.pipeline": "stream", "data.workers": 2, "k_disc_steps": 2}
  straight = str(tmp_path / "straight")
  code, _, err = rel._finish(rel._start(straight, xla_cache, overrides))  # pylint: disable=protected-access
  assert code == 0, err
  with open(os.path.join(straight, "summary.json")) as f:
    expected = json.load(f)
  assert expected["data_pipeline"] == "stream" and expected["step"] == 40

  workdir = str(tmp_path / "run")
  proc = rel._start(workdir, xla_cache, overrides)  # pylint: disable=protected-access
  # Step 20 is global batch 40: epoch 13, position 1 of 3.
  rel._wait_until(proc, lambda: any(n.startswith("20.") for n in rel._tmp_dirs(workdir)), "the step-20 save")  # pylint: disable=protected-access
  proc.kill()
  rel._finish(proc)  # pylint: disable=protected-access
  assert rel._steps(workdir) == [10]  # pylint: disable=protected-access
  with open(os.path.join(workdir, "checkpoints", "10", "data_iterator", "process_0-of-1.json")) as f:
    assert json.load(f) == {"next_index": 20}
  code, _, err = rel._finish(rel._start(workdir, xla_cache, overrides))  # pylint: disable=protected-access
  assert code == 0 and "resuming from the checkpoint at step 10" in err, err
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["params_sha256"] == expected["params_sha256"]


# Each process of a 2-process streamed run records the records it decodes, then trains.
_DRIVER = r"""
import json, sys
from gan_jax import config as config_lib
from gan_jax.data import stream
config = config_lib.from_file(sys.argv[1])
for key, value in json.loads(sys.argv[2]).items():
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value
read = set()
_getitem = stream.FolderRecords.__getitem__
def _logged(self, i):
  read.add(int(i))
  return _getitem(self, i)
stream.FolderRecords.__getitem__ = _logged
from gan_jax import train
import jax
summary = train.train_and_evaluate(config, sys.argv[3])
print("SUMMARY", jax.process_index(), json.dumps(summary), json.dumps(sorted(read)), flush=True)
"""


def test_two_processes_read_disjoint_shards_and_train_like_one(tmp_path):
  """Two processes on localhost, one CPU device each: each decodes only its own records (disjoint),
  both end with the same parameters, equal (to float tolerance) to a single process's streamed run."""
  from test_parallel import _free_port  # pylint: disable=g-import-not-at-top
  directory = _folder(tmp_path / "f", n=50)
  overrides = {"data.source": "folder", "data.name": "", "data.dir": str(directory), "data.channels": 1,
               "data.pipeline": "stream", "data.workers": 1, "batch_size": 16, "num_steps": 6,
               "steps_per_dispatch": 3, "log_every": 3, "sample_every": 6, "checkpoint_every": 6,
               # SGD: Adam would magnify the rounding of sums over another device count
               "optimizer.name": "sgd", "optimizer.g_lr": 0.05, "optimizer.d_lr": 0.05}
  config_file = os.path.join(REPO, "experiments", "configs", "digits.py") + ":smoke"
  port = _free_port()
  runs = {"one": [{}], "two": [{"parallel.coordinator_address": f"localhost:{port}",
                                "parallel.num_processes": 2, "parallel.process_id": p} for p in range(2)]}
  procs, logs = [], []
  try:
    for name, members in runs.items():
      for i, extra in enumerate(members):
        logs.append(tmp_path / f"{name}{i}.log")
        with open(logs[-1], "w", encoding="utf-8") as log:
          procs.append(subprocess.Popen(
              [sys.executable, "-c", _DRIVER, config_file, json.dumps({**overrides, **extra}),
               str(tmp_path / name)], env=subprocess_env(1), cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    for p in procs:
      p.wait(timeout=400)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  outputs = [log.read_text(encoding="utf-8") for log in logs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  results = []
  for out in outputs:
    line = [l for l in out.splitlines() if l.startswith("SUMMARY")][-1]
    _, pid, rest = line.split(" ", 2)
    summary_text, read_text = rest.rsplit(" [", 1)
    results.append((int(pid), json.loads(summary_text), set(json.loads("[" + read_text))))
  (_, one, read_one), (_, first, read_0), (_, second, read_1) = results
  assert first["parallel_mode"] == "sharding" and first["num_devices"] == 2
  assert first["params_sha256"] == second["params_sha256"]
  # Process p decoded its 8 of each of the 6 batches of 16 (2 epochs of 3) and every other record for
  # its share of the mean example (all 50 records here); beyond those, only its own part of the batches
  # Grain prefetched (up to 4 per decoding thread ahead).
  order = [stream.StreamOrder(50, 16, 0, p, 2) for p in range(2)]
  for epoch in range(2):
    shards = [set(np.concatenate([o.batch_records(t) for t in range(3 * epoch, 3 * epoch + 3)]).tolist())
              for o in order]
    assert len(shards[0]) == len(shards[1]) == 24 and not shards[0] & shards[1]
  for p, read in enumerate((read_0, read_1)):
    own = lambda steps: set(np.concatenate([order[p].batch_records(t) for t in range(steps)]).tolist())  # pylint: disable=cell-var-from-loop
    assert own(6) | set(range(p, 50, 2)) <= read <= own(6 + 4) | set(range(p, 50, 2)), p
  np.testing.assert_allclose(first["d_loss"], one["d_loss"], rtol=1e-5)
  assert one["num_devices"] == 1
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               _params(reader.load_run(str(tmp_path / "two")).state),
               _params(reader.load_run(str(tmp_path / "one")).state))


def test_vmapped_runs_need_the_device_pipeline():
  from gan_jax import vmap  # pylint: disable=g-import-not-at-top
  configs = [_digits(pipeline="stream") for _ in range(2)]
  configs[1].seed = 1
  with pytest.raises(UserError, match="vmapped runs share one device-resident training split, but digits is "
                                      "streamed"):
    vmap.VmapGroup.build(configs)


def test_stream_benchmark_never_writes_into_a_folder_with_files(tmp_path):
  from gan_jax.bench import stream as bench_stream  # pylint: disable=g-import-not-at-top
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "mine.txt").write_text("a user's file")
  with pytest.raises(UserError, match="--make writes into a new or empty folder, but .*taken holds files"):
    bench_stream.make_folder(str(taken), 4)
  assert os.listdir(taken) == ["mine.txt"] and (taken / "mine.txt").read_text() == "a user's file"


GOOD_BENCH_FLAGS = {"folder": "DIR", "make": 0, "workers": 0, "batch_size": 64, "pipeline_batches": 200,
                    "iters": 2, "rounds": 12, "json_out": ""}


@pytest.mark.parametrize("flag,value,message", [
    ("folder", "", "--folder is required"), ("make", -3, "--make must be 0 or more, got -3"),
    ("workers", -1, "--workers must be 0 or more"), ("batch_size", 0, "--batch_size must be at least 1, got 0"),
    ("pipeline_batches", 0, "--pipeline_batches must be at least 1"), ("iters", 0, "--iters must be at least 1"),
    ("rounds", 0, "--rounds must be at least 1"),
    ("json_out", __file__ + "/report.json", "--json_out=.* cannot be made: .* is a file"),
])
def test_stream_benchmark_flags(flag, value, message):
  from gan_jax.bench import stream as bench_stream  # pylint: disable=g-import-not-at-top
  bench_stream.check_flags(GOOD_BENCH_FLAGS)
  with pytest.raises(UserError, match=message):
    bench_stream.check_flags(dict(GOOD_BENCH_FLAGS, **{flag: value}))


def test_stream_benchmark_bad_input_is_one_line(tmp_path):
  """Through the command (the flags' own checks are tested above): a folder without images, one with
  fewer images than a batch: each one `error:` line naming this command's flags, nothing made."""
  (tmp_path / "empty").mkdir()
  for args, message in ((["--folder=" + str(tmp_path / "empty")], "has no PNG or JPEG images; put .png/.jpg/.jpeg files in "
                                                        "it (or in one sub-folder per class), or pass another --folder"),
                        (["--folder=" + str(_folder(tmp_path / "few", n=3)), "--batch_size=8"],
                         "the training split has 3 records, fewer than one batch of 8: every process would read an "
                         "empty shard; lower --batch_size, or add data")):
    proc = subprocess.run([sys.executable, "-m", "gan_jax.bench.stream", *args], cwd=REPO, env=subprocess_env(1),
                          capture_output=True, text=True, timeout=120, check=False)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["empty", "few"] and not os.listdir(tmp_path / "empty")


@pytest.mark.slow
def test_stream_benchmark_end_to_end(tmp_path):
  """`python -m gan_jax.bench.stream` in a tiny form: it makes the folder, times the pipeline and both
  DCGAN rows, and writes the report."""
  out = tmp_path / "report.json"
  proc = subprocess.run(
      [sys.executable, "-m", "gan_jax.bench.stream", f"--folder={tmp_path / 'png'}", "--make=48", "--quick",
       "--batch_size=8", "--iters=1", "--rounds=1", "--pipeline_batches=2", f"--json_out={out}"],
      cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["images"] == 48 and report["pipeline_images_per_s"] > 0 and report["workers"] >= 1
  assert set(report["versions"]) >= {"jax", "flax", "numpy"}
  assert report["device_iters_per_s"] > 0 and report["stream_iters_per_s"] > 0
  assert report["stream_over_device"] == pytest.approx(report["stream_iters_per_s"] / report["device_iters_per_s"],
                                                       rel=1e-3)
  assert "stream/device" in proc.stdout and len(os.listdir(tmp_path / "png")) == 48
