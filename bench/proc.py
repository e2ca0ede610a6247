"""
What Linux's /proc says about a process and the machine, and the process
hygiene the benchmark relies on.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal

_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_ESTABLISHED = "01"
_LISTEN = "0A"


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU time that process C{pid} has used.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def stolenSeconds(stat: str = "/proc/stat") -> float:
    """
    CPU time the hypervisor has taken from this machine's CPUs since boot,
    summed over the CPUs (the C{steal} column of C{/proc/stat}); 0 where
    the kernel does not count it.
    """
    with open(stat) as f:
        fields = f.readline().split()
    return int(fields[8]) / _TICKS if len(fields) > 8 else 0.0


def busySeconds(stat: str = "/proc/stat") -> float:
    """
    CPU time this machine's CPUs have not been idle since boot, summed over
    the CPUs: every process's, the kernel's (interrupts, and the softirqs
    that carry loopback TCP, charged to no process) and the hypervisor's
    steal; only the C{idle} and C{iowait} columns of C{/proc/stat} are not.
    """
    with open(stat) as f:
        ticks = [int(field) for field in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


def rssBytes(pid: int) -> int:
    """
    The resident memory of process C{pid} (C{VmRSS}).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"process {pid} has no VmRSS")


def openFiles(pid: int) -> int:
    """
    How many file descriptors process C{pid} has open: a cheap count to
    poll, where L{connectionCount} reads every socket's details.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def connectionCount(pid: int, port: int, closing: bool = False) -> int:
    """
    How many established TCP connections to its local C{port} process
    C{pid} has accepted (connections still in the listen queue are the
    kernel's, not yet the process's); with C{closing}, also those the peer
    has closed and the process has not yet.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    local = f":{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            state = fields[3]
            wanted = state != _LISTEN if closing else state == _ESTABLISHED
            if wanted and fields[1].endswith(local) and fields[9] in inodes:
                count += 1
    return count


def cores() -> int:
    """
    The CPUs this process may run on.
    """
    return len(os.sched_getaffinity(0))


def machine() -> str:
    """
    One line naming the machine: CPUs, CPU model, memory, kernel, Python.
    """
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) / 1024**2
    return (
        f"{cores()} CPUs ({model}), {memory:.0f} GiB RAM, Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def raiseFileLimit(wanted: int) -> int:
    """
    Raise the soft limit of open files (and the hard one, when allowed) to
    at least C{wanted}; children inherit it.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def dieWithParent() -> None:
    """
    Have the kernel kill this process when the benchmark dies, however it
    dies, and leave Ctrl-C to the benchmark.
    """
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class RssGrowth:
    """
    Mixed into the result of a run that watched a server's memory: what it
    held before and at the peak.
    """

    rssBefore: int
    rssPeak: int

    @property
    def growth(self) -> int:
        """
        Peak resident memory during the run above resident memory before it.
        """
        return self.rssPeak - self.rssBefore
