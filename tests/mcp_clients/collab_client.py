"""Shared by the Python SDK scenario scripts: JSON-line reporting, checks, and the client
extension that lets mcp 2.x deliver the hub's `notifications/collab/event`."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx2
from pydantic import BaseModel, ConfigDict

from mcp.client import ClientExtension, NotificationBinding
from mcp.client.streamable_http import streamable_http_client

EVENT_METHOD = "notifications/collab/event"


class Report:
    """Prints one JSON line per check; `failed` tells whether any check failed."""

    def __init__(self) -> None:
        self.failed = False

    def out(self, ev: str, **data: Any) -> None:
        print(json.dumps({"ev": ev, **data}, default=str, separators=(",", ":")), flush=True)

    def check(self, cond: bool, what: str, detail: Any = None) -> None:
        self.out("ok" if cond else "fail", check=what, detail=detail)
        if not cond:
            self.failed = True

    def done(self) -> int:
        self.out("done", failed=self.failed)
        return 1 if self.failed else 0


class EventParams(BaseModel):
    model_config = ConfigDict(extra="allow")


def collab_events(on_event: Callable[[dict[str, Any]], None]) -> ClientExtension:
    """mcp 2.x drops notifications it does not know unless an extension claims them."""

    async def handler(params: EventParams) -> None:
        on_event(params.model_dump())

    class CollabEvents(ClientExtension):
        identifier = "dev.collabhub/events"

        def notifications(self):
            return [NotificationBinding(method=EVENT_METHOD, params_type=EventParams, handler=handler)]

    return CollabEvents()


def http_client(token: str | None = None, on_request: Callable | None = None) -> httpx2.AsyncClient:
    """An HTTP client for the SDK: the bearer token (if any) and a long read timeout (SSE)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = {"request": [on_request]} if on_request else {}
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0), event_hooks=hooks)


def transport(base: str, http: httpx2.AsyncClient):
    """The hub's /mcp endpoint over Streamable HTTP, ending the MCP session on close."""
    return streamable_http_client(f"{base}/mcp", http_client=http, terminate_on_close=True)
