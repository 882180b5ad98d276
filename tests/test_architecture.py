"""The package's shape: imports point one way, the pool core stands alone, parts stay small.

Read from the source with :mod:`ast` (every ``import``, including those inside
functions and under ``TYPE_CHECKING``), so ``python -m pytest
tests/test_architecture.py`` is how anyone checks the import graph. The
layers, from the bottom (docs/architecture.rst draws them):

0. ``pool/``: the connection pool core; imports nothing from Django or MySQLdb.
1. ``config``, ``environ``, ``identity``: the settings (``OPTIONS["pool"]``,
   ``DATABASE_URL``) and the server identity both session/ and cancel/ record.
2. ``session/``, ``cancel/``, ``monitoring/``: each uses the layers below, never another of the three.
3. the backend: ``base`` (what ``ENGINE`` loads), ``creation``, ``features``,
   ``apps``, ``errors``, the package root and ``management/``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_mysql_pooled"
#: "No module over ~300 lines."
MAX_MODULE_LINES = 310
#: "No function over ~40 lines without a reason written next to it" (``# long: ...`` on its ``def`` line).
MAX_FUNCTION_LINES = 40
CONCERNS = ("session", "cancel", "monitoring")
#: Modules at the root that the concerns share: settings, and facts about a connection's server.
FOUNDATION = ("addresses", "config", "environ", "identity")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path, root: Path = PACKAGE.parent, *, annotations: bool = True) -> Iterator[str]:
    """Every module name *path* imports: ``from a import b`` yields ``a.b`` when that is a module, else ``a``.

    A parent package is not counted: Python imports it before any of its
    modules anyway. With *annotations* false, imports under
    ``if TYPE_CHECKING:`` (never run) are left out.
    """
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    skipped = set() if annotations else _type_checking_lines(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in MODULES else base


def _graph(*, annotations: bool = True) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (with *annotations*: also those only type checkers see)."""
    return {
        name: {imp for imp in _imports(path, annotations=annotations) if imp in MODULES and imp != name}
        for name, path in MODULES.items()
    }


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "pool":
        return 0
    if len(parts) > 1 and parts[1] in FOUNDATION:
        return 1
    if len(parts) > 1 and parts[1] in CONCERNS:
        return 2
    return 3


def _concern(module: str) -> str:
    """The folder (``pool``, ``session``, ...), or the layer's name for modules at the root."""
    layer = _layer(module)
    if layer in (0, 2):
        return module.split(".")[1]
    return "foundation" if layer == 1 else "backend"


def test_the_import_graph_has_no_cycle() -> None:
    """At run time (imports for annotations only may point back: they never run)."""
    graph = _graph(annotations=False)
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        for imported in sorted(graph[module]):
            # A package's __init__ importing its own modules is not a cycle of concerns.
            if not imported.startswith(module + "."):
                visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, imported in sorted(_graph().items()):
        for target in sorted(imported):
            same_concern = _concern(module) == _concern(target)
            if same_concern:
                continue
            if _layer(target) >= _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_the_pool_core_imports_neither_django_nor_the_driver() -> None:
    outside = sorted(
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        if _layer(module) == 0
        for imported in _imports(path)
        if imported.split(".")[0] in ("django", "MySQLdb", "asgiref")
        or (imported.startswith("django_mysql_pooled.") and _layer(imported) != 0)
    )
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines; split it by concept"


def test_long_functions_say_why() -> None:
    unexplained = []
    for module, path in MODULES.items():
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "# long:" not in source[node.lineno - 1]:
                    unexplained.append(f"{module}.{node.name}: {length} lines")
    assert not unexplained, "\n".join(unexplained)


def test_each_module_logs_under_its_own_name() -> None:
    """One logger per module, ``logging.getLogger(__name__)``: under ``django_mysql_pooled.*``."""
    other = [
        f"{module}: getLogger({match.group(1)})"
        for module, path in MODULES.items()
        for match in re.finditer(r"getLogger\(([^)]*)\)", path.read_text())
        if match.group(1) != "__name__"
    ]
    assert not other, "\n".join(other)


def test_the_checker_sees_a_cycle_and_a_wrong_way_import(tmp_path: Path) -> None:
    """The walk itself can fail: it finds relative and function-level imports."""
    module = tmp_path / "django_mysql_pooled" / "pool" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..session import factory\n    import django.db\n")
    found = set(_imports(module, root=tmp_path))
    assert {"django_mysql_pooled.session.factory", "django.db"} <= found
    assert _layer("django_mysql_pooled.session.factory") > _layer("django_mysql_pooled.pool.x")
