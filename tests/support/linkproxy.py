"""A bad link for tests: a TCP proxy on 127.0.0.1 that adds latency, limits the rate and cuts connections.

This machine's kernel has no netem, so the link's faults are made in user space. Each direction of a
connection is delayed by ``latency`` seconds, throttled to ``rate`` bytes per second, and every
connection is cut ``cut_after`` seconds after it opened.
"""
from __future__ import annotations

import asyncio
import threading
import time


class LinkProxy:
    def __init__(self, target_port: int, *, latency: float = 0.3, rate: int = 32_000, cut_after: float | None = None):
        self.target_port = target_port
        self.latency = latency
        self.rate = rate
        self.cut_after = cut_after
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LinkProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, client_reader, client_writer) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        opened = time.monotonic()

        async def pipe(reader, writer, down: bool) -> None:
            sent = 0
            start = time.monotonic()
            try:
                while True:
                    data = await reader.read(8192)
                    if not data:
                        break
                    await asyncio.sleep(self.latency if sent == 0 else 0)
                    sent += len(data)
                    ahead = sent / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    if self.cut_after is not None and time.monotonic() - opened > self.cut_after:
                        self.cuts += 1
                        raise ConnectionResetError("cut")
                    if down:
                        self.bytes_down += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (client_writer, server_writer):
                    try:
                        w.close()
                    except RuntimeError:  # the loop is shutting down
                        pass

        await asyncio.gather(pipe(client_reader, server_writer, False), pipe(server_reader, client_writer, True))
