"""The errors a user can fix, as one line: ``<what> (<where>): expected <e> vs found <f>``.

Entry points (``irl_lm.cli``) print a ``UserError`` as ``error: <message>`` on
stderr and exit with ``EXIT_USER_ERROR``; any other exception is a crash and
keeps its traceback. Each subclass also derives from the built-in exception a
caller would expect (``ValueError``, ``FileNotFoundError``, ``KeyError``), so
``except ValueError`` still catches a bad config.

This module imports nothing, so every layer (``data``, ``models``,
``training``) may raise these.
"""
from __future__ import annotations

from typing import Any

EXIT_USER_ERROR = 2


class UserError(Exception):
  """A mistake in the user's config, files or flags, fixable without reading code."""

  def __init__(self, what: str, where: str = "", expected: Any = None, found: Any = None):
    self.what, self.where, self.expected, self.found = what, where, expected, found
    super().__init__(self.message)

  @property
  def message(self) -> str:
    text = self.what + (f" ({self.where})" if self.where else "")
    if self.expected is not None and self.found is not None:
      text += f": expected {self.expected} vs found {self.found}"
    elif self.expected is not None:
      text += f": expected {self.expected}"
    elif self.found is not None:
      text += f": found {self.found}"
    return text

  def __str__(self) -> str:  # KeyError would otherwise quote the message
    return self.message


class ConfigError(UserError, ValueError):
  """A config value, flag or combination of them that cannot work."""


class InputError(UserError, ValueError):
  """A data, model or checkpoint file whose content is wrong."""


class MissingError(UserError, FileNotFoundError):
  """A file, directory, checkpoint or dataset that is not there."""


class UnknownNameError(UserError, KeyError):
  """A name (task, preset, key) that is not registered."""


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
  """The error for ``config.<key>``, not one of the flat keys ``valid``, with the closest one."""
  import difflib
  close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
  if not close:  # compare against the keys of the same section
    section = key.rsplit(".", 1)[0] + "."
    close = difflib.get_close_matches(key, [k for k in valid if k.startswith(section)], n=1,
                                      cutoff=0.0)
  hint = f"'config.{close[0]}' (the closest valid key)" if close else "a key of the base config"
  return ConfigError("unknown config key", where, expected=hint, found=f"'config.{key}'")
