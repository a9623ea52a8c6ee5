"""Benches that run in a network namespace of their own re-run themselves there first."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

#: Set in the re-run, so that it does not re-run itself again.
NETNS_MARK = "T10K_BENCH_NETNS"


def in_own_namespace(script: str, argv: list[str]) -> None:
    """Re-run ``script`` with ``argv`` under ``unshare -n`` with loopback up (once): wildcard
    binds, fixed addresses and nftables rules there touch nothing else on the machine."""
    if os.environ.get(NETNS_MARK) == "1":
        return
    name = os.path.basename(script).removesuffix(".py")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        sys.exit(f"{name}: needs root and unshare(1): it runs in a network namespace of its own")
    env = dict(os.environ, **{NETNS_MARK: "1"})
    cmd = "ip link set lo up && exec " + " ".join(map(shlex.quote, [sys.executable, script, *argv]))
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", cmd], env)
