"""seqio postprocess functions: what the metrics compare, from decoded text.

seqio calls ``postprocess_fn(text, example=example, is_target=...)`` on both the
reference (is_target=True) and the model output.
"""
from collections.abc import Mapping
from typing import Any


def as_text(value: str | bytes) -> str:
  """`value` as a str (TF hands strings over as bytes)."""
  return value.decode("utf-8") if isinstance(value, bytes) else value


def strip_text(output: str | bytes, example: Mapping[str, Any] | None = None,
               is_target: bool = False) -> str:
  """Decoded text without surrounding whitespace."""
  del example, is_target
  return as_text(output).strip()


def prompt_as_target(output: str | bytes, example: Mapping[str, Any] | None = None,
                     is_target: bool = False) -> str:
  """For reward-scored tasks: the "target" handed to the metric is the prompt text.

  The metric then scores (prompt, prediction) pairs with the task's reward function.
  """
  if is_target:
    if example is None:
      raise ValueError("prompt_as_target needs the example for targets")
    return as_text(example["inputs_pretokenized"]).strip()
  return as_text(output).strip()
