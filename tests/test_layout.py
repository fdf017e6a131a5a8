"""docs/layout.md stays true to the tree: every module is named, every named path exists, and
the dependency rules it states hold (checked on the imports themselves)."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = open(os.path.join(ROOT, "docs", "layout.md"), encoding="utf-8").read()
# What each package may import of irl_lm (a package's own modules always).
ALLOWED = {
    "losses": set(), "metrics": set(), "sharding": set(), "errors": set(),
    "models": {"sharding", "errors"},
    "data": {"errors", "metrics"},
    "decoding": {"sharding", "errors", "models", "data"},
}


def modules() -> list[str]:
  out = []
  for dirpath, _, files in os.walk(os.path.join(ROOT, "irl_lm")):
    for f in files:
      if f.endswith(".py"):
        out.append(os.path.relpath(os.path.join(dirpath, f), ROOT))
  return sorted(out)


def named(path: str) -> bool:
  """Whether a row of docs/layout.md names ``path`` in its first column (a package's
  ``__init__.py`` counts as named with its package)."""
  directory, name = os.path.split(path)
  firsts = [line.split("|")[1] for line in LAYOUT.splitlines() if line.startswith("|")]
  if name == "__init__.py":
    return directory == "irl_lm" or any(directory + "/" in first for first in firsts)
  return any(f"`{path}`" in first for first in firsts)


def test_every_module_is_named():
  missing = [m for m in modules() if not named(m)]
  assert not missing, f"docs/layout.md does not name: {missing}"


def test_every_named_path_exists():
  for path in re.findall(r"`((?:irl_lm|bench|configs|launch|tests|docs|experiments)/[^`]*)`",
                         LAYOUT):
    assert os.path.exists(os.path.join(ROOT, path)), path


def _imports(path: str) -> set[str]:
  tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("irl_lm"):
      parts = node.module.split(".")
      if len(parts) > 1:
        out.add(parts[1])
      else:
        out.update(a.name for a in node.names)
    elif isinstance(node, ast.Import):
      out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("irl_lm."))
  return out


def test_dependencies_point_one_way():
  for path in modules():
    parts = path[:-3].split(os.sep)
    package = parts[1]
    if package not in ALLOWED:
      continue
    extra = _imports(path) - ALLOWED[package] - {package}
    assert not extra, f"{path} imports irl_lm.{sorted(extra)}"
