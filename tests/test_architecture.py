"""The house rules that a layers contract cannot see: no import cycle anywhere in vaemix (not even inside
one layer), no function over 60 lines, and random streams that no two features share."""

import ast
from pathlib import Path

import grimp

from conftest import ROOT
from vaemix.maths import streams

MAX_FUNCTION_LINES = 60


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in graph.modules or not other.startswith("vaemix"):
                continue
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module.startswith("vaemix") and module not in index:
            visit(module)
    return found


def test_no_import_cycle_inside_vaemix():
    """Imports inside functions count too: grimp reads every import statement of every module."""
    assert _cycles(grimp.build_graph("vaemix")) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.ImportGraph()
    for name in ("vaemix.a", "vaemix.b", "vaemix.c"):
        graph.add_module(name)
    graph.add_import(importer="vaemix.a", imported="vaemix.b")
    graph.add_import(importer="vaemix.b", imported="vaemix.a")
    graph.add_import(importer="vaemix.c", imported="vaemix.a")
    assert _cycles(graph) == [["vaemix.a", "vaemix.b"]]


def _long_functions(root: Path) -> list[str]:
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_no_function_over_60_lines():
    assert _long_functions(ROOT / "vaemix") == []


def test_the_length_check_sees_a_long_function(tmp_path):
    (tmp_path / "pkg").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert _long_functions(tmp_path / "pkg") == [f"pkg/m.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_random_streams_are_distinct():
    ids = [int(s) for s in streams.Stream]
    assert len(ids) == len(set(ids))
    # Per-step draws within one run: [seed + offset, counter] for both phases (the pretraining phase runs
    # with seed + PRETRAIN_OFFSET) and evaluation's importance samples.
    per_step = [streams.LATENT_NOISE_OFFSET, streams.DYNAMIC_BINARIZATION_OFFSET, streams.NEIGHBOUR_OFFSET]
    per_step += [streams.AUGMENTATION_OFFSET + v for v in range(streams.AUGMENTATION_VIEWS)]
    offsets = [*per_step, *(streams.PRETRAIN_OFFSET + o for o in per_step), streams.IWAE_OFFSET]
    assert len(offsets) == len(set(offsets))
    assert len(set(streams.restart_seeds(3, 20)) & set(streams.restart_seeds(4, 20))) == 0
