"""A committed GPU result set rendered by the workbook itself (`python -m lib results`): the
answer table it writes must be the set's own metrics, cell by cell (issue 33)."""

import json
import shutil
from pathlib import Path

import pytest

from lib import answer, benchmark, results

SET = Path(__file__).resolve().parent.parent / "docs" / "results" / "gpu-solve-h200" / "2026-11-30T0240-h200x2"
pytestmark = pytest.mark.slow  # executes 07 over the set (about 20 s)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    copy = home / SET.name
    shutil.copytree(SET, copy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(home))
        out = results.render(copy, "gpu-solve")
    return out, copy


def test_the_answer_table_is_the_sets_metrics_cell_by_cell(rendered):
    out, copy = rendered
    blocks = {b["scenario"]: b for b in out["figures"]["answer"]["scenarios"]}
    runs, _ = results.runs_of(copy)
    assert runs and set(blocks) == {scenario for _, scenario, _, _ in runs}
    text = out["answer_md"].read_text()
    checked = 0
    for style, scenario, _, folder in runs:
        metrics = json.loads((folder / "metrics.json").read_text())
        head = benchmark.headline(metrics)
        rows = {r["quantity"]: r for r in blocks[scenario]["rows"]}
        for key, _, column, _ in answer.QUANTITIES:
            cell = rows[key][style]
            assert cell["value"] == pytest.approx(head[column]), (style, scenario, key)
            checked += 1
        acc = rows["accuracy"][style]
        assert [acc["lo"], acc["hi"]] == pytest.approx(metrics["passes"]["baseline"]["accuracy_ci95"])
        speed = rows["speed-up"][style]
        assert [speed["lo"], speed["hi"]] == pytest.approx([head["speedup_lo"], head["speedup_hi"]])
        accept = rows["acceptance"][style]
        assert accept["lo"] <= head["acceptance_rate"] <= accept["hi"]
        # and the page's text shows each of them as the table formats it
        for key, *_ in answer.QUANTITIES:
            assert answer._cell(key, rows[key][style]) in text
    assert checked == 5 * len(runs)


def test_a_folder_that_is_no_result_set_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(FileNotFoundError, match="not a result set"):
        results.render(tmp_path, "gpu-solve")
