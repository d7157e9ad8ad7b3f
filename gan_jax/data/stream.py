"""Training data streamed from the host, for data sets that do not fit on the device.

`data.pipeline='stream'` (or 'auto' for a training split over `data.device_limit_mb`): instead of
holding the whole split on the device, the host reads the examples of each dispatch with Grain and
hands them to the update as one block (`gan_jax.data.pipeline.Sampler` reads it). Image folders and
TFDS data sets are read record by record, decoded on demand; the small sources (idx, cifar10,
digits) stream from a host copy.

Order. With N training records, global batch B and S = N // B batches an epoch (the last N mod B
records of each epoch's order are left out, as on the device path), global batch t of the run holds
the slots (t mod S)·B ... (t mod S)·B + B - 1 of epoch e = t // S, and slot s of epoch e is record
`index_shuffle(s, N - 1, seed_e)`: Grain's permutation, computed per index in O(1) memory (no N-long
array, so it scales to any N), seeded from (seed, e) alone. The order is a pure function of (seed,
epoch); it is not the device path's order (`jax.random.permutation`), so the two pipelines train on
the same examples in different orders and do not give the same parameters.

Processes. Process p of P reads the slots p·b ... p·b + b - 1 of every global batch, b = B / P: the
processes read disjoint records (each reads only its own shard of every batch), and the batch the
devices see together is the same whatever P is, so the numbers do not depend on the process count.

Pipeline (Grain): `MapDataset.range` over this process's element j -> record index -> decoded uint8
example -> batches of b -> an iterator whose `data.workers` threads decode and prefetch while the
device trains. The iterator's state, `{"next_index": t}`, counts the batches taken; every checkpoint
holds it (Grain's Orbax handler, one file per process) and a resumed run restarts the iterator there,
so a run killed mid-epoch and resumed trains on exactly the batches an uninterrupted one does.
"""

import dataclasses
import functools
import os

import numpy as np
from absl import logging

from gan_jax.data import folder as folder_lib, tfds_source
from gan_jax.errors import UserError

PIPELINES = ("auto", "device", "stream")
SHUFFLE_ROUNDS = 4  # Grain's own shuffle uses 4 rounds of its permutation
_MAX_WORKERS = 16


@functools.lru_cache(maxsize=16)  # called for every record; an epoch's records share it
def epoch_seed(seed: int, epoch: int) -> int:
  """The permutation seed of `epoch`: a pure function of (seed, epoch), in [0, 2**32)."""
  return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class StreamOrder:
  """Which records process `process_index` of `process_count` reads for each global batch."""

  num_records: int
  global_batch: int
  seed: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    check_shards(self.num_records, self.global_batch, self.process_count)

  @property
  def local_batch(self) -> int:
    return self.global_batch // self.process_count

  @property
  def steps_per_epoch(self) -> int:
    return self.num_records // self.global_batch

  def record(self, j: int) -> int:
    """The record index of this process's element j (element j is example j % b of batch j // b)."""
    import grain  # pylint: disable=g-import-not-at-top  (only streamed runs need Grain)

    t, i = divmod(int(j), self.local_batch)
    epoch, position = divmod(t, self.steps_per_epoch)
    slot = position * self.global_batch + self.process_index * self.local_batch + i
    return int(grain.experimental.index_shuffle(slot, self.num_records - 1, epoch_seed(self.seed, epoch),
                                                 SHUFFLE_ROUNDS))

  def batch_records(self, t: int) -> np.ndarray:
    """int64 [b]: the records of this process's part of global batch t."""
    b = self.local_batch
    return np.asarray([self.record(t * b + i) for i in range(b)], np.int64)


def check_shards(num_records: int, global_batch: int, process_count: int) -> None:
  """One `UserError` line for a batch or process count the records cannot be split into."""
  if global_batch % process_count:
    raise UserError(f"batch_size {global_batch} is not divisible by the {process_count} processes; use a "
                    f"multiple of {process_count}")
  if num_records < global_batch:
    who = f" across {process_count} processes" if process_count > 1 else ""
    raise UserError(f"the training split has {num_records} records, fewer than one batch of {global_batch}"
                    f"{who}: every process would read an empty shard; lower --config.batch_size"
                    f"{' or use fewer processes' if process_count > 1 else ''}, or add data")


