"""The test helper that forks scripts from a process that imported them once (tests/forked.py)
runs each as `python -c` would: a process of its own, nothing carried from the calls before,
its arguments, output, error output and exit status its own."""

import json
import os

from forked import Forks

SCRIPT = """
import json, os, sys
import email.message as m  # preloaded: the import is the forking process's
print(json.dumps({"pid": os.getpid(), "argv": sys.argv, "seen": hasattr(m, "carried"), "cwd": os.getcwd()}))
m.carried = True
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def test_each_script_is_a_fresh_process_with_its_own_streams_and_status(tmp_path):
    with Forks({**os.environ, "FORKS_TEST": "1"}, tmp_path, ["email.message"]) as forks:
        runs = [forks.run(SCRIPT, str(code), "x") for code in (0, 3)]
        crashed = forks.run("raise ValueError('boom')")
    seen = [json.loads(r.stdout) for r in runs]
    assert [r.returncode for r in runs] == [0, 3] and crashed.returncode == 1
    assert "ValueError: boom" in crashed.stderr and all(r.stderr == "to stderr\n" for r in runs)
    assert seen[0]["pid"] != seen[1]["pid"] and not seen[1]["seen"]  # nothing carried over
    assert seen[0]["argv"] == ["-c", "0", "x"] and seen[0]["cwd"] == str(tmp_path)
