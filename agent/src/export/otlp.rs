//! OTLP logs export over gRPC (HTTP/2 cleartext, unary `LogsService/Export`) or
//! HTTP/protobuf (`POST /v1/logs`). Each audit record becomes one LogRecord: the log data
//! model fields (Timestamp, ObservedTimestamp, SeverityNumber/Text, Body, EventName,
//! TraceId, SpanId) plus the MCP semantic-convention attributes, under a Resource with the
//! `k8s.*` attributes of the pod.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_ledger_crds::config::{OtlpConfig, OtlpProtocol};
use mcp_ledger_crds::record::attr;
use mcp_ledger_crds::{AuditRecord, HeaderTexts};
use prost::Message as _;

use crate::json::{Node, Text};

use super::ExportError;
use super::proto::{self, AnyValue, KeyValue, any_value, string};

/// The gRPC method path of OTLP logs export.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// An OTLP exporter.
pub struct Otlp {
    protocol: OtlpProtocol,
    uri: http::Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    resource: Vec<KeyValue>,
}

impl Otlp {
    /// Builds an exporter; `resource` are the resource attributes (service, k8s.*).
    pub fn new(config: &OtlpConfig, resource: Vec<(String, String)>) -> Result<Self, ExportError> {
        let base = config.endpoint.trim_end_matches('/');
        let uri = match config.protocol {
            OtlpProtocol::Grpc => format!("{base}{GRPC_PATH}"),
            OtlpProtocol::HttpProtobuf if base.ends_with("/v1/logs") => base.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{base}/v1/logs"),
        };
        let uri: http::Uri =
            uri.parse().map_err(|e| ExportError::Collector(format!("endpoint '{}': {e}", config.endpoint)))?;
        if uri.scheme_str() != Some("http") {
            return Err(ExportError::Collector(format!(
                "endpoint '{}': only http:// (cleartext, as to a node-local collector) is supported so far",
                config.endpoint
            )));
        }
        let mut builder = Client::builder(TokioExecutor::new());
        if config.protocol == OtlpProtocol::Grpc {
            builder.http2_only(true);
        }
        Ok(Self {
            protocol: config.protocol,
            uri,
            timeout: Duration::from_millis(config.timeout_ms),
            client: builder.build_http(),
            resource: resource.into_iter().map(|(k, v)| kv(&k, string(v))).collect(),
        })
    }

    /// Metric label.
    pub fn name(&self) -> &'static str {
        match self.protocol {
            OtlpProtocol::Grpc => "otlp_grpc",
            OtlpProtocol::HttpProtobuf => "otlp_http",
        }
    }

    /// Sends one batch.
    pub async fn export(&mut self, batch: &[AuditRecord]) -> Result<(), ExportError> {
        let request = encode_request(batch, &self.resource);
        self.send_encoded(request.encode_to_vec()).await
    }

    /// Sends one already encoded `ExportLogsServiceRequest` (what the node agent relays).
    pub async fn send_encoded(&mut self, payload: Vec<u8>) -> Result<(), ExportError> {
        let req = match self.protocol {
            OtlpProtocol::Grpc => {
                let mut framed = BytesMut::with_capacity(payload.len() + 5);
                framed.put_u8(0);
                framed.put_u32(payload.len() as u32);
                framed.put_slice(&payload);
                http::Request::post(self.uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/grpc")
                    .header(http::header::TE, "trailers")
                    .body(Full::new(framed.freeze()))
            }
            OtlpProtocol::HttpProtobuf => http::Request::post(self.uri.clone())
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(Bytes::from(payload))),
        }
        .map_err(|e| ExportError::Collector(e.to_string()))?;
        let send = async {
            let resp = self.client.request(req).await.map_err(|e| ExportError::Collector(format!("send: {e}")))?;
            let status = resp.status();
            let grpc_status_header = resp.headers().get("grpc-status").cloned();
            let collected =
                resp.into_body().collect().await.map_err(|e| ExportError::Collector(format!("read: {e}")))?;
            let trailers = collected.trailers().cloned();
            if !status.is_success() {
                return Err(ExportError::Collector(format!("HTTP {status}")));
            }
            if self.protocol == OtlpProtocol::Grpc {
                let grpc_status = trailers.as_ref().and_then(|t| t.get("grpc-status").cloned()).or(grpc_status_header);
                match grpc_status.as_ref().and_then(|v| v.to_str().ok()) {
                    Some("0") => {}
                    Some(code) => return Err(ExportError::Collector(format!("grpc-status {code}"))),
                    None => return Err(ExportError::Collector("no grpc-status in the answer".into())),
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, send).await.map_err(|_| ExportError::Collector("timed out".into()))?
    }
}

fn int(i: i64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::IntValue(i)) }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value) }
}

