"""A placed chain stops on the driver's Ctrl-C even when Ray's cancel goes unseen: the task
polls the `stop` file the driver writes on the shared home (`lib.cluster`)."""

import subprocess
import sys
import threading
import time

import pytest

from lib import cluster


def test_the_task_stops_its_chain_when_the_driver_writes_the_stop_file(tmp_path):
    stop = tmp_path / "stop.request"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        threading.Timer(0.5, lambda: stop.write_text("Ctrl-C on the driver\n")).start()
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt, match="written by the driver"):
            cluster._wait(proc, stop)
        assert time.perf_counter() - t0 < 10 and proc.poll() is None  # the caller passes the SIGINT on
    finally:
        proc.kill()
        proc.wait()


def test_without_the_stop_file_the_task_waits_for_its_chains_code(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1.5); sys.exit(3)"])
    assert cluster._wait(proc, tmp_path / "stop.request") == 3
    assert cluster.Chain("c", [], 1, 1, tmp_path).stop == tmp_path / "stop.request"
