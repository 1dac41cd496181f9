"""Which process wrote something, and whether it still lives: for the lease's holder and for
the temporaries a killed writer leaves.

A process is named by its host and pid, and on Linux by its pid namespace too: two containers
that share a host name (`--network host`) have separate pid numbers, so a pid seen in one
means nothing in the other.
"""

from __future__ import annotations

import os
import socket


def this_host() -> str:
    """This process's host, with its pid namespace where there is one (`vm~4026531836`)."""
    try:
        ns = os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        ns = ""
    name = socket.gethostname().replace("-", "_")  # "-" separates fields in temporaries' names
    return f"{name}~{ns}" if ns else name


def pid_gone(host: str, pid: int) -> bool:
    """True only when `pid` of `host` surely no longer exists: it was a process of this host
    (and pid namespace) and the kernel does not know it. Elsewhere: False, as we cannot tell."""
    if host != this_host() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
