"""Exact accuracy of the final number, GSM8k style (`... #### 42`)."""
import decimal
import re
from collections.abc import Sequence

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
_MARKER = "####"


def final_number(text: str, require_marker: bool = True) -> decimal.Decimal | None:
  """The first number after the last `####` (commas dropped), or None.

  Without `####` in the text: None if `require_marker`, else the last number in
  the text (used for references that are a bare answer).
  """
  if _MARKER in text:
    numbers = _NUMBER.findall(text.rsplit(_MARKER, 1)[1])[:1]
  elif require_marker:
    return None
  else:
    numbers = _NUMBER.findall(text)[-1:]
  if not numbers:
    return None
  try:
    return decimal.Decimal(numbers[0].replace(",", ""))
  except decimal.InvalidOperation:
    return None


def final_number_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Percentage of predictions whose final `####` number equals the target's.

  Predictions need the `####` marker; a target without one is read as its last
  number. An example whose target has no number counts as wrong.
  """
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  correct = 0
  for target, prediction in zip(targets, predictions):
    want = final_number(target, require_marker=False)
    got = final_number(prediction)
    correct += int(want is not None and got is not None and want == got)
  return {"accuracy": 100.0 * correct / len(targets) if targets else 0.0}
