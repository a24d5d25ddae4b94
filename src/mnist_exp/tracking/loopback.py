"""Where the servers we start listen: 127.0.0.1 only, on a port nothing else holds."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"

# Where Linux says the ports it gives outgoing connections are (and its default).
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)


def ephemeral_ports() -> tuple[int, int]:
    """The first and last port the kernel picks for an outgoing connection's own end."""
    try:
        low, high = (int(n) for n in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


def free_port() -> int:
    """A port nothing listens on now, outside the kernel's range for outgoing connections. A
    server stopped and started again on its port (an outage) would otherwise find it taken as
    the local end of some client's connection meanwhile: in CI, a test's second server failed
    with "address already in use" 16 s after its first had stopped."""
    low, high = ephemeral_ports()
    # From 20000: Ray's workers take 10002-19999 by default (the team setup's head would clash).
    outside = [p for p in range(20000, 65536) if not low <= p <= high]
    for port in random.sample(outside, min(50, len(outside))):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # every one tried is taken: any the kernel gives
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
