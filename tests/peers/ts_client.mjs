// A real MCP client (the official TypeScript SDK, @modelcontextprotocol/sdk 1.32.2) that runs
// a fixed scenario against the reference server (@modelcontextprotocol/server-everything)
// and prints one JSON document with what it received, for direct vs. agent comparisons.
//
// Usage: node ts_client.mjs URL streamable-http|sse
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [url, transportName] = process.argv.slice(2);
const transport = transportName === "sse"
  ? new SSEClientTransport(new URL(url))
  : new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "mcp-ledger-ts-test", version: "1.0.0" });
await client.connect(transport);
const out = {};
const tools = await client.listTools();
out.tools = tools.tools.map((t) => t.name).sort();
out.echo = await client.callTool({ name: "echo", arguments: { message: "hello ledger" } });
out.sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } });
const progress = [];
out.long = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
  undefined,
  { onprogress: (p) => progress.push([p.progress, p.total]) },
);
out.progress = progress;
try {
  out.unknown = await client.callTool({ name: "no-such-tool", arguments: {} });
} catch (e) {
  out.unknown = { error: e.code ?? String(e) };
}
await client.close();
console.log(JSON.stringify(out));
