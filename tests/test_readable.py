"""Numbers as a reader sees them (issue 33): field names in words, values with the digits they
deserve, in the notebooks' tables and the pages' results blocks alike."""

import time

import nbformat
import pandas as pd

from lib import formats, io, paths, reports


def test_fields_read_as_words_and_values_as_units():
    cases = {
        ("throughput_tok_s", 1623.962971): ("throughput (tokens/s)", "1,624"),
        ("wall_s", 12.3456): ("wall", "12.35 s"),
        ("ttft_mean_s", 0.01234): ("time to first token mean", "12.3 ms"),
        ("acceptance_rate", 0.6856): ("acceptance rate", "68.6%"),
        ("lone_replay_slowdown", 1.488): ("lone replay slowdown", "1.49x"),
        ("speedup", 1.3157): ("speed-up", "1.32x"),
        ("peak_memory_mb", 1234.5): ("peak memory (MB)", "1,234"),
        ("busy_occupancy_ratio", 1.02234): ("busy occupancy ratio", "1.022"),
        ("accuracy_ci95", (0.5, 0.7)): ("accuracy [95 %]", "[50.0%, 70.0%]"),
        ("enable_thinking", False): ("enable thinking", "no"),
        ("n", 200): ("n", "200"),
    }
    for (key, value), (label, shown) in cases.items():
        assert (formats.label(key), formats.show(key, value)) == (label, shown), key
    assert formats.show("speedup", float("nan")) == "–" and formats.show("speedup", None) == "–"


def test_a_table_is_shown_readable_and_left_unchanged():
    table = pd.DataFrame(
        [{"pass": "baseline", "throughput_tok_s": 1623.96, "wall_s": 2.5, "acceptance_rate": None}]
    ).set_index("pass")
    shown = formats.readable(table)
    assert list(shown.columns) == ["throughput (tokens/s)", "wall", "acceptance rate"]
    assert shown.iloc[0].tolist() == ["1,624", "2.50 s", "–"]
    assert table.iloc[0]["throughput_tok_s"] == 1623.96  # the frame itself keeps its numbers
    one = formats.readable(pd.Series({"speedup_throughput": 1.3157, "n": 200}, name="run").to_frame())
    assert one.to_dict()["run"] == {"speed-up throughput": "1.32x", "n": "200"}
    assert repr(formats.or_nothing(table.iloc[:0], "Nothing here.")) == "Nothing here."
    assert formats.or_nothing(table, "Nothing here.") is table


def test_a_stage_page_opens_on_its_headline_in_words(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path))
    rp = paths.RunPaths("tiny", "cod", "easy")
    now = time.time()
    io.write_json(
        rp.figures("06_benchmark"),
        {
            "stage": "06_benchmark",
            "run": rp.name,
            "finished_at": now,
            "settings": {},
            "acceptance_rate": 0.6856,
            "speedup": 1.3157,
            "k": 5,
            "busy_occupancy_ratio": 1.022,
            "async_baseline": False,
        },
    )
    nb = nbformat.v4.new_notebook()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "+00:00"  # noqa: E731
    nb.metadata["papermill"] = {
        "parameters": {"profile": "tiny", "style": "cod", "scenario": "easy"},
        "start_time": stamp(now - 5),
        "end_time": stamp(now + 5),
        "exception": None,
    }
    block = reports.results_markdown(nb, "06_benchmark")
    head, _, rest = block.partition("<details>")
    assert "| acceptance rate | 68.6% |" in head and "| speed-up | 1.32x |" in head and "| K | 5 |" in head
    assert head.index("acceptance rate") < head.index("K |") < head.index("speed-up")  # the headline's order
    assert "busy occupancy ratio" in rest and "1.022" in rest and "acceptance" not in rest  # the rest a click away
    assert "acceptance_rate" not in block and "0.6856" not in block
