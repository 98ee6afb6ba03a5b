//! JSON-RPC 2.0 as MCP uses it: single messages and batches (2025-03-26), classified
//! into requests, notifications, results and errors, with the MCP fields the audit
//! record needs (tool name, trace context and protocol version from `_meta`, ...).

use crate::json::Node;

/// `_meta` key of the protocol version in the 2026-07-28 stateless revision.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client identity in the 2026-07-28 stateless revision.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result`.
    Result,
    /// Has `error`.
    Error,
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// Its kind.
    pub kind: Kind,
    /// The whole message as parsed (borrowing from the body).
    pub value: Node<'a>,
    /// The message's text, when it is the whole body and compact (see
    /// [`Node::parse_keeping_compact`]): what a record can carry unless redaction changed
    /// the message.
    pub text: Option<&'a str>,
}

/// Why a body is not MCP. Each variant has a low-cardinality name for metrics and records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The body is empty.
    #[error("empty body")]
    Empty,
    /// The body is not valid UTF-8 JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a JSON-RPC 2.0 message or batch.
    #[error("not JSON-RPC 2.0: {0}")]
    NotJsonRpc(&'static str),
}

impl ParseError {
    /// Low-cardinality name (`empty`, `not_json`, `not_jsonrpc`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotJson(_) => "not_json",
            Self::NotJsonRpc(_) => "not_jsonrpc",
        }
    }
}

/// Parses a body as one JSON-RPC message or a batch (array) of them.
pub fn parse(body: &[u8]) -> Result<Vec<Message<'_>>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let (value, text) = Node::parse_keeping_compact(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    match value {
        Node::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::NotJsonRpc("empty batch"));
            }
            items.into_iter().map(classify).collect()
        }
        other => Ok(vec![Message { text, ..classify(other)? }]),
    }
}

/// A JSON-RPC id as text: a string id as is, a number in decimal; `None` for null.
pub fn id_text(id: &Node) -> Option<String> {
    match id {
        Node::String(s) => Some(s.as_str().to_owned()),
        Node::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Classifies one parsed JSON value.
pub fn classify(value: Node<'_>) -> Result<Message<'_>, ParseError> {
    if !value.is_object() {
        return Err(ParseError::NotJsonRpc("not an object"));
    }
    if value.get("jsonrpc").and_then(Node::as_str) != Some("2.0") {
        return Err(ParseError::NotJsonRpc("jsonrpc is not \"2.0\""));
    }
    let has_id = value.get("id").is_some_and(|id| id.is_string() || id.is_number() || id.is_null());
    let kind = if let Some(method) = value.get("method") {
        if !method.is_string() {
            return Err(ParseError::NotJsonRpc("method is not a string"));
        }
        if has_id { Kind::Request } else { Kind::Notification }
    } else if value.get("result").is_some() {
        Kind::Result
    } else if value.get("error").is_some_and(Node::is_object) {
        Kind::Error
    } else {
        return Err(ParseError::NotJsonRpc("neither method, result nor error"));
    };
    Ok(Message { kind, value, text: None })
}

impl<'a> Message<'a> {
    /// The `method`, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Node::as_str)
    }

    /// The JSON-RPC id as text (see [`id_text`]).
    pub fn id_text(&self) -> Option<String> {
        id_text(self.value.get("id")?)
    }

    /// `params`.
    pub fn params(&self) -> Option<&Node<'a>> {
        self.value.get("params")
    }

    /// `params._meta`.
    pub fn meta(&self) -> Option<&Node<'a>> {
        self.params()?.get("_meta")
    }

    /// The tool name of a `tools/call` request.
    pub fn tool_name(&self) -> Option<&str> {
        if self.method() != Some("tools/call") {
            return None;
        }
        self.params()?.get("name").and_then(Node::as_str)
    }

    /// `traceparent` carried in `params._meta` (the OpenTelemetry MCP convention).
    pub fn meta_traceparent(&self) -> Option<&str> {
        self.meta()?.get("traceparent").and_then(Node::as_str)
    }

    /// The protocol version this message states: `params.protocolVersion` of `initialize`,
    /// `_meta` of the stateless revision, or `result.protocolVersion` of an answer.
    pub fn protocol_version(&self) -> Option<&str> {
        let from_meta = self.meta().and_then(|m| m.get(META_PROTOCOL_VERSION)).and_then(Node::as_str);
        let from_params = if self.method() == Some("initialize") {
            self.params().and_then(|p| p.get("protocolVersion")).and_then(Node::as_str)
        } else {
            None
        };
        let from_result = self.result().and_then(|r| r.get("protocolVersion")).and_then(Node::as_str);
        from_meta.or(from_params).or(from_result)
    }

    /// `result`.
    pub fn result(&self) -> Option<&Node<'a>> {
        self.value.get("result")
    }

    /// `serverInfo` of an `initialize` or `server/discover` result.
    pub fn server_info(&self) -> Option<(&str, &str)> {
        let result = self.result()?;
        let info = result
            .get("serverInfo")
            .or_else(|| result.get("_meta").and_then(|m| m.get("io.modelcontextprotocol/serverInfo")))?;
        Some((info.get("name")?.as_str()?, info.get("version").and_then(Node::as_str).unwrap_or("")))
    }

    /// For an error: code and message. For a tool result with `isError: true`: no code and
    /// the first text content, if any.
    pub fn error(&self) -> Option<(Option<i64>, Option<&str>)> {
        match self.kind {
            Kind::Error => {
                let e = self.value.get("error")?;
                Some((e.get("code").and_then(Node::as_i64), e.get("message").and_then(Node::as_str)))
            }
            Kind::Result => {
                let result = self.result()?;
                if result.get("isError").and_then(Node::as_bool) != Some(true) {
                    return None;
                }
                let text = result
                    .get("content")
                    .and_then(Node::as_array)
                    .and_then(|c| c.iter().find_map(|item| item.get("text").and_then(Node::as_str)));
                Some((None, text))
            }
            _ => None,
        }
    }
}

