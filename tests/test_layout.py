"""docs/layout.md stays true to the tree: every module is named, every named path exists, and
the dependency rules it states hold (checked on the imports themselves)."""
import ast
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = open(os.path.join(ROOT, "docs", "layout.md"), encoding="utf-8").read()
# What each package may import of irl_lm (a package's own modules always).
ALLOWED = {
    "losses": set(), "metrics": set(), "sharding": set(), "errors": set(),
    "models": {"sharding", "errors"},
    "data": {"errors", "metrics"},
    "decoding": {"sharding", "errors", "models", "data"},
    "algorithms": {"sharding", "errors", "models", "data", "decoding", "losses"},
}


def modules(*packages: str) -> list[str]:
  out = []
  for package in packages or ("irl_lm", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
      out += [os.path.relpath(os.path.join(dirpath, f), ROOT) for f in files if f.endswith(".py")]
  return sorted(out)


def named(path: str) -> bool:
  """Whether a row of docs/layout.md names ``path`` in its first column (a package's
  ``__init__.py`` counts as named with its package)."""
  directory, name = os.path.split(path)
  firsts = [line.split("|")[1] for line in LAYOUT.splitlines() if line.startswith("|")]
  if name == "__init__.py":
    return directory in ("irl_lm", "experiments") or any(directory + "/" in first
                                                          for first in firsts)
  return any(f"`{path}`" in first for first in firsts)


def test_every_module_is_named():
  missing = [m for m in modules() if not named(m)]
  assert not missing, f"docs/layout.md does not name: {missing}"


def test_every_named_path_exists():
  for path in re.findall(r"`((?:irl_lm|bench|configs|launch|tests|docs|experiments)/[^`]*)`",
                         LAYOUT):
    assert os.path.exists(os.path.join(ROOT, path)), path


def test_the_package_never_imports_the_experiments():
  for path in modules("irl_lm"):
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    for node in ast.walk(tree):
      names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
               else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
      assert not any(n.split(".")[0] == "experiments" for n in names), path


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
  for path in modules("irl_lm"):
    parts = path[:-3].split(os.sep)
    package = parts[1]
    if package not in ALLOWED:
      continue
    extra = _imports(path) - ALLOWED[package] - {package}
    assert not extra, f"{path} imports irl_lm.{sorted(extra)}"


def _module_name(path: str) -> str:
  name = path[:-3].replace(os.sep, ".")
  return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _edges() -> dict[str, set[str]]:
  """Module -> the irl_lm / experiments modules it imports (anywhere in the file)."""
  known = {_module_name(p) for p in modules()}
  graph = {}
  for path in modules():
    me = _module_name(path)
    out = set()
    for node in ast.walk(ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())):
      if isinstance(node, ast.ImportFrom) and node.module:
        for a in node.names:
          sub = f"{node.module}.{a.name}"
          out.add(sub if sub in known else node.module)
      elif isinstance(node, ast.Import):
        out.update(a.name for a in node.names)
    # A package's __init__ re-exports its own modules; those importing the package back
    # (for a sibling) are not a circle of meaning.
    graph[me] = {m for m in out if m in known and m != me
                 and not (path.endswith("__init__.py") and m.startswith(me + "."))}
  return graph


def test_no_import_circle():
  graph = _edges()
  state: dict[str, int] = {}

  def visit(node: str, trail: list[str]) -> None:
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        raise AssertionError("import circle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
      if nxt not in state:
        visit(nxt, trail + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])


def test_only_the_algorithms_name_an_algorithm():
  """``"ilql"`` is spelled in its registration only; outside the models (which own the
  parameter layout) and decoding (ILQL's guidance), only the algorithms name ILQL's
  parameter keys; training and planning know no algorithm."""
  keys = re.compile(r"\b(HEADS|VALUE_TRUNK|Q_HEADS|trunk_params|q_heads)\b")
  for path in modules("irl_lm"):
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    if path != os.path.join("irl_lm", "algorithms", "ilql.py"):
      assert '"ilql"' not in text, path
    if not path.startswith(tuple(os.path.join("irl_lm", p) for p in
                                 ("algorithms", "models", "decoding"))):
      assert not keys.search(text), f"{path} names {keys.search(text).group(0)}"


def test_models_algorithms_and_the_train_step_need_no_tensorflow():
  """An accelerator image without TensorFlow or seqio can build and run the trainer's step
  (``build_run`` without a task); only the data pipeline needs them, and says so."""
  code = ("import sys\n"
          "for m in ('tensorflow', 'seqio', 'tensorflow_datasets', 'tensorflow_text'):\n"
          "  sys.modules[m] = None  # as if not installed\n"
          "from irl_lm.training.builders import build_run\n"
          "from irl_lm.training.config import base_config\n"
          "c = base_config(); c.model.size = 't5-tiny'; c.model.vocab_size = 128\n"
          "c.data.batch_size = 8; c.mesh.num_devices = 1\n"
          "run = build_run(c, with_task=False); run.init_state()\n"
          "import irl_lm.data as d\n"
          "try:\n  d.BatchIterator\nexcept ImportError as e:\n  print(e)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == ("irl_lm.data.BatchIterator needs tensorflow and seqio, which "
                                "are not installed (pip install -e . installs them)")
