"""Which base model a set of LoRA adapters belongs to, by content: a run's workdir (whose
checkpoints leave the frozen base in ``init_from``) and an exported PEFT adapter record the
base's path and hash in ``base_model.json``; resuming, generating, exporting and loading
the adapter check that the base still hashes the same."""
from __future__ import annotations

import hashlib
import json
import os

import jax

from irl_lm.errors import InputError, MissingError

RECORD_FILE = "base_model.json"


def fingerprint(base: str) -> str:
  """SHA-256 over the names and bytes of a checkpoint directory's model weight files
  (``model*.safetensors``: not an adapter's, nor ILQL's head and trunk files)."""
  digest = hashlib.sha256()
  names = sorted(f for f in os.listdir(base) if f.startswith("model")
                 and f.endswith(".safetensors"))
  for name in names:
    digest.update(name.encode() + b"\0")
    with open(os.path.join(base, name), "rb") as f:
      for chunk in iter(lambda f=f: f.read(1 << 24), b""):
        digest.update(chunk)
  return digest.hexdigest()


def write(directory: str, base: str) -> None:
  """Records the checkpoint ``base`` in ``directory/base_model.json`` (process 0)."""
  if jax.process_index() == 0:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, RECORD_FILE), "w") as f:
      json.dump({"base": os.path.abspath(base), "sha256": fingerprint(base)}, f, indent=2)
      f.write("\n")


def check(directory: str, base: str, what: str) -> None:
  """``InputError`` naming both unless the checkpoint ``base`` hashes as the one recorded in
  ``directory`` (``what`` names the recorder: "this run", "this adapter")."""
  path = os.path.join(directory, RECORD_FILE)
  if not os.path.exists(path):
    raise MissingError(f"no {RECORD_FILE}: nothing records which base model {what} belongs "
                       "to", directory)
  with open(path) as f:
    want = json.load(f)
  found = fingerprint(base)
  if found != want["sha256"]:
    raise InputError(f"the base model differs from the one {what} was trained on: "
                     f"{os.path.abspath(base)} hashes to sha256 {found[:16]}, {what}'s was "
                     f"{want['base']} with sha256 {want['sha256'][:16]}", path)


def write_or_check(directory: str, base: str, what: str) -> None:
  """``write`` for a new record, else ``check``."""
  if os.path.exists(os.path.join(directory, RECORD_FILE)):
    check(directory, base, what)
  else:
    write(directory, base)
