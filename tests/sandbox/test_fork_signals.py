"""A process forked from a sandboxed job (the scrubber's multiprocessing pool) must not stop
the job: the pool's teardown sends its workers SIGTERM, and a worker that kept the job's
wakeup fd wrote that signal into the job's own stop pipe, so the job ended as `stopped`
(exit 3) right after its analysis. Run in the real sandbox, a few teardowns in a row (the
worker's timing decides whether one hits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance import sandbox

pytestmark = pytest.mark.netns

POOL = """
import multiprocessing, time
from appliance.train.cancel import StopFlag
StopFlag(lambda *a, **k: print("event", *a, flush=True)).install()
def f(x):
    return x * 2
for pause in (0, 0.3, 0, 0.3, 0, 0.3):  # a worker busy or waiting in a read: both stopped it
    pool = multiprocessing.get_context("fork").Pool(2)
    print(pool.map(f, range(4)), flush=True)
    time.sleep(pause)
    pool.terminate()
    pool.join()
time.sleep(1)
print("survived", flush=True)
"""


def test_a_pool_torn_down_inside_the_job_does_not_stop_it(tmp_path: Path) -> None:
    """The job outlives its pool's SIGTERMs, and reports no `stopped` event."""
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    proc = sandbox.spawn([sys.executable, str(script)], sandbox.Spec(read_only=(script,)),
                         env=sandbox.environment({}), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err[-2000:])
    assert out.decode().split()[-1] == "survived" and b"stopped" not in out
