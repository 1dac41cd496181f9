"""A small fault-injecting TCP proxy on 127.0.0.1, for the chaos tests: put it between boto3 and
the test S3 server and it resets or delays a fraction of connections, or cuts everything for
an outage (existing connections reset, new ones refused), as a flaky network or an S3 outage
would; or it adds a fixed latency to every request, as a distant store has (the listing
benchmark). Decisions come from a seeded generator, so a failing run can be replayed."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    def __init__(self, target: str, *, seed: int = 0) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.reset_fraction = 0.0  # of new connections, reset after the request starts
        self.delay_fraction = 0.0  # of new connections, held `delay_s` before they go through
        self.delay_s = 0.0
        self.latency_s = 0.0  # added to every request (a request: the client's bytes after a response)
        self.counts = {"connections": 0, "resets": 0, "delays": 0, "refused": 0}
        self._rng = random.Random(seed)
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopped.set()
        self._thread.join()
        self._listener.close()
        self._cut_all()

    def outage(self, seconds: float) -> threading.Thread:
        """Cut the network now for `seconds` (in the background); returns the timer thread."""
        self._down.set()
        self._cut_all()

        def end() -> None:
            time.sleep(seconds)
            self._down.clear()

        thread = threading.Thread(target=end, daemon=True)
        thread.start()
        return thread

    def _cut_all(self) -> None:
        with self._lock:
            victims, self._open = list(self._open), set()
        for sock in victims:
            _reset(sock)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.counts["connections"] += 1
            roll = self._rng.random()
        if self._down.is_set():
            with self._lock:
                self.counts["refused"] += 1
            _reset(client)
            return
        reset = roll < self.reset_fraction
        if not reset and roll < self.reset_fraction + self.delay_fraction:
            with self._lock:
                self.counts["delays"] += 1
            time.sleep(self.delay_s)
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            # Forward each write at once, as a store's own server does: with Nagle's algorithm a
            # response's second write waits for the first one's delayed ACK (~40 ms on Linux).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((client, upstream))
        if reset:
            # Let the request start, then drop the connection: the client sees a reset mid-call.
            try:
                client.settimeout(5)
                data = client.recv(256)
                if data:
                    upstream.sendall(data)
            except OSError:
                pass
            with self._lock:
                self.counts["resets"] += 1
                self._open.difference_update((client, upstream))
            _reset(client)
            _reset(upstream)
            return
        # Whose turn it is on this connection: the client's next bytes after a response start a
        # new request, which waits `latency_s` (one request's round trip to a distant store).
        turn = {"request": True}
        threading.Thread(target=self._pump, args=(upstream, client, turn, False), daemon=True).start()
        self._pump(client, upstream, turn, True)

    def _pump(self, src: socket.socket, dst: socket.socket, turn: dict[str, bool] | None = None, requests: bool = False) -> None:
        try:
            src.settimeout(None)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if turn is not None:
                    if requests and turn["request"] and self.latency_s > 0:
                        time.sleep(self.latency_s)
                    turn["request"] = not requests
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):  # ends the other direction's recv too
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._open.difference_update((src, dst))
            src.close()  # each direction closes the socket it read from
