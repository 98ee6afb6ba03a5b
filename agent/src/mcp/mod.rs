//! MCP framing: JSON-RPC messages, Server-Sent Events and W3C trace context. Pure
//! functions over bytes; no I/O.

pub mod jsonrpc;
pub mod sse;
pub mod trace;
