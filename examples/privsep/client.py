#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Asks server.py once: client.py HOST PORT CHALLENGE prints its answer (JSON)."""

import socket
import sys


def main() -> None:
    host, port, challenge = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with socket.create_connection((host, port), timeout=30) as conn:
        with conn.makefile("rwb") as stream:
            stream.write(challenge.encode() + b"\n")
            stream.flush()
            sys.stdout.write(stream.readline().decode())


if __name__ == "__main__":
    main()
