"""The memory a command's whole process tree holds at its peak: the test suite's measure.

    python benchmarks/suite_memory.py -- python -m pytest -n auto -q

runs the command and samples its process tree (the command, pytest-xdist's workers, the
command-line runs in subprocesses, Dask's workers: every descendant, found through
/proc/<pid>/task/*/children) every `--every` seconds, and prints at the end:

- the peak of the summed PSS (proportional set size, /proc/<pid>/smaps_rollup): each
  shared page counted once over the processes that share it, so the sum is what the tree
  holds; this is the number to compare with a machine's memory;
- the peak of the summed RSS, which counts a page shared by n processes n times (the
  libraries every worker maps: an upper bound);
- the largest single process (RSS) and its command line;
- the cgroup's own peak where this process has a cgroup of its own to read
  (memory.peak, cgroup v2); on a machine whose cgroup is shared with other work its
  peak says nothing of this command, and it is left out (with the reason).

Linux only (/proc). The sampling misses a peak shorter than the interval; the default
0.5 s catches every test file's workers (each runs for seconds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of pid, from each of its threads' children lists."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree(root: int) -> list[int]:
    """root and every descendant that is still running."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children(pid)
    return found


def kib(path: str, key: str) -> int:
    """The `key:` line of a /proc status-like file, in KiB (0 when gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]


def own_cgroup_peak() -> tuple[int | None, str]:
    """memory.peak of this process's cgroup (v2) in bytes, or None and why not."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as exc:
        return None, f"no /proc/self/cgroup ({exc})"
    unified = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    if not unified or unified[0] in ("/", ""):
        return None, "not in a cgroup of its own (cgroup v1, or the root cgroup)"
    peak = Path("/sys/fs/cgroup") / unified[0].lstrip("/") / "memory.peak"
    if not peak.is_file():
        return None, f"{peak} does not exist"
    return int(peak.read_text()), str(peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.5, help="seconds per sample")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    began = time.perf_counter()
    proc = subprocess.Popen(command)
    peak_pss = peak_rss = biggest = 0
    biggest_cmd, at_pss = "", 0.0
    while proc.poll() is None:
        pids = tree(proc.pid)
        pss = sum(kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
        rss = 0
        for p in pids:
            r = kib(f"/proc/{p}/status", "VmRSS")
            rss += r
            if r > biggest:
                biggest, biggest_cmd = r, command_line(p)
        if pss > peak_pss:
            peak_pss, at_pss = pss, time.perf_counter() - began
        peak_rss = max(peak_rss, rss)
        time.sleep(args.every)
    elapsed = time.perf_counter() - began
    mib = 1024
    print(f"\nsuite_memory: {' '.join(command)}", file=sys.stderr)
    print(
        f"  exit {proc.returncode} after {elapsed:.0f} s; "
        f"peak summed PSS {peak_pss // mib} MiB (at {at_pss:.0f} s), "
        f"peak summed RSS {peak_rss // mib} MiB; "
        f"largest process {biggest // mib} MiB RSS: {biggest_cmd}",
        file=sys.stderr,
    )
    cgroup, where = own_cgroup_peak()
    if cgroup is None:
        print(f"  cgroup peak: not measured ({where})", file=sys.stderr)
    else:
        print(f"  cgroup peak {cgroup // 2**20} MiB ({where})", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    if not os.path.isdir("/proc/self"):
        sys.exit("suite_memory needs Linux's /proc")
    sys.exit(main())
