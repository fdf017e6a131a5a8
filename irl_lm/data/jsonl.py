"""Reward-labelled JSONL: parsing with file:line errors, and a seqio source.

One JSON object per line, either

* single-turn: ``{"prompt": str, "response": str, "reward": number}``, or
* multi-turn: ``{"turns": [{"text": str, "is_action": bool, "reward": number (optional)}, ...]}``,
* chat: ``{"messages": [{"role": str, "content": str, "reward": number (optional)}, ...]}``,
  rendered with a tokenizer's chat template into multi-turn pieces (`irl_lm.data.chat`),

each with an optional ``"done": true|false`` (default true): false marks an episode that
was logged without its end (it gets no EOS and bootstraps from the state after its text).
`Fields` renames the top-level fields to those of the user's file; an empty ``reward``
name reads supervised rows (no reward field; reward 0), for MLE and IQLearn.

A multi-turn row's leading non-action turns form the prompt ("inputs"); the rest
(actions and the environment turns between them) form "targets". A reward on an
environment turn is credited to the action turn before it (the environment reports
what the last action earned). Blank lines are ignored.
"""
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from irl_lm.data.chat import ChatTemplate, NoChatTemplateError, chat_turns, no_template_error
from irl_lm.data.sources import InMemorySource
from irl_lm.errors import InputError, MissingError


class JsonlFormatError(InputError):
  """A malformed reward-labelled JSONL line; the message starts with ``path:line:``."""


Turn = tuple[str, bool, float]
Row = tuple[str, list[Turn], bool]


@dataclasses.dataclass(frozen=True)
class Fields:
  """The names of the top-level fields in a file (``reward=""``: rows carry no reward)."""

  prompt: str = "prompt"
  response: str = "response"
  reward: str = "reward"
  turns: str = "turns"
  messages: str = "messages"
  done: str = "done"


DEFAULT_FIELDS = Fields()


