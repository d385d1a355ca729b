"""`python -m tests.perf.profiled OUT.prof ASTCTI-ARGS...`: astcti under cProfile, on demand.

The bench starts the daemon this way and profiles only the window it measures: SIGUSR1 starts
the profiler, SIGUSR2 stops it and writes the statistics to OUT.prof (pstats format).
"""

from __future__ import annotations

import cProfile
import signal
import time
import sys

from astcti.cli import main


def run() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    # CPU time, not wall time: on a loaded machine the process is often preempted inside a
    # send() that wakes its peer, and a wall-clock profile blames send() for that wait
    profiler = cProfile.Profile(time.thread_time)

    def start(_sig: int, _frame: object) -> None:
        profiler.enable()

    def stop(_sig: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
