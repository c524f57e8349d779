#!/usr/bin/env python3
"""Binds with the official Python SDK client exactly as a client's configuration file says.

Usage: python py_from_config.py <MCP URL> <headers as a JSON object>
The URL and headers come from a file `collab-hub connect` wrote (tests/api/agent_config_sdk.rs
reads them). Prints one JSON line: {"aiId", "role", "sessionId"} from `whoami`, and exits 0; or
{"error": ...} and exits 1.
"""

from __future__ import annotations

import json
import sys
import warnings

import anyio
import httpx2

from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, headers = sys.argv[1], json.loads(sys.argv[2])
warnings.filterwarnings("ignore")


async def main() -> int:
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=True)
        async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=30) as client:
            me = (await client.call_tool("whoami", {})).structured_content
    print(json.dumps({"aiId": me.get("aiId"), "role": me.get("role"), "sessionId": me.get("sessionId")}))
    return 0


try:
    sys.exit(anyio.run(main))
except Exception as e:  # noqa: BLE001 - the test prints whatever went wrong
    print(json.dumps({"error": repr(e)}))
    sys.exit(1)
