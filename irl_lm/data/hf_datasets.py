"""A seqio source over Hugging Face ``datasets`` on local disk: a ``save_to_disk`` directory,
or a JSON / JSON Lines, CSV or Parquet file per split (``datasets.load_dataset``). Rows have
the reward-labelled JSONL format (``irl_lm.data.jsonl``), their columns named by ``Fields``.
Nothing is downloaded: a hub name without a local copy says how to make one."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from irl_lm.data.chat import ChatTemplate
from irl_lm.data.jsonl import DEFAULT_FIELDS, Fields, JsonlFormatError, parse_row, to_columns
from irl_lm.data.sources import InMemorySource
from irl_lm.errors import InputError, MissingError

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def _datasets() -> Any:
  try:
    import datasets  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise MissingError("data.task='hf_dataset' needs the datasets package",
                       expected="pip install 'irl_lm[datasets]'") from None
  return datasets


def load_split(path: str, files: Mapping[str, str], split: str) -> Any:
  """The rows of ``split``: from the ``save_to_disk`` directory ``path``, else from the file
  ``files[split]``."""
  datasets = _datasets()
  if path:
    if not os.path.isdir(path):
      if not os.path.exists(path) and _HUB_NAME.match(path) and not path.startswith("."):
        raise MissingError(
            f"{path!r} is no local directory, and irl_lm never downloads at run time; save it "
            f"once where the Hub is reachable: python -c \"import datasets; "
            f"datasets.load_dataset('{path}').save_to_disk('DIR')\", then pass "
            "config.data.hf_dataset.path=DIR")
      raise MissingError("dataset directory not found", where=path)
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
      if split not in loaded:
        raise InputError(f"the dataset has no split {split!r}", where=path,
                         expected=f"one of {sorted(loaded)}", found=repr(split))
      return loaded[split]
    if split != "train":
      raise InputError(f"the dataset is one Dataset (the train split), not split {split!r}",
                       where=path)
    return loaded
  file = files[split]
  kind = FILE_FORMATS.get(os.path.splitext(file)[1].lower())
  if kind is None:
    raise InputError("not a file datasets reads here", where=file,
                     expected=f"a name ending in one of {sorted(FILE_FORMATS)}")
  if not os.path.isfile(file):
    raise MissingError("data file not found", where=file)
  return datasets.load_dataset(kind, data_files={split: file}, split=split)


class HfDatasetSource(InMemorySource):
  """Splits of a local Hugging Face dataset as reward-labelled rows (``fields`` names the
  columns; chat rows need ``chat_template``); a bad row raises naming source and row."""

  def __init__(self, path: str, files: Mapping[str, str], splits: tuple[str, ...],
               chat_template: ChatTemplate | None = None, fields: Fields = DEFAULT_FIELDS):
    self.path, self.files = path, dict(files)
    self.chat_template, self.fields = chat_template, fields
    super().__init__(self._load, splits=splits)

  def _load(self, split: str) -> dict[str, np.ndarray]:
    rows = load_split(self.path, self.files, split)
    where = self.path or self.files[split]
    parsed = []
    for i, row in enumerate(rows):
      try:
        parsed.append(parse_row(row, self.chat_template, self.fields))
      except ValueError as e:  # a malformed row, or a chat row without a template
        raise JsonlFormatError(f"{where}, split {split}, row {i}: {e}") from None
    if not parsed:
      raise JsonlFormatError(f"{where}, split {split}: no rows")
    return to_columns(parsed)
