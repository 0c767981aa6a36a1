"""A process's own peak memory, for the benchmarks' figures.

``getrusage(RUSAGE_SELF).ru_maxrss`` is not reset when a process is started by fork and exec: a phase measured in a
fresh process started by a large one (the bench after generating its data) reports the parent's size at the fork.
``VmHWM`` in ``/proc/self/status`` belongs to the process's own address space, made new by exec: that is the figure.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM; ru_maxrss where /proc is not there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
