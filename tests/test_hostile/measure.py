"""Run a module or script under a memory limit and report its peak RSS (used by the hostile-input tests).

    python tests/test_hostile/measure.py AS_LIMIT_BYTES -m module args...   |   ... AS_LIMIT_BYTES script.py args...
    python tests/test_hostile/measure.py AS_LIMIT_BYTES -c "python code"

Prints `PEAK_RSS_KB=<n>` on stderr at exit; the exit code is the target's (an uncaught exception: 1).
"""

from __future__ import annotations

import resource
import runpy
import sys


def _peak_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main() -> int:
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    mode, target, *rest = sys.argv[2:]
    code = 0
    try:
        if mode == "-m":
            sys.argv = [target, *rest]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        elif mode == "-c":
            sys.argv = ["-c", *rest]
            exec(compile(target, "<measure>", "exec"), {"__name__": "__main__"})  # noqa: S102 - test harness
        else:
            sys.argv = [mode, target, *rest]
            runpy.run_path(mode, run_name="__main__")
    except SystemExit as request:
        code = request.code if isinstance(request.code, int) else (0 if request.code is None else 1)
    finally:
        sys.stderr.write(f"\nPEAK_RSS_KB={_peak_kb()}\n")
        sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
