"""A real MCP client (the official Python SDK, `mcp` 2.3.0) that runs a list of steps
against one server and prints, as one JSON document, what each step returned, so that a
test can check what governance let through.

Usage: governance_client.py URL [--token JWT] STEP...
Steps: `list` (the tool names and descriptions the client sees), `call:NAME` (calls the
tool with fitting arguments; the text it returned or the error the client got).
"""

import argparse
import asyncio
import json

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ARGUMENTS = {
    "echo": {"text": "hello ledger"},
    "add": {"a": 2, "b": 40},
    "fail": {"reason": "on purpose"},
    "exfiltrate": {"path": "/etc/hostname"},
}


async def run(url: str, token: str | None, steps: list[str]) -> list:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    out = []
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            for step in steps:
                if step == "list":
                    tools = await client.list_tools()
                    out.append({"tools": {t.name: t.description for t in tools.tools}})
                    continue
                name = step.removeprefix("call:")
                try:
                    result = await client.call_tool(name, ARGUMENTS.get(name, {}))
                    text = " ".join(c.text for c in result.content if getattr(c, "text", None))
                    out.append({"error": text} if result.is_error else {"ok": text})
                except Exception as e:  # the SDK raises for a JSON-RPC error answer
                    out.append({"error": str(e)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("steps", nargs="+")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.token, args.steps))))


if __name__ == "__main__":
    main()
