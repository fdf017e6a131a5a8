"""Task lookup and (re)registration on seqio's global TaskRegistry."""
import importlib

import seqio


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
  if ":" in name:
    module, name = name.split(":", 1)
    importlib.import_module(module)
  if name not in seqio.TaskRegistry.names():
    known = ", ".join(sorted(seqio.TaskRegistry.names())) or "none"
    raise KeyError(
        f"No task named {name!r}. Registered: {known}. The paper tasks (xsum, gsm8k, tldr, "
        "wmt19_de_en) need irl_lm.data.register_paper_tasks(vocabulary_kind, vocabulary_path) "
        "first; a task of your own can be named 'your_module:your_task'.")
  return seqio.TaskRegistry.get(name)
