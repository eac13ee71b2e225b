"""A real OPC UA server (asyncua) for the adapter tests: instrument status variables and a write-back method.

It runs in its own thread and event loop, so a test (or the hub's runtime) talks to it over TCP exactly as it
would to an instrument's server. The method `Call(key, action)` records each idempotency key once and answers
"accepted" the first time and "duplicate" after, like a device that remembers the commands it has executed.
"""

import asyncio
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod

NAMESPACE = "urn:qihub:test:lab-instruments"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpcUaTestServer:
    """An asyncua server with one balance: `Balance-XPR205.Status` (Int32) and the method `Balance-XPR205.Call`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/qihub-test/"
        self.calls: dict[str, str] = {}  # idempotency key → action, each executed once
        self.call_log: list[tuple[str, str]] = []  # every call that reached the server, duplicates included
        self.fail_calls = 0  # the next N method calls fail with BadInternalError (fault injection)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._status: Any = None
        self.namespace_index = 2

    @property
    def status_node_id(self) -> str:
        """Node id of the balance's status variable."""
        return f"ns={self.namespace_index};s=Balance-XPR205.Status"

    @property
    def object_node_id(self) -> str:
        """Node id of the balance object."""
        return f"ns={self.namespace_index};s=Balance-XPR205"

    @property
    def method_node_id(self) -> str:
        """Node id of the write-back method."""
        return f"ns={self.namespace_index};s=Balance-XPR205.Call"

    def adapter_config(self, **extra: Any) -> dict[str, Any]:
        """An OPC UA adapter configuration pointing at this server."""
        return {
            "endpoint": self.endpoint,
            "variables": [
                {
                    "node_id": self.status_node_id,
                    "instrument": {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B123456789"},
                    "room": "R-101",
                }
            ],
            "methods": {"balance": {"object_id": self.object_node_id, "method_id": self.method_node_id}},
            "publishing_interval_ms": 50,
            "timeout_s": 2,
            **extra,
        }

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> "OpcUaTestServer":
        """Start the server in its own thread; returns when it listens."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as error:  # reported to the caller of start()
                failure.append(error)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="opcua-test-server", daemon=True)
        self._thread.start()
        if not started.wait(30) or failure:
            raise RuntimeError(f"the OPC UA test server did not start: {failure}")
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("qihub test instruments")
        self.namespace_index = await server.register_namespace(NAMESPACE)
        idx = self.namespace_index
        balance = await server.nodes.objects.add_object(ua.NodeId("Balance-XPR205", idx), f"{idx}:Balance-XPR205")
        self._status = await balance.add_variable(
            ua.NodeId("Balance-XPR205.Status", idx), f"{idx}:Status", ua.Variant(1, ua.VariantType.Int32)
        )

        @uamethod
        def call(parent: ua.NodeId, key: str, action: str) -> str:
            self.call_log.append((key, action))
            if self.fail_calls > 0:
                self.fail_calls -= 1
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInternalError)
            if key in self.calls:
                return "duplicate"
            self.calls[key] = action
            return "accepted"

        await balance.add_method(
            ua.NodeId("Balance-XPR205.Call", idx),
            f"{idx}:Call",
            call,
            [ua.VariantType.String, ua.VariantType.String],
            [ua.VariantType.String],
        )
        await server.start()
        self._server = server

    # --- driving the instrument --------------------------------------------------------------------------

    def set_status(self, code: int, at: datetime | None = None, *, bad: bool = False) -> datetime:
        """Change the status variable with a source timestamp (now by default); returns the timestamp."""
        moment = (at or datetime.now(UTC)).astimezone(UTC)

        async def write() -> None:
            assert self._status is not None
            status = ua.StatusCode(ua.StatusCodes.BadCommunicationError if bad else ua.StatusCodes.Good)
            value = ua.DataValue(
                ua.Variant(code, ua.VariantType.Int32),
                StatusCode=status,
                SourceTimestamp=moment.replace(tzinfo=None),
                ServerTimestamp=datetime.now(UTC).replace(tzinfo=None),
            )
            await self._status.write_value(value)

        asyncio.run_coroutine_threadsafe(write(), self._loop).result(10)
        return moment
