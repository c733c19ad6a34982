"""How much memory this process can still take: free memory of the machine and room under its address-space
limit (Linux), for checks that refuse or route work before an allocation fails."""

from __future__ import annotations

from pathlib import Path


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable, else psutil when installed), None when
    unknown (then nothing is refused)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def address_space_left() -> int | None:
    """Bytes left under this process's RLIMIT_AS (its limit minus its VmSize), None without a limit or where
    unknown."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return limit - int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError, ImportError):
        pass
    return None
