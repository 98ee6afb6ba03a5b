#!/usr/bin/env bash
# make demo: a real MCP server (official Python SDK) behind the mcp-ledger agent in local
# mode, real client traffic (initialize, tools/list, tool calls, an error, a streamed
# answer), then the redacted audit records and a metrics summary. Stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh --python-only
cargo build --quiet --locked -p mcp-ledger-agent
PY=.venv/bin/python
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
server_port=$(free_port); proxy_port=$(free_port); admin_port=$(free_port)

echo "==> MCP server (Python SDK) on 127.0.0.1:$server_port"
"$PY" tests/peers/mcp_server.py --transport streamable-http --port "$server_port" >"$work/server.log" 2>&1 & pids+=($!)
wait_port "$server_port"
echo "==> mcp-ledger agent (local mode) on 127.0.0.1:$proxy_port -> 127.0.0.1:$server_port, admin on $admin_port"
target/debug/mcp-ledger-agent --mode local --server-name demo-tools \
  --upstream "http://127.0.0.1:$server_port" --listen "127.0.0.1:$proxy_port" --admin "127.0.0.1:$admin_port" \
  --jsonl "$work/records.jsonl" --csv "$work/records.csv" --log warn 2>"$work/agent.log" & agent=$!; pids+=($agent)
wait_port "$proxy_port"
echo "==> MCP client (Python SDK): initialize, tools/list, echo, add, fail, whoami_config, slow_count (streamed), unknown tool"
"$PY" tests/peers/mcp_client.py "http://127.0.0.1:$proxy_port/mcp" --mode legacy >"$work/client.json"
"$PY" - "$work/client.json" <<'PYEOF'
import json, sys
out = json.load(open(sys.argv[1]))
print(f"    client saw tools {out['tools']}; add -> {out['add']['structuredContent']['result']}; "
      f"fail -> isError={out['fail']['isError']}; progress events: {len(out['progress'])}")
PYEOF
curl_metrics() { "$PY" -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$admin_port/metrics').read().decode())"; }
curl_metrics >"$work/metrics.txt"
kill -TERM "$agent"; wait "$agent" 2>/dev/null || true
echo
echo "==> audit records ($(wc -l <"$work/records.jsonl") in $work/records.jsonl; CSV beside it)"
"$PY" - "$work/records.jsonl" <<'PYEOF'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
print(f"    {'event':<22} {'method':<28} {'tool':<14} {'code':>4} {'ms':>8}  {'correlation':<10} redactions")
for r in records:
    ms = f"{r['durationNs']/1e6:.1f}" if r.get("durationNs") else ""
    kinds = ",".join(f"{k}={v}" for k, v in r.get("redaction", {}).get("kinds", {}).items())
    print(f"    {r['eventType']:<22} {r.get('method') or '':<28} {r.get('toolName') or '':<14} "
          f"{r.get('responseCode') or '':>4} {ms:>8}  {r['correlationId'][:10]} {kinds}")
redacted = next(r for r in records if r.get("toolName") == "whoami_config" and r["eventType"] == "mcp-response-success")
print("\n==> one record in full (the answer that carried a credential, redacted):")
print(json.dumps(redacted, indent=2))
text = open(sys.argv[1]).read()
assert "AKIAIOSFODNN7EXAMPLE" not in text, "a credential reached the records"
PYEOF
echo
echo "==> metrics summary (admin /metrics)"
grep -E '^mcp_ledger_(requests_total|records_exported_total|records_dropped_total|redactions_total|active_sessions)' "$work/metrics.txt" | sed 's/^/    /'
echo
echo "demo finished: everything it started is stopped"
