"""A serving process's garbage collector (``chromactl.pod.heap``)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from chromactl.pod.heap import YOUNG_THRESHOLD, settle_for_serving

default = gc.get_threshold()
settle_for_serving()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert gc.get_threshold() == (YOUNG_THRESHOLD, *default[1:]), gc.get_threshold()

class Cycle:
    def __init__(self):
        self.me = self

import weakref
left = weakref.ref(Cycle())
for _ in range(3 * YOUNG_THRESHOLD):
    Cycle()  # what requests leave behind
assert left() is None, "a cycle a request left behind is still freed"
print("ok")
"""


def test_a_serving_process_freezes_its_start_up_and_still_frees_request_cycles() -> None:
    # In a process of its own: freezing is for the whole interpreter.
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
