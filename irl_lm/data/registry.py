"""Task lookup and (re)registration on seqio's global TaskRegistry."""
import difflib
import importlib

import seqio

from irl_lm.errors import UnknownNameError, UserError


def add_task(task: seqio.Task) -> seqio.Task:
  """Registers `task`, replacing a task of the same name."""
  seqio.TaskRegistry.remove(task.name)
  seqio.TaskRegistry.add_provider(task.name, task)
  return task


def get_task(name: str) -> seqio.Task:
  """The registered seqio Task `name`.

  ``"package.module:task"`` first imports ``package.module`` (which registers its
  tasks), so a user's own task can be named from a config without code changes.
  The paper tasks exist once `register_paper_tasks` has run.
  """
  spec = name
  if ":" in name:
    module, name = name.split(":", 1)
    _import_task_module(module, spec)
  names = sorted(seqio.TaskRegistry.names())
  if name not in names:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(
        f"No task named {name!r}.{hint} Registered: {', '.join(names) or 'none'}. The paper "
        "tasks (xsum, gsm8k, tldr, wmt19_de_en) need irl_lm.data.register_paper_tasks("
        "vocabulary_kind, vocabulary_path) first; a task of your own can be named "
        "'your_module:your_task'.", where=f"task {spec!r}" if spec != name else "")
  return seqio.TaskRegistry.get(name)


def _import_task_module(module: str, spec: str) -> None:
  """Imports the module of a ``module:task`` spec; a UserError naming it if that fails."""
  try:
    importlib.import_module(module)
  except (ImportError, SyntaxError) as e:
    missing = getattr(e, "name", None) if isinstance(e, ModuleNotFoundError) else None
    if missing and (module == missing or module.startswith(missing + ".")):
      raise UnknownNameError(f"No module named {missing!r} (is it on PYTHONPATH?)",
                             where=f"task {spec!r}") from e
    raise UserError(f"task module {module!r} does not import: {e}", where=f"task {spec!r}") from e