# ---------------------------------------------------------------------------------------- records
class ArrayRecords:
  """Records held in host memory (the small sources): uint8 [N, H, W, C] images, int32 labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray | None):
    self.images, self.labels = images, labels
    self.example_shape = tuple(images.shape[1:])

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return self.images[i], (-1 if self.labels is None else int(self.labels[i]))

  def mean_sum(self, limit: int, process_index: int = 0, process_count: int = 1):
    return _mean_sum(self, limit, process_index, process_count)


class FolderRecords:
  """The images of a folder (`gan_jax.data.folder`), decoded when read.

  `bad_files='error'`: an unusable file is a `UserError` naming it, when it is read. 'skip': it is
  replaced by the next usable file in the split's order (a pure function of the files, so a resumed
  run reads the same), and the replacements are counted in `skipped` and logged once each.
  """

  def __init__(self, directory, files, labels, resolution, channels, bad_files):
    self.directory, self.files, self.labels = directory, tuple(files), labels
    self.resolution, self.channels, self.bad_files = int(resolution), channels, bad_files
    self.skipped = set()
    self.example_shape = self._probe_shape()

  def __len__(self):
    return len(self.files)

  def _probe_shape(self) -> tuple:
    """The examples' shape: of the first usable file (every process opens it once, at set-up)."""
    if self.resolution:
      return (self.resolution, self.resolution, self.channels)
    return tuple(self._usable(0)[1].shape)

  def _load(self, i):
    path = os.path.join(self.directory, self.files[i])
    image = folder_lib.load_image(path, self.resolution, self.channels)
    shape = getattr(self, "example_shape", None)
    if shape is not None and image.shape != shape:
      raise folder_lib.BadImage(f"it is {image.shape[1]}x{image.shape[0]}x{image.shape[2]}, not "
                                f"{shape[1]}x{shape[0]}x{shape[2]} like the others; set "
                                "--config.data.resolution=SIZE to crop and resize every image")
    return image

  def _usable(self, i):
    """(j, image) of the first usable file from index i on, in the split's order (wrapping round)."""
    for k in range(len(self.files)):
      j = (int(i) + k) % len(self.files)
      try:
        return j, self._load(j)
      except folder_lib.BadImage as e:
        path = os.path.join(self.directory, self.files[j])
        if self.bad_files == "error":
          raise folder_lib.unusable(path, e) from None
        if j not in self.skipped:
          self.skipped.add(j)
          logging.warning("skipping unusable image %s (%s): the next usable one takes its place", path, e)
    raise UserError(f"image folder {self.directory} has no usable image among its {len(self.files)} "
                    "training files; fix them, or pass another --config.data.dir")

  def __getitem__(self, i):
    j, image = self._usable(i)
    return image, (-1 if self.labels is None else int(self.labels[j]))

  def mean_sum(self, limit: int, process_index: int = 0, process_count: int = 1):
    return _mean_sum(self, limit, process_index, process_count)


class TfdsRecords:
  """The records of a prepared TFDS split (`tfds.data_source`), decoded when read."""

  def __init__(self, source, name: str):
    self.source, self.name = source, name
    image, label = tfds_source.example(source[0], name)
    self.example_shape = tuple(image.shape)
    self.has_labels = label >= 0

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    image, label = tfds_source.example(self.source[int(i)], self.name)
    if image.shape != self.example_shape:
      raise UserError(f"TFDS data set {self.name!r} has images of different shapes ({self.example_shape} "
                      f"and {image.shape}, record {int(i)}); choose a data set with a fixed image size")
    return image, label

  def mean_sum(self, limit: int, process_index: int = 0, process_count: int = 1):
    return _mean_sum(self, limit, process_index, process_count)


def _mean_sum(records, limit: int, process_index: int, process_count: int):
  """(sum, count) of this process's part of the mean example: of up to `limit` records spread evenly
  over the set, process p sums every P-th, so the processes read disjoint records; the trainer adds
  the processes' sums (float64, uint8 units)."""
  n = len(records)
  index = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
  total = np.zeros(records.example_shape, np.float64)
  for i in index[process_index::process_count]:
    total += records[i][0]
  return total, len(index)


# ---------------------------------------------------------------------------------------- iterator
def default_workers(workers: int) -> int:
  """`data.workers`: 0 picks one decoding thread per CPU core (at most 16)."""
  if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
    raise UserError(f"config.data.workers must be an integer >= 0 (0: one per CPU core), got {workers!r}")
  return int(workers) or min(_MAX_WORKERS, os.cpu_count() or 1)


def make_iterator(records, order: StreamOrder, workers: int = 0, prefetch: int = 0, start: int = 0):
  """A Grain iterator of this process's batches, from global batch `start` on.

  Each item is (images uint8 [b, H, W, C], labels int32 [b]; -1 where the records have none).
  `workers` threads decode and prefetch `prefetch` batches ahead (0: four per worker).
  """
  import grain  # pylint: disable=g-import-not-at-top

  workers = default_workers(workers)

  def batch_fn(examples):
    return (np.stack([x for x, _ in examples]), np.asarray([y for _, y in examples], np.int32))

  ds = (grain.MapDataset.range(0, 2**62)
        .map(order.record)
        .map(records.__getitem__)
        .batch(order.local_batch, drop_remainder=True, batch_fn=batch_fn))
  it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=workers,
                                                 prefetch_buffer_size=prefetch or 4 * workers)))
  if start:
    it.set_state({"next_index": int(start)})
  return it


def position(iterator) -> int:
  """The global batches an iterator of `make_iterator` has handed out (its Grain state)."""
  return int(iterator.get_state()["next_index"])


def take(iterator, count: int):
  """The next `count` batches stacked: (images uint8 [count, b, ...], labels int32 [count, b])."""
  parts = [next(iterator) for _ in range(count)]
  return np.stack([x for x, _ in parts]), np.stack([y for _, y in parts])
