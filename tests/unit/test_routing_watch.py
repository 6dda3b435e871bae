"""`quorum dev` says loudly when order routing is disconnected (e.g. after an OMS restart), once per disconnect
and again every minute while it lasts; it stays quiet while routing is connected."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from quorum.cli import RoutingWatch


class FakeGateway:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {"routing_connected": True}
        self.auth: list[str | None] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                gateway.auth.append(self.headers.get("Authorization"))
                body = json.dumps(gateway.status).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    g = FakeGateway()
    yield g
    g.server.shutdown()


def test_a_disconnect_is_announced_once_then_again_after_the_repeat_interval(gateway: FakeGateway) -> None:
    said: list[str] = []
    watch = RoutingWatch(gateway.url, "tok-0123456789", said.append, every_s=0, repeat_s=3600)

    watch.poll()
    assert said == []  # connected: quiet

    gateway.status = {"routing_connected": False, "routing_disconnected_since": "2026-12-01T10:00:00Z",
                      "routing": "disconnected since 2026-12-01T10:00:00Z, 25 intents refused"}
    watch.poll()
    watch.poll()
    loud = [line for line in said if "ORDER ROUTING" in line]
    assert loud == ["!!! ORDER ROUTING DISCONNECTED SINCE 2026-12-01T10:00:00Z, 25 INTENTS REFUSED"]
    assert gateway.auth[-1] == "Bearer tok-0123456789"

    watch.repeat_s = 0  # a minute later (repeat interval elapsed): said again
    watch.poll()
    assert len([line for line in said if "ORDER ROUTING" in line]) == 2


def test_a_new_disconnect_is_announced_even_within_the_repeat_interval(gateway: FakeGateway) -> None:
    said: list[str] = []
    watch = RoutingWatch(gateway.url, "tok-0123456789", said.append, every_s=0, repeat_s=3600)
    gateway.status = {"routing_connected": False, "routing_disconnected_since": "t1", "routing": "disconnected"}
    watch.poll()
    gateway.status = {"routing_connected": True}
    watch.poll()
    gateway.status = {"routing_connected": False, "routing_disconnected_since": "t2", "routing": "disconnected"}
    watch.poll()
    assert len([line for line in said if "ORDER ROUTING" in line]) == 2


def test_an_unreachable_gateway_is_not_an_error() -> None:
    said: list[str] = []
    RoutingWatch("http://127.0.0.1:9", "tok", said.append, every_s=0).poll()
    assert said == []
