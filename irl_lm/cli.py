"""What every entry point shares: one-line user errors, ``--debug``, a quiet console.

``run(main)`` replaces ``absl.app.run(main)``:

* a ``UserError`` (``irl_lm.errors``), a bad flag or an unknown ``--config.*``
  key prints one line, ``error: <what> (<where>): expected <e> vs found <f>``,
  on stderr and exits with status 2; ``--debug`` or ``IRL_LM_DEBUG=1`` shows
  the traceback instead. Any other exception is a crash and keeps its traceback.
* the console shows irl_lm's own INFO lines (progress, eval) and every library's
  warnings; other libraries' INFO lines go only to the log file (``log_file``),
  or to the console too when ``--verbosity`` is given.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from absl import app, flags
from absl import logging as absl_logging

from irl_lm.errors import EXIT_USER_ERROR, ConfigError, UserError, unknown_key_error

DEBUG_ENV = "IRL_LM_DEBUG"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
flags.DEFINE_bool("debug", False, f"Show the full traceback of user errors (or {DEBUG_ENV}=1).")
FLAGS = flags.FLAGS


def debugging(argv: list[str] | None = None) -> bool:
  """True with ``--debug`` (read from ``argv`` when flags did not parse) or IRL_LM_DEBUG=1."""
  if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
    return True
  if FLAGS.is_parsed():
    return FLAGS.debug
  return any(a in ("--debug", "--debug=true", "--debug=1") for a in argv or ())


def fail(message: str) -> None:
  """Prints ``error: message`` on stderr and exits with ``EXIT_USER_ERROR``."""
  sys.stderr.flush()
  print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def no_arguments(argv: list[str]) -> None:
  """Rejects positional arguments (every entry point takes only flags)."""
  if len(argv) > 1:
    raise ConfigError("unexpected command-line arguments", "command line",
                      expected="only --flags", found=" ".join(argv[1:]))


def _flat_keys(cfg: Any, prefix: str = "") -> list[str]:
  keys = []
  for k, v in cfg.items():
    if hasattr(v, "items"):
      keys += _flat_keys(v, f"{prefix}{k}.")
    else:
      keys.append(f"{prefix}{k}")
  return keys


def known_overrides(name: str, config: Any, argv: list[str]) -> list[str]:
  """``argv`` without the ``--name.KEY=...`` overrides whose KEY ``config`` lacks.

  ``config_flags.DEFINE_config_dict`` reads overrides when it is defined, at
  import, where an unknown key would crash; defined over this ``argv`` it
  leaves them to flag parsing, which reports them as one line.
  """
  valid = _flat_keys(config)
  sections = set(valid) | {k.rsplit(".", i)[0] for k in valid for i in range(1, k.count(".") + 1)}
  prefix = f"--{name}."
  return [a for a in argv
          if not a.startswith(prefix) or a[len(prefix):].split("=", 1)[0] in sections]


def load_config_file(spec: str) -> Any:
  """``get_config()`` of a ``PATH[:ARG]`` config flag value."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_irl_lm_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _config_override_error(argv: list[str]) -> ConfigError | None:
  """The project's message for a ``--NAME.KEY=...`` whose KEY the config NAME lacks."""
  for name, flag in list(FLAGS._flags().items()):  # pylint: disable=protected-access
    if "." in name or flag.__class__.__name__ != "_ConfigFlag":
      continue
    value = flag.value
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)
    if spec is not None:
      try:
        value = load_config_file(spec)
      except Exception:  # pylint: disable=broad-except  # absl's own message is shown instead
        return None
    if not hasattr(value, "items"):
      continue
    known = known_overrides(name, value, argv)
    for arg in argv:
      if arg not in known:
        key = arg[len(name) + 3:].split("=", 1)[0]
        return unknown_key_error(key, _flat_keys(value), "command line")
  return None


