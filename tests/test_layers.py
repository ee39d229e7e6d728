"""The layering of the ``scripts`` package: no import cycle, no import from a higher layer, and the picture in
``docs/architecture.md`` is the one the code gives (``tools/import_graph.py``)."""

import importlib
import textwrap
from pathlib import Path

import pytest

from scripts.utils.paths import ROOT
from tools import import_graph
from tools.import_graph import LAYERS, build, cycles, embedded, mermaid, problems, upward_edges


def test_scripts_has_no_cycle_and_no_upward_import():
    graph = build()
    assert problems(graph) == []
    assert len(graph.layers) > 50  # every module was read (an empty graph would pass the check above)
    assert {"scripts.__main__", "scripts.research.__main__"} <= set(graph.layers)


def test_every_folder_of_scripts_is_a_layer():
    folders = {p.name for p in (ROOT / "scripts").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(LAYERS)


def test_command_lines_are_on_top_and_reach_their_verbs():
    graph = build()
    assert graph.layers["scripts.__main__"] == graph.layers["scripts.research.__main__"] == import_graph.TOP
    # the verb tables' "module:function" strings are edges
    for cli in ("scripts.__main__", "scripts.research.__main__"):
        verbs = importlib.import_module(cli).VERBS
        assert {target.split(":")[0] for target in verbs.values()} <= graph.edges[cli]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "scripts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in {p.parent for p in (tmp_path / "scripts").rglob("*.py")}:
        (folder / "__init__.py").touch()
    return tmp_path / "scripts"


def test_checker_finds_an_upward_import_inside_a_function(tmp_path):
    package = _package(tmp_path, {
        "io/reader.py": "def read():\n    from scripts.networks.net import Net\n    return Net\n",
        "networks/net.py": "from scripts.io import reader\nclass Net: ...\n",
    })
    graph = build(package)
    assert upward_edges(graph) == [("scripts.io.reader", "scripts.networks.net")]
    assert cycles(graph) == [["scripts.io.reader", "scripts.networks.net"]]
    assert problems(graph) == [
        "import cycle: scripts.io.reader -> scripts.networks.net",
        "upward import: scripts.io.reader (io) imports scripts.networks.net (networks)",
    ]


def test_checker_finds_a_cycle_within_a_layer_through_relative_imports(tmp_path):
    package = _package(tmp_path, {
        "phantoms/a.py": "from .b import B\n",
        "phantoms/b.py": "from . import c\nB = 1\n",
        "phantoms/c.py": "import scripts.phantoms.a\n",
        "utils/paths.py": "ROOT = None\n",
    })
    graph = build(package)
    assert upward_edges(graph) == []
    assert cycles(graph) == [["scripts.phantoms.a", "scripts.phantoms.b", "scripts.phantoms.c"]]


def test_downward_imports_and_verb_strings_are_clean(tmp_path):
    package = _package(tmp_path, {
        "utils/paths.py": "ROOT = None\n",
        "inference/run.py": "from scripts.utils.paths import ROOT\n",
        "__main__.py": "VERBS = {'run': 'scripts.inference.run:main'}\n",
    })
    graph = build(package)
    assert problems(graph) == []
    assert graph.edges["scripts.__main__"] == {"scripts.inference.run"}
    assert graph.layer_edges() == {("cli", "inference"), ("inference", "utils")}


def test_unknown_folder_is_refused(tmp_path):
    package = _package(tmp_path, {"misc/thing.py": "X = 1\n"})
    with pytest.raises(ValueError, match="scripts.misc: not in a known layer"):
        build(package)


def test_architecture_doc_shows_the_current_graph():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert embedded(doc) == mermaid(build()), (
        "docs/architecture.md's import graph is stale: run `python -m tools.import_graph --write docs/architecture.md`"
    )
