"""A real MCP client (the official Python SDK, `mcp` 2.3.0) that runs a fixed scenario and
prints one JSON document with what the client received, so a test can compare a run
through the mcp-ledger agent with a direct run.

Usage: mcp_client.py URL --mode legacy|auto [--transport streamable-http|sse] [--scenario tools|client-requests]

The `client-requests` scenario calls `ask_assistant` (server started with --client-requests)
and answers its sampling and elicitation requests; it prints what the callbacks were asked.
"""

import argparse
import asyncio
import json

from mcp import Client
from mcp.types import CreateMessageResult, ElicitResult, TextContent


def dump(result):
    return json.loads(result.model_dump_json(exclude_none=True, by_alias=True))


def connect_to(url: str, transport: str):
    """What `Client` takes: the URL (Streamable HTTP) or an HTTP+SSE transport."""
    if transport == "sse":
        from mcp.client.sse import sse_client

        return sse_client(url)
    return url


async def scenario(url: str, mode: str, transport: str) -> dict:
    target = connect_to(url, transport)
    out = {}
    progress = []

    async def on_progress(p, total, message):
        progress.append([p, total, message])

    async with Client(target, mode=mode) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        out["echo"] = dump(await client.call_tool("echo", {"text": "hello ledger"}))
        out["add"] = dump(await client.call_tool("add", {"a": 2, "b": 40}))
        out["fail"] = dump(await client.call_tool("fail", {"reason": "on purpose"}))
        out["config"] = dump(await client.call_tool("whoami_config", {}))
        out["slow"] = dump(await client.call_tool("slow_count", {"n": 3}, progress_callback=on_progress))
        out["progress"] = progress
        try:
            await client.call_tool("no_such_tool", {})
            out["unknown"] = "no error"
        except Exception as e:  # the SDK raises for a JSON-RPC error
            out["unknown"] = type(e).__name__
    return out


async def client_requests(url: str, mode: str, transport: str) -> dict:
    target = connect_to(url, transport)
    asked = {}

    async def sampling(context, params):
        asked["sampling"] = [m.content.text for m in params.messages]
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="forty-two"), model="test-model", stopReason="endTurn"
        )

    async def elicitation(context, params):
        asked["elicitation"] = params.message
        return ElicitResult(action="accept", content={"send": True})

    async with Client(target, mode=mode, sampling_callback=sampling, elicitation_callback=elicitation) as client:
        result = dump(await client.call_tool("ask_assistant", {"question": "What is six times seven?"}))
    return {"asked": asked, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--mode", default="legacy")
    parser.add_argument("--transport", default="streamable-http", choices=["streamable-http", "sse"])
    parser.add_argument("--scenario", default="tools", choices=["tools", "client-requests"])
    args = parser.parse_args()
    run = client_requests if args.scenario == "client-requests" else scenario
    print(json.dumps(asyncio.run(run(args.url, args.mode, args.transport)), sort_keys=True))


if __name__ == "__main__":
    main()
