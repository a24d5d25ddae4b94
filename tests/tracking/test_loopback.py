"""Ports for the servers we start: free, and never one an outgoing connection may take."""

from __future__ import annotations

import socket

from mnist_exp.tracking import loopback


def test_a_free_port_is_free_and_outside_the_ports_outgoing_connections_get():
    low, high = loopback.ephemeral_ports()
    assert 1024 <= low <= high <= 65535
    # A client's end of a connection is given a port from that range: a server restarted on a
    # port there can find it taken.
    with (
        socket.create_server((loopback.HOST, 0)) as listening,
        socket.create_connection(listening.getsockname()) as client,
    ):
        assert low <= client.getsockname()[1] <= high
    ports = {loopback.free_port() for _ in range(20)}
    assert len(ports) > 1  # chosen at random, so parallel tests rarely pick the same
    for port in ports:
        assert not low <= port <= high
        with socket.create_server((loopback.HOST, port)):
            pass