def _where(e: BaseException) -> str:
  """``file:line`` of the innermost frame outside irl_lm and installed packages (a config file)."""
  frames = [f for f in traceback.extract_tb(e.__traceback__)
            if "site-packages" not in f.filename and not f.filename.startswith(_PACKAGE_DIR)
            and not f.filename.startswith("<")]
  return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; a bad flag, config file or ``--config.*`` override is one error line."""
  try:
    rest = FLAGS(argv)
    for name, flag in FLAGS._flags().items():  # pylint: disable=protected-access
      if type(flag).__name__ == "_ConfigFlag" and flag.value is not None:
        flag.value.keys()  # a config file that failed to load raises only when first read
    return rest
  except Exception as e:  # pylint: disable=broad-except  # flag values and config files are input
    if debugging(argv):
      raise
    err = _config_override_error(argv)
    specs = [a for a in argv if re.match(r"--\w+=.*\.py(:|$)", a)]
    if isinstance(e, OSError) and "No such file or directory" in str(e):
      fail(f"no such config file ({' '.join(specs) or 'command line'})")
    for spec in specs:  # a config file's own check (e.g. with_loss) names the problem itself
      try:
        load_config_file(spec.split("=", 1)[1])
      except UserError as inner:
        fail(str(inner))
      except Exception:  # pylint: disable=broad-except  # reported below
        pass
    if err is None and not isinstance(e, flags.Error):
      fail(f"{type(e).__name__} while reading the flags: {' '.join(str(e).split())}{_where(e)}")
    fail(str(err) if err else " ".join(str(e).split()))
  return []  # not reached


_UNRAISABLE = logging.getLogger("irl_lm.unraisable")


def _unraisable_to_log(unraisable: Any) -> None:
  """Exceptions Python can only ignore (e.g. in a coroutine Orbax abandoned after a failed
  restore) go to the log file, not the console."""
  _UNRAISABLE.warning("%s %r:\n%s", unraisable.err_msg or "Exception ignored in",
                      unraisable.object, "".join(traceback.format_exception(
                          unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)))


class _ConsoleFilter(logging.Filter):
  """Passes irl_lm's own records at INFO and up, and other libraries' warnings.

  Libraries' ERROR records go to the log file only: irl_lm reports the failure
  itself, naming the file or step (e.g. Orbax logs each failed restore with its
  whole TensorStore spec, and asyncio the callbacks that arrive after it).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if record.name == _UNRAISABLE.name:
      return False
    if record.pathname.startswith(_PACKAGE_DIR):
      return True
    return record.levelno == logging.WARNING or record.levelno >= logging.CRITICAL


def _setup_logging(log_file: str | None) -> None:
  handler = absl_logging.get_absl_handler()
  handler.filters = [f for f in handler.filters if not isinstance(f, _ConsoleFilter)]
  if not FLAGS["verbosity"].present:
    handler.addFilter(_ConsoleFilter())
    sys.unraisablehook = _unraisable_to_log
  root = logging.getLogger()
  for h in [h for h in root.handlers if getattr(h, "irl_lm_log_file", False)]:
    root.removeHandler(h)
    h.close()
  if log_file and "://" not in log_file:
    try:
      os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
      fh = logging.FileHandler(log_file)
    except OSError:  # e.g. the workdir is a file: the entry point reports that itself
      return
    fh.irl_lm_log_file = True
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s "
                                      "%(filename)s:%(lineno)d] %(message)s"))
    root.addHandler(fh)


def _new_directories(path: str | None) -> list[str]:
  """The directories above ``path`` that do not exist yet, deepest first."""
  if not path or "://" in path:
    return []
  out = []
  d = os.path.dirname(os.path.abspath(path))
  while d and not os.path.exists(d) and d != os.path.dirname(d):
    out.append(d)
    d = os.path.dirname(d)
  return out


def _remove_log(path: str, directories: list[str]) -> None:
  """Undoes the log file and the directories made for it, if nothing else was written there:
  a run that fails its checks leaves no workdir behind."""
  root = logging.getLogger()
  for h in [h for h in root.handlers if getattr(h, "irl_lm_log_file", False)]:
    root.removeHandler(h)
    h.close()
  with contextlib.suppress(OSError):
    os.remove(path)
  for d in directories:
    with contextlib.suppress(OSError):
      os.rmdir(d)  # only if empty


def _guard(main: Callable[[list[str]], Any], log_file: Callable[[], str | None] | None
           ) -> Callable[[list[str]], Any]:
  def guarded(argv: list[str]) -> Any:
    path = log_file() if log_file else None
    new = _new_directories(path)
    try:
      _setup_logging(path)
      return main(argv)
    except (UserError, app.UsageError) as e:
      if new:
        _remove_log(path, new)
      if debugging():
        raise
      fail(str(e))
  return guarded


def load_tensorflow_quietly(argv: list[str]) -> None:
  """Imports TensorFlow with fd 2 captured: its C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL.

  The captured lines are shown only if the import fails or ``--verbosity`` is given.
  """
  if "tensorflow" in sys.modules:
    return
  shown = any(a.startswith(("--verbosity", "-v")) for a in argv)
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      tf.config.set_visible_devices([], "GPU")  # tf.data only; JAX owns accelerators
    except BaseException:
      shown = True
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      if shown:
        captured.seek(0)
        sys.stderr.write(captured.read().decode("utf-8", "replace"))


def run(main: Callable[[list[str]], Any],
        log_file: Callable[[], str | None] | None = None) -> None:
  """``app.run(main)`` with one-line user errors; ``log_file()`` names the full log."""
  load_tensorflow_quietly(sys.argv)
  app.run(_guard(main, log_file), flags_parser=_parse_flags)


def invoke(main: Callable[[list[str]], Any], argv: list[str],
           log_file: Callable[[], str | None] | None = None) -> int:
  """Runs an entry point in this process as its command line would; returns the exit status.

  For tests that drive many command lines in one process.
  """
  FLAGS.unparse_flags()
  saved, sys.argv = sys.argv, list(argv)  # ml_collections reads overrides from sys.argv
  try:
    app.run(_guard(main, log_file), argv=argv, flags_parser=_parse_flags)
  except SystemExit as e:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  finally:
    sys.argv = saved
  return 0
