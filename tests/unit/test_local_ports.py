"""The local stack's ports: every port handed out is one nothing listens on, and never the same one twice."""

from __future__ import annotations

import socket
from unittest import mock

from localcloud import processes


def test_a_port_is_never_handed_out_twice_even_when_the_kernel_offers_it_again():
    offered = iter([50001, 50001, 50002, 50001, 50003])

    class Probe(socket.socket):
        def getsockname(self):
            return ("127.0.0.1", next(offered))

    with mock.patch.object(processes, "_HANDED_OUT", set()), mock.patch.object(processes.socket, "socket", Probe):
        assert [processes.free_port() for _ in range(3)] == [50001, 50002, 50003]


def test_the_ports_handed_out_are_free_and_distinct():
    ports = [processes.free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # nothing holds it
