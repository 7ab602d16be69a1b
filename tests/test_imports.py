"""The package's import graph has no circles, counting function-local imports too.

A circle is what forces an import into a function ("import it late so the other module
has finished loading"); with none, a module's imports say what it builds on.
"""

import ast
import os

from tests.conftest import REPO

PACKAGE = "simgan_jax"


def _modules(root: str) -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        out[module.removesuffix(".__init__")] = path
  return out


def import_graph(root: str = REPO) -> dict[str, set[str]]:
  """{module: package modules it imports anywhere in its file (top level or in a function)}."""
  modules = _modules(root)
  graph = {m: set() for m in modules}
  for module, path in modules.items():
    for node in ast.walk(ast.parse(open(path).read(), path)):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                 for a in node.names]
      else:
        continue
      for name in names:
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first: those count too.
        parts = name.split(".")
        graph[module].update(n for n in (".".join(parts[:i]) for i in range(2, len(parts) + 1))
                             if n in modules and n != module and not module.startswith(n + "."))
  return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_the_package_has_no_import_circles():
  graph = import_graph()
  assert "simgan_jax.refining.refine" in graph["simgan_jax.probe.checkpoint"]  # a known edge: the walk works
  assert circles(graph) == []


def test_a_circle_through_a_function_local_import_is_found(tmp_path):
  # The check itself: a circle closed only by an import inside a function still counts.
  package = tmp_path / PACKAGE
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "a.py").write_text("from simgan_jax import b\n")
  (package / "b.py").write_text("def f():\n  from simgan_jax import c\n")
  (package / "c.py").write_text("import simgan_jax.a\n")
  (package / "d.py").write_text("from simgan_jax.a import something\n")
  assert circles(import_graph(str(tmp_path))) == [["simgan_jax.a", "simgan_jax.b", "simgan_jax.c"]]


def test_a_circle_through_a_package_init_is_found(tmp_path):
  # "from simgan_jax.p import m" runs simgan_jax/p/__init__.py first; when that imports a
  # module that imports back, Python fails with "partially initialized module".
  package = tmp_path / PACKAGE
  (package / "p").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "p" / "__init__.py").write_text("from simgan_jax.p import r\n")
  (package / "p" / "m.py").write_text("")
  (package / "p" / "r.py").write_text("from simgan_jax import x\n")
  (package / "x.py").write_text("from simgan_jax.p import m\n")
  assert circles(import_graph(str(tmp_path))) == [["simgan_jax.p", "simgan_jax.p.r", "simgan_jax.x"]]


def launcher_imports(test_dir: str) -> list[str]:
  """'file: launch.X' for each launcher a test file imports into the test process (launch.common aside).

  A launcher defines absl flags when imported, and two launchers that share a flag name
  (--workdir) cannot both be imported in one pytest worker: which pairs meet depends on
  how xdist spreads the tests, so such a test passes alone and fails in CI. Tests run
  launchers as subprocesses and test the library functions they call.
  """
  found = []
  for name in sorted(os.listdir(test_dir)):
    if not name.endswith(".py"):
      continue
    tree = ast.parse(open(os.path.join(test_dir, name)).read())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.ImportFrom) and node.module == "launch":
        names = [f"launch.{a.name}" for a in node.names]
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("launch."):
        names = [node.module]
      elif isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.startswith("launch.")]
      found += [f"{name}: {n}" for n in names if n != "launch.common"]
  return found


def test_no_test_imports_a_launcher_into_the_test_process(tmp_path):
  assert launcher_imports(os.path.join(REPO, "tests")) == []
  (tmp_path / "test_x.py").write_text("def test_a():\n  from launch import compare_selection\n")
  assert launcher_imports(str(tmp_path)) == ["test_x.py: launch.compare_selection"]
