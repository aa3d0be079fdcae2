"""Notebooks are committed as sources: no outputs, one `parameters` cell of literals, and
no function or class definitions (logic belongs in lib)."""

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib import runner
from lib.paths import NOTEBOOKS, REPO

NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_stage_has_a_notebook():
    assert {p.stem for p in NOTEBOOK_FILES} == set(runner.ALL_STAGES)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_one_parameters_cell_of_annotated_literals(path):
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    src = tagged[0].source
    tree = ast.parse(src)
    for stmt in tree.body:
        assert isinstance(stmt, ast.AnnAssign), f"{path.name}: parameters cell holds only annotated assignments"
        ast.literal_eval(stmt.value)  # literals only
    for line in src.splitlines():
        assert "#" in line, f"{path.name}: every parameter has a comment: {line!r}"
    assert "profile" in src


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_no_definitions_in_notebooks(path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), path.name


def test_nbstripout_is_the_git_filter():
    attributes = (REPO / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes


@pytest.mark.slow  # papermill's CLI in a subprocess
def test_papermill_documents_the_parameters():
    out = subprocess.run(
        [str(Path(sys.executable).parent / "papermill"), "--help-notebook", str(NOTEBOOKS / "06_benchmark.ipynb")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'style: str (default "cod")' in out
    assert "reasoning style: cot | cod | base" in out


@pytest.mark.slow  # runs a notebook in a Jupyter kernel
def test_plain_papermill_runs_a_notebook_from_a_parameter_file(home):
    """DESIGN: the notebooks run unchanged under the plain `papermill` command with `-f`."""
    import json

    (home / "p.yaml").write_text("profile: tiny\noverrides: {benchmark.k: 3}\n")
    out = home / "07.ipynb"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "papermill"),
            str(NOTEBOOKS / "07_analysis.ipynb"),
            str(out),
            "-f",
            str(home / "p.yaml"),
            "--cwd",
            str(NOTEBOOKS),
            "--no-progress-bar",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    injected = next(
        c for c in json.loads(out.read_text())["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    )
    assert 'overrides = {"benchmark.k": 3}' in "".join(injected["source"])
    from lib import record

    figs = record.load("tiny", "07_analysis")  # written under this test's WORKBOOK_HOME
    assert figs["runs_present"] == []  # nothing ran in this home: the analysis says so, not crashes