/// Converts JSON to an OTLP AnyValue (objects become key/value lists).
pub fn any_value(v: &Node) -> AnyValue {
    let value = match v {
        Node::Null => None,
        Node::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Node::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Node::String(s) => Some(any_value::Value::StringValue(s.as_str().to_owned())),
        Node::Array(items) => {
            Some(any_value::Value::ArrayValue(proto::ArrayValue { values: items.iter().map(any_value).collect() }))
        }
        Node::Object(members) => Some(any_value::Value::KvlistValue(proto::KeyValueList {
            values: last_of_each_key(members).map(|(k, v)| kv(k.as_str(), any_value(v))).collect(),
        })),
    };
    AnyValue { value }
}

/// The members of an object without the earlier copies of a repeated key. The OTLP data
/// model wants the keys of a key/value list unique; the last copy is the one lookups (and
/// most parsers) take. JSON lines keep every copy.
fn last_of_each_key<'n, 'a>(members: &'n [(Text<'a>, Node<'a>)]) -> impl Iterator<Item = &'n (Text<'a>, Node<'a>)> {
    // Small objects (nearly all) are checked pairwise; large ones through a map, so that
    // a message with many keys costs linear time.
    let last: Option<std::collections::HashMap<&str, usize>> =
        (members.len() > 16).then(|| members.iter().enumerate().map(|(i, (k, _))| (k.as_str(), i)).collect());
    members.iter().enumerate().filter_map(move |(i, m)| {
        let later = match &last {
            Some(last) => last[m.0.as_str()] != i,
            None => members[i + 1..].iter().any(|(k, _)| k == &m.0),
        };
        (!later).then_some(m)
    })
}

fn nanos(ts: jiff::Timestamp) -> u64 {
    u64::try_from(ts.as_nanosecond()).unwrap_or(0)
}

/// One audit record as an OTLP LogRecord.
pub fn log_record(r: &AuditRecord) -> proto::LogRecord {
    log_record_with(r, &mut HeaderTexts::default())
}

/// As [`log_record`], the headers' JSON from `texts` when their set was written there
/// before (the records of a batch share a few sets).
fn log_record_with(r: &AuditRecord, texts: &mut HeaderTexts) -> proto::LogRecord {
    let mut a = Vec::with_capacity(32);
    let mut push = |k: &str, v: Option<AnyValue>| {
        if let Some(v) = v {
            a.push(kv(k, v));
        }
    };
    push(attr::EVENT_TYPE, Some(string(r.event_type.as_str())));
    push(attr::MCP_METHOD_NAME, r.method.as_deref().map(string));
    push(attr::MCP_SESSION_ID, r.session_id.as_deref().map(string));
    push(attr::MCP_PROTOCOL_VERSION, r.protocol_version.as_deref().map(string));
    push(attr::JSONRPC_REQUEST_ID, r.request_id.jsonrpc.as_deref().map(string));
    push(attr::JSONRPC_PROTOCOL_VERSION, Some(string("2.0")));
    push(attr::REQUEST_UID, Some(string(r.request_id.unique.to_string())));
    push(attr::GEN_AI_TOOL_NAME, r.tool_name.as_deref().map(string));
    if r.tool_name.is_some() {
        push(attr::GEN_AI_OPERATION_NAME, Some(string("execute_tool")));
    }
    push(attr::TOOL_ID, r.tool_id.as_deref().map(string));
    push(attr::HTTP_RESPONSE_STATUS_CODE, r.response_code.map(|c| int(i64::from(c))));
    push(attr::RESPONSE_TYPE, r.response_type.as_deref().map(string));
    push(attr::CLIENT_ADDRESS, r.client_ip.as_deref().map(string));
    push(attr::NETWORK_TRANSPORT, Some(string("tcp")));
    push(attr::NETWORK_PROTOCOL_NAME, Some(string("http")));
    push(attr::USER_ID, r.user_id.as_deref().map(string));
    push(attr::TEAM_ID, r.team_id.as_deref().map(string));
    push(attr::ORG_ID, r.org_id.as_deref().map(string));
    push(attr::IDENTITY_SOURCE, Some(string(r.identity_source.as_str())));
    push(attr::CORRELATION_ID, Some(string(r.correlation_id.to_string())));
    push(attr::DIRECTION, Some(string(r.direction.as_str())));
    push(attr::TRANSPORT, Some(string(r.transport.as_str())));
    push(attr::SERVER_NAME, Some(string(r.server.name.clone())));
    push(attr::SERVER_NAMESPACE, r.server.namespace.as_deref().map(string));
    push(attr::SERVER_VERSION, r.server.version.as_deref().map(string));
    push(attr::DURATION_NS, r.duration_ns.map(|d| int(d.min(i64::MAX as u64) as i64)));
    push(attr::BODY_BYTES, Some(int(r.body_bytes.min(i64::MAX as u64) as i64)));
    push(attr::BODY_TRUNCATED, Some(AnyValue { value: Some(any_value::Value::BoolValue(r.body_truncated)) }));
    if !r.headers.is_empty() {
        push(attr::HEADERS, Some(string(texts.json(&r.headers))));
    }
    if !r.redaction.kinds.is_empty() {
        push(attr::REDACTION_KINDS, Some(string(serde_json::to_string(&r.redaction.kinds).unwrap_or_default())));
    }
    push(attr::REDACTION_PAYLOAD_DROPPED, r.redaction.payload_dropped.as_deref().map(string));
    if let Some(e) = &r.error {
        push(attr::ERROR_TYPE, Some(string(e.kind.clone())));
        push(attr::RPC_RESPONSE_STATUS_CODE, e.code.map(|c| string(c.to_string())));
        push(attr::ERROR_MESSAGE, e.message.as_deref().map(string));
    }
    if let Some(g) = &r.governance {
        if let Some(d) = &g.decision {
            push(attr::POLICY_CONTROL, Some(string(d.control.clone())));
            push(attr::POLICY_NAME, d.policy.as_deref().map(string));
            push(attr::POLICY_RULE, d.rule.as_deref().map(string));
            push(attr::POLICY_MODE, Some(string(d.mode.clone())));
            push(attr::POLICY_ENFORCED, Some(AnyValue { value: Some(any_value::Value::BoolValue(d.enforced)) }));
            push(attr::POLICY_ACTION, Some(string(d.action.clone())));
            push(attr::POLICY_REASON, Some(string(d.reason.clone())));
        }
        if let Some(c) = &g.tool_change {
            push(attr::TOOL_CHANGE, Some(string(c.change.clone())));
            push(attr::TOOL_APPROVED_HASH, c.approved_hash.as_deref().map(string));
            push(attr::TOOL_PREVIOUS_HASH, c.previous_hash.as_deref().map(string));
            push(attr::TOOL_HASH, c.hash.as_deref().map(string));
            if !c.changed_fields.is_empty() {
                push(attr::TOOL_CHANGED_FIELDS, Some(string(c.changed_fields.join(","))));
            }
            push(attr::TOOL_POLICY, Some(string(c.policy.clone())));
        }
        if !g.tools.is_empty() {
            push(attr::TOOLS, Some(string(serde_json::to_string(&g.tools).unwrap_or_default())));
        }
    }
    proto::LogRecord {
        time_unix_nano: nanos(r.timestamp),
        observed_time_unix_nano: nanos(r.observed_timestamp),
        severity_number: r.level.severity_number(),
        severity_text: r.level.as_str().to_owned(),
        // A body is the JSON text the tree writer made (checked in debug builds), within the
        // parser's nesting limit.
        body: r.body.as_ref().and_then(|b| Node::parse(b.get().as_bytes()).ok()).map(|n| any_value(&n)),
        attributes: a,
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: r.correlation_id.bytes().to_vec(),
        span_id: r.span_id.bytes().to_vec(),
        event_name: r.event_type.as_str().to_owned(),
    }
}

/// The export request for a batch.
pub fn encode_request(batch: &[AuditRecord], resource: &[KeyValue]) -> proto::ExportLogsServiceRequest {
    proto::ExportLogsServiceRequest {
        resource_logs: vec![proto::ResourceLogs {
            resource: Some(proto::Resource { attributes: resource.to_vec(), dropped_attributes_count: 0 }),
            scope_logs: vec![proto::ScopeLogs {
                scope: Some(proto::InstrumentationScope {
                    name: "mcp-ledger-agent".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                log_records: {
                    let mut texts = HeaderTexts::default();
                    batch.iter().map(|r| log_record_with(r, &mut texts)).collect()
                },
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &AnyValue) -> Vec<(String, Option<String>)> {
        let Some(any_value::Value::KvlistValue(list)) = &v.value else { panic!("{v:?}") };
        list.values
            .iter()
            .map(|kv| {
                let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                };
                (kv.key.clone(), text)
            })
            .collect()
    }

    /// The headers attribute of each record of a batch is its headers' serde JSON, for
    /// records that share sets, with and without a traceparent beside them.
    #[test]
    fn each_record_of_a_batch_carries_its_own_headers() {
        use mcp_ledger_crds::record::{HeaderSet, Headers};
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "timestamp": "2026-11-24T10:00:00Z", "observedTimestamp": "2026-11-24T10:00:00Z",
            "level": "INFO", "eventType": "mcp-request", "identitySource": "unverified",
            "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
            "requestId": {"unique": "0193a0c4-0000-7000-8000-000000000000"},
            "direction": "client-to-server", "transport": "streamable-http",
            "server": {"name": "s"}, "bodyBytes": 0, "redaction": {}
        }))
        .unwrap();
        let a = HeaderSet::new([("accept".into(), "*/*".into()), ("x-z".into(), "\"z\"".into())].into());
        let b = HeaderSet::new([("content-type".into(), "application/json".into())].into());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let batch: Vec<AuditRecord> = [
            Headers::with_traceparent(a.clone(), tp),
            Headers::from(b.clone()),
            Headers::with_traceparent(a.clone(), tp),
            Headers::from(a),
            Headers::from(b),
            Headers::default(),
        ]
        .into_iter()
        .map(|headers| AuditRecord { headers, ..record.clone() })
        .collect();
        let request = encode_request(&batch, &[]);
        let logs = &request.resource_logs[0].scope_logs[0].log_records;
        for (r, log) in batch.iter().zip(logs) {
            let attribute = log.attributes.iter().find(|kv| kv.key == attr::HEADERS);
            let text = attribute.and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            });
            let expected = (!r.headers.is_empty()).then(|| serde_json::to_string(&r.headers).unwrap());
            assert_eq!(text, expected.as_deref(), "{:?}", r.headers);
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_copy_in_small_and_large_objects() {
        let small = Node::parse(br#"{"a":"1","b":"2","a":"3"}"#).unwrap();
        assert_eq!(keys(&any_value(&small)), [("b".into(), Some("2".into())), ("a".into(), Some("3".into()))]);
        let members: Vec<String> = (0..40).map(|i| format!(r#""k{}":"{i}""#, i % 20)).collect();
        let text = format!("{{{}}}", members.join(","));
        let large = keys(&any_value(&Node::parse(text.as_bytes()).unwrap()));
        let expected: Vec<(String, Option<String>)> =
            (20..40).map(|i| (format!("k{}", i % 20), Some(i.to_string()))).collect();
        assert_eq!(large, expected);
    }
}
