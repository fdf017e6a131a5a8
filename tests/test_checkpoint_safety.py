"""Checkpoint retention and restore rules: nothing saved is lost, unreadable ones are skipped."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from irl_lm.errors import InputError
from irl_lm.training.checkpoints import UNREADABLE_DIR, Checkpointer


def _train(keep: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(keep_checkpoints=keep, best_metric="", best_mode="max",
                                        async_checkpoints=True))


def _state(step: int, width: int = 3) -> dict:
  return {"step": jnp.asarray(step), "w": jnp.full((width,), float(step))}


def _abstract(width: int = 3):
  state = jax.eval_shape(lambda: _state(0, width))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return state, jax.tree.map(lambda _: sharding, state)


def _save(workdir: str, keep: int, steps: list[int]) -> None:
  ckpt = Checkpointer(workdir, _train(keep))
  for s in steps:
    ckpt.save(s, _state(s), {"position": s})
  ckpt.close()


def test_keep_zero_keeps_every_checkpoint(tmp_path):
  _save(str(tmp_path), 2, [1, 2])
  _save(str(tmp_path), 0, [3, 4, 5])
  assert Checkpointer(str(tmp_path), _train(0)).all_steps() == [1, 2, 3, 4, 5]


def test_old_checkpoints_go_only_after_a_newer_one_commits(tmp_path):
  _save(str(tmp_path), 0, [1, 2, 3])
  ckpt = Checkpointer(str(tmp_path), _train(1))
  assert ckpt.all_steps() == [1, 2, 3]  # opening (and resuming) deletes nothing
  step, state, data = ckpt.restore_latest(*_abstract())
  assert step == 3 and data == {"position": 3}
  ckpt.save(4, _state(4), {"position": 4})
  ckpt.close()
  assert Checkpointer(str(tmp_path), _train(1)).all_steps() == [4]


def test_unreadable_newest_is_skipped_and_set_aside(tmp_path):
  _save(str(tmp_path), 0, [1, 2])
  os.remove(tmp_path / "checkpoints" / "2" / "state" / "_METADATA")
  ckpt = Checkpointer(str(tmp_path), _train(3))
  step, state, _ = ckpt.restore_latest(*_abstract())
  assert step == 1
  np.testing.assert_array_equal(state["w"], [1.0, 1.0, 1.0])
  aside = os.listdir(tmp_path / UNREADABLE_DIR)
  assert len(aside) == 1 and aside[0].startswith("2.")
  assert os.path.exists(tmp_path / UNREADABLE_DIR / aside[0] / "state")  # moved, not deleted
  assert ckpt.all_steps() == [1]
  ckpt.save(2, _state(2), {"position": 2})  # the step can be saved again
  ckpt.close()


def test_readers_do_not_move_anything(tmp_path):
  _save(str(tmp_path), 0, [1, 2])
  os.remove(tmp_path / "checkpoints" / "2" / "state" / "_METADATA")
  ckpt = Checkpointer(str(tmp_path), _train(3))
  assert ckpt.restore_latest(*_abstract(), set_aside=False)[0] == 1
  assert ckpt.all_steps() == [1, 2] and not os.path.exists(tmp_path / UNREADABLE_DIR)


def test_nothing_restorable_leaves_everything_in_place(tmp_path):
  _save(str(tmp_path), 0, [1, 2])
  for s in (1, 2):
    os.remove(tmp_path / "checkpoints" / str(s) / "state" / "_METADATA")
  ckpt = Checkpointer(str(tmp_path), _train(3))
  with pytest.raises(InputError, match=r"no checkpoint in the workdir can be restored; all were "
                                       r"left in place .*step 2: .*step 1: "):
    ckpt.restore_latest(*_abstract())
  assert ckpt.all_steps() == [1, 2]


def test_checkpoint_of_another_shape_names_the_difference(tmp_path):
  _save(str(tmp_path), 0, [1])
  ckpt = Checkpointer(str(tmp_path), _train(3))
  with pytest.raises(InputError, match=r"checkpoint of another run .*expected this run vs found "
                                       r".*\(step 1; w: this config \(5,\), checkpoint \(3,\)\)"):
    ckpt.restore_latest(*_abstract(width=5), run="this run")
  assert ckpt.all_steps() == [1]


def test_model_config_written_before_kind_still_reads(tmp_path):
  """A workdir from before ModelConfig.kind (``family``, ``value_heads``) still loads."""
  import dataclasses
  import json
  from irl_lm.models import preset
  from irl_lm.training.checkpoints import MODEL_FILE, read_model_config
  for name in ("t5-tiny", "gpt2-tiny"):
    cfg = preset(name)
    old = {k: v for k, v in dataclasses.asdict(cfg).items()
           if k not in ("kind", "activation", "gated_mlp", "norm", "position", "use_bias",
                        "scaled_attention")}
    old.update(family="t5" if cfg.kind == "encdec" else "decoder", value_heads=True)
    (tmp_path / MODEL_FILE).write_text(json.dumps(old))
    assert read_model_config(str(tmp_path)) == cfg