def _reward(value: Any, where: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise InputError(f"{where} must be a number, got {value!r}")
  if not math.isfinite(value):
    raise InputError(f"{where} must be finite, got {value!r}")
  return float(value)


def _done(row: Mapping[str, Any], name: str) -> bool:
  value = row.get(name, True)
  if not isinstance(value, bool):
    raise InputError(f"field {name!r} must be true or false, got {value!r}")
  return value


def _text(row: Mapping[str, Any], key: str, where: str = "") -> str:
  if key not in row:
    raise InputError(f"missing field {where}{key!r}")
  if not isinstance(row[key], str):
    raise InputError(f"field {where}{key!r} must be a string, got {row[key]!r}")
  return row[key]


def _single_turn(row: Mapping[str, Any], fields: Fields) -> tuple[str, list[Turn]]:
  prompt = _text(row, fields.prompt)
  response = _text(row, fields.response)
  reward = 0.0
  if fields.reward:
    if fields.reward not in row:
      raise InputError(f"missing field {fields.reward!r} (rows without rewards, for MLE and "
                       "IQLearn: map the reward field to '')")
    reward = _reward(row[fields.reward], f"field {fields.reward!r}")
  if not response.strip():
    raise InputError(f"empty {fields.response!r}")
  return prompt, [(response, True, reward)]


def _multi_turn(turns: Any, name: str) -> tuple[str, list[Turn]]:
  if not isinstance(turns, list) or not turns:
    raise InputError(f"field {name!r} must be a non-empty list")
  parsed: list[Turn] = []
  for i, turn in enumerate(turns):
    where = f"turns[{i}]."
    if not isinstance(turn, dict):
      raise InputError(f"turns[{i}] must be an object, got {turn!r}")
    text = _text(turn, "text", where)
    if "is_action" not in turn:
      raise InputError(f"missing field {where}'is_action'")
    if not isinstance(turn["is_action"], bool):
      raise InputError(f"field {where}'is_action' must be true or false, got {turn['is_action']!r}")
    reward = turn.get("reward")
    reward = 0.0 if reward is None else _reward(reward, f"field {where}'reward'")
    if turn["is_action"] and not text.strip():
      raise InputError(f"empty action text in turns[{i}]")
    parsed.append((text, turn["is_action"], reward))
  first_action = next((i for i, t in enumerate(parsed) if t[1]), None)
  if first_action is None:
    raise InputError("no turn has is_action true")
  if any(r != 0.0 for _, _, r in parsed[:first_action]):
    raise InputError("a reward on a turn before the first action")
  prompt = "".join(t for t, _, _ in parsed[:first_action])
  folded: list[Turn] = []
  last_action = None
  for text, is_action, reward in parsed[first_action:]:
    if is_action:
      last_action = len(folded)
      folded.append((text, True, reward))
    else:
      folded.append((text, False, 0.0))
      a_text, _, a_reward = folded[last_action]
      folded[last_action] = (a_text, True, a_reward + reward)
  return prompt, folded


def parse_line(line: str, chat_template: ChatTemplate | None = None,
               fields: Fields = DEFAULT_FIELDS) -> Row:
  """(prompt, [(text, is_action, reward), ...], done) of one JSONL line; InputError if malformed.

  Chat rows ("messages") need `chat_template` (else `NoChatTemplateError`).
  """
  try:
    row = json.loads(line)
  except json.JSONDecodeError as e:
    raise InputError(f"invalid JSON ({e.msg} at column {e.colno})") from None
  if not isinstance(row, dict):
    raise InputError(f"expected a JSON object, got {type(row).__name__}")
  return parse_row(row, chat_template, fields)


def parse_row(row: Mapping[str, Any], chat_template: ChatTemplate | None = None,
              fields: Fields = DEFAULT_FIELDS) -> Row:
  """``parse_line`` of a row already read (a JSON object, or a row of a Hugging Face
  dataset): the same fields, the same checks."""
  if fields.messages in row and row[fields.messages] is not None:
    if chat_template is None:
      raise no_template_error()
    prompt, turns = chat_turns(row[fields.messages], chat_template)
  elif fields.turns in row and row[fields.turns] is not None:
    prompt, turns = _multi_turn(row[fields.turns], fields.turns)
  else:
    prompt, turns = _single_turn(row, fields)
  return prompt, turns, _done(row, fields.done)


def read_jsonl(path: str, skip_invalid: bool = False, chat_template: ChatTemplate | None = None,
               fields: Fields = DEFAULT_FIELDS) -> tuple[dict[str, np.ndarray], list[str]]:
  """Columns for `InMemorySource` from a reward-labelled JSONL file, and the skip messages.

  A malformed line raises `JsonlFormatError` ("path:line: what is wrong"); with
  `skip_invalid` it is skipped and its message returned in the list instead. A chat
  row without `chat_template` is never skipped: every chat row would be.
  """
  rows: list[Row] = []
  skipped: list[str] = []
  try:
    f = open(path, "rb")  # decoded line by line, so a bad byte is reported with its line
  except FileNotFoundError:
    raise MissingError("JSONL file not found", where=path) from None
  except OSError as e:
    raise InputError(f"cannot read JSONL file: {e.strerror or e}", where=path) from None
  with f:
    offset = 0  # of the current line's first byte in the file
    for lineno, raw in enumerate(f, start=1):
      try:
        line = _decode(raw, offset, first=lineno == 1)
        if line.strip():
          rows.append(parse_line(line, chat_template, fields))
      except ValueError as e:
        message = f"{path}:{lineno}: {e}"
        if not skip_invalid or isinstance(e, NoChatTemplateError):
          raise JsonlFormatError(message) from None
        skipped.append(message)
      offset += len(raw)
  if skipped:
    logging.warning("Skipped %d malformed line(s) in %s; first: %s", len(skipped), path, skipped[0])
  if not rows:
    raise JsonlFormatError(f"{path}: no valid rows")
  return to_columns(rows), skipped


def _decode(raw: bytes, offset: int, first: bool) -> str:
  """One line as text; InputError naming the file byte offset of invalid UTF-8."""
  try:
    return raw.decode("utf-8-sig" if first else "utf-8")
  except UnicodeDecodeError as e:
    raise InputError(f"invalid UTF-8: byte 0x{raw[e.start]:02x} at byte offset "
                     f"{offset + e.start} of the file") from None


def to_columns(rows: list[Row]) -> dict[str, np.ndarray]:
  """The columns ``InMemorySource`` serves, from parsed rows."""
  width = max(len(turns) for _, turns, _ in rows)
  texts = np.full((len(rows), width), "", dtype=object)
  is_action = np.zeros((len(rows), width), np.int32)
  rewards = np.zeros((len(rows), width), np.float32)
  for r, (_, turns, _) in enumerate(rows):
    for t, (text, action, reward) in enumerate(turns):
      texts[r, t], is_action[r, t], rewards[r, t] = text, action, reward
  return {
      "inputs": np.array([p for p, _, _ in rows], dtype=object),
      "targets": np.array(["".join(t for t, _, _ in turns) for _, turns, _ in rows],
                          dtype=object),
      "turn_texts": texts, "turn_is_action": is_action, "turn_rewards": rewards,
      "num_turns": np.array([len(turns) for _, turns, _ in rows], np.int32),
      "done": np.array([done for _, _, done in rows], np.int32),
  }


class JsonlRewardSource(InMemorySource):
  """A seqio source over reward-labelled JSONL files, one per split.

  `chat_template` renders chat rows ("messages"); without it they are an error.
  `fields` names the file's fields.
  """

  def __init__(self, split_to_path: Mapping[str, str], skip_invalid: bool = False,
               chat_template: ChatTemplate | None = None, fields: Fields = DEFAULT_FIELDS):
    self.split_to_path = dict(split_to_path)
    self.skip_invalid = skip_invalid
    self.chat_template = chat_template
    self.fields = fields
    self.skipped: dict[str, list[str]] = {}
    super().__init__(self._load, splits=tuple(self.split_to_path))

  def _load(self, split: str) -> dict[str, np.ndarray]:
    columns, self.skipped[split] = read_jsonl(self.split_to_path[split], self.skip_invalid,
                                              self.chat_template, self.fields)
    return columns

  def num_skipped(self, split: str) -> int:
    """How many malformed lines of `split` were skipped (loads the split)."""
    self.columns(split)
    return len(self.skipped[split])
