"""Engine and library chatter goes to the stage's log file, not into the report."""

import logging
import subprocess
import sys
import warnings

from lib import logs, paths


def test_everything_written_inside_the_block_lands_in_the_log(tmp_path, capfd):
    path = tmp_path / "reports" / "06_benchmark.log"
    chatty = logging.getLogger("chatty_library")
    chatty.addHandler(logging.StreamHandler(sys.stderr))  # as vLLM and transformers do at import
    chatty.setLevel(logging.INFO)
    last_resort = logging.getLogger("library_with_the_last_resort_handler")  # seen in notebook 01
    last_resort.addHandler(logging.lastResort)
    try:
        with logs.to_file(path):
            print("python print")
            chatty.info("a library log line")
            last_resort.warning("a last-resort log line")
            warnings.warn("a library warning", stacklevel=2)
            import os

            os.write(1, b"fd-level stdout of a C extension\n")
            os.write(2, b"fd-level stderr of a C extension\n")
            subprocess.run([sys.executable, "-c", "print('an engine-core subprocess')"], check=True)
        print("after the block")
        chatty.info("after the block, logged")
    finally:
        chatty.handlers.clear()
        last_resort.handlers.clear()
    out, err = capfd.readouterr()
    text = path.read_text()
    for line in (
        "python print",
        "a library log line",
        "a last-resort log line",
        "a library warning",
        "fd-level stdout of a C extension",
        "fd-level stderr of a C extension",
        "an engine-core subprocess",
    ):
        assert line in text, line
        assert line not in out + err, line
    assert "after the block" in out and "after the block, logged" in err  # restored on the way out
    assert "after the block" not in text


def test_the_log_shows_as_a_link_beside_the_report():
    rp = paths.RunPaths("tiny", "cod", "easy")
    log = logs.to_file(rp.log("06_benchmark"))
    assert rp.log("06_benchmark").parent == rp.report_dir  # the report's relative link resolves
    assert "[06_benchmark.log](06_benchmark.log)" in log._repr_markdown_()
    assert paths.profile_log("tiny", "00_base_models").parent == paths.reports_root("tiny") / paths.PROFILE_RUN


def test_library_bars_are_off_inside_and_no_warning_on_the_way_out(tmp_path, monkeypatch):
    """datasets, first imported inside a block, reads the switch at import and cannot turn its bars
    back on: leaving the block must not warn about that into the report (seen in notebook 02)."""
    import importlib

    bars = importlib.import_module("datasets.utils.tqdm")  # the module (datasets.utils.tqdm is also a class)

    monkeypatch.setattr(bars, "HF_DATASETS_DISABLE_PROGRESS_BARS", True)  # as read at a first import
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with logs.to_file(tmp_path / "x.log"):
            assert bars.are_progress_bars_disabled()
    assert [str(w.message) for w in seen] == []