/// MCP methods whose names are used as metric labels; any other method is `other`.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/prompts/list_changed",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// A bounded metric label for a method.
pub fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind_and_batches() {
        let body = br#"[
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}},
            {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}},
            {"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"boom"}],"isError":true}},
            {"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"Method not found"}}
        ]"#;
        let msgs = parse(body).unwrap();
        let kinds: Vec<Kind> = msgs.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [Kind::Request, Kind::Notification, Kind::Result, Kind::Error]);
        assert_eq!(msgs[0].tool_name(), Some("echo"));
        assert_eq!(msgs[0].id_text().as_deref(), Some("1"));
        assert_eq!(msgs[0].meta_traceparent(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(msgs[2].id_text().as_deref(), Some("a"));
        assert_eq!(msgs[2].error(), Some((None, Some("boom"))));
        assert_eq!(msgs[3].error(), Some((Some(-32601), Some("Method not found"))));
    }

    #[test]
    fn finds_protocol_versions_and_server_info() {
        let init =
            &parse(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#)
                .unwrap()[0];
        assert_eq!(init.protocol_version(), Some("2025-11-25"));
        let stateless = &parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap()[0];
        assert_eq!(stateless.protocol_version(), Some("2026-07-28"));
        let answer = &parse(
            br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"time","version":"1.2.0"}}}"#,
        )
        .unwrap()[0];
        assert_eq!(answer.protocol_version(), Some("2025-06-18"));
        assert_eq!(answer.server_info(), Some(("time", "1.2.0")));
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        assert_eq!(parse(b"  ").unwrap_err(), ParseError::Empty);
        assert_eq!(parse(b"not json").unwrap_err().kind(), "not_json");
        assert_eq!(parse(b"\xff\xfe{}").unwrap_err().kind(), "not_json");
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"\xff"}}"#).unwrap_err().kind(),
            "not_json"
        );
        assert_eq!(parse(b"[]").unwrap_err(), ParseError::NotJsonRpc("empty batch"));
        assert_eq!(parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err().kind(), "not_jsonrpc");
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1}"#).unwrap_err().kind(), "not_jsonrpc");
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1,"method":7}"#).unwrap_err().kind(), "not_jsonrpc");
        assert_eq!(parse(br#"[{"jsonrpc":"2.0","method":"a"}, 5]"#).unwrap_err().kind(), "not_jsonrpc");
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("x/attacker-controlled-123"), "other");
    }
}
