"""A read-only TFDS source that never downloads and explains how to prepare a missing dataset."""
import contextlib
import os
from collections.abc import Iterator, Sequence

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from irl_lm.errors import MissingError

# Datasets whose source files cannot be fetched by `tfds build` alone.
MANUAL_DOWNLOAD_NOTES = {
    "xsum": (
        "XSUM needs a manual download: fetch the BBC articles with the scripts at "
        "https://github.com/EdinburghNLP/XSum (XSum-Dataset/README.md), put "
        "xsum-extracts-from-downloads.tar.gz in a directory MANUAL_DIR, then run\n"
        "  tfds build xsum --data_dir={data_dir} --manual_dir=MANUAL_DIR"),
}


class DatasetNotPreparedError(MissingError):
  """A TFDS dataset is not prepared in the data directory; the message says how to prepare it."""


def _prepare_instructions(tfds_name: str, data_dir: str | None) -> str:
  base = tfds_name.split(":")[0]
  dataset = base.split("/")[0]
  shown_dir = data_dir or "~/tensorflow_datasets"
  where = f"TFDS dataset {base!r} is not prepared in {shown_dir}."
  if dataset in MANUAL_DOWNLOAD_NOTES:
    how = MANUAL_DOWNLOAD_NOTES[dataset].format(data_dir=shown_dir)
  else:
    how = (f"Prepare it once, on a machine with internet access:\n"
           f"  tfds build {base} --data_dir={shown_dir}\n"
           f"and copy that directory here if needed.")
  return (f"{where}\n{how}\nThen pass the directory as config.data.tfds_data_dir "
          f"(irl_lm never downloads at run time).")


def not_prepared(tfds_name: str, data_dir: str | None) -> str | None:
  """How to prepare ``tfds_name`` in ``data_dir`` if it is not prepared there (None if it is),
  read from the directory alone: no download, no vocabulary."""
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir, try_gcs=False)
    if tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
      return None
  except (AssertionError, KeyError, FileNotFoundError, ValueError, tf.errors.NotFoundError,
          tfds.core.registered.DatasetNotFoundError):
    pass
  return _prepare_instructions(tfds_name, data_dir)


class PreparedTfdsSource(seqio.TfdsDataSource):
  """`seqio.TfdsDataSource` in read-only mode with a clear error for unprepared data.

  Host sharding: file-level (TFDS input context) when the split has at least as
  many files as shards, otherwise every num_shards-th example of the shared order.
  """

  def __init__(self, tfds_name: str, tfds_data_dir: str | None = None,
               splits: Sequence[str] | dict[str, str] | None = None):
    super().__init__(tfds_name, tfds_data_dir=tfds_data_dir, splits=splits, read_only=True)
    self._tfds_name = tfds_name
    self._data_dir = tfds_data_dir

  @contextlib.contextmanager
  def _explain_missing(self) -> Iterator[None]:
    try:
      yield
    except (AssertionError, KeyError, FileNotFoundError, tf.errors.NotFoundError,
            tfds.core.registered.DatasetNotFoundError) as e:
      raise DatasetNotPreparedError(_prepare_instructions(self._tfds_name, self._data_dir)) from e

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def _num_files(self, split: str) -> int:
    try:
      return len(super().list_shards(split))
    except (AssertionError, KeyError, FileNotFoundError, tf.errors.NotFoundError):
      return 0

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, **kwargs) -> tf.data.Dataset:
    with self._explain_missing():
      if shard_info is None or shard_info.num_shards == 1:
        return super().get_dataset(split, shuffle, seed)
      if self._num_files(split) >= shard_info.num_shards:
        return super().get_dataset(split, shuffle, seed, shard_info)
      return super().get_dataset(split, shuffle, seed).shard(shard_info.num_shards,
                                                             shard_info.index)

  def num_input_examples(self, split: str) -> int:
    with self._explain_missing():
      return super().num_input_examples(split)
