//! The admission decisions, as pure functions from an AdmissionReview request (plus what
//! the operator knows from its caches) to a response: a JSON patch, a refusal that says
//! what to fix, or an allowance with warnings. The HTTPS server in [`crate::webhook`] only
//! parses, looks things up, calls these and writes.

use json_patch::Patch;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Selector};
use mcp_ledger_agent::redact::Redactor;
use mcp_ledger_crds::access::SubjectKind;
use mcp_ledger_crds::{McpAccessPolicySpec, McpRedactionPolicySpec, McpServer, McpServerReview};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::inject::{self, InjectSettings, Outcome};
use crate::names;

/// Paths the webhook serves, one per webhook the chart registers.
pub mod path {
    /// Mutating: McpServer CREATE/UPDATE/DELETE (records who added and removed it).
    pub const SERVERS: &str = "/mutate/mcpservers";
    /// Mutating: McpServerReview CREATE/UPDATE (records the reviewer).
    pub const REVIEWS: &str = "/mutate/mcpserverreviews";
    /// Validating: McpRedactionPolicy CREATE/UPDATE.
    pub const REDACTION_POLICIES: &str = "/validate/mcpredactionpolicies";
    /// Validating: McpAccessPolicy CREATE/UPDATE.
    pub const ACCESS_POLICIES: &str = "/validate/mcpaccesspolicies";
    /// Mutating: Pod CREATE in namespaces labelled for injection.
    pub const PODS: &str = "/mutate/pods";
}

/// Something the webhook server must do besides answering: an Event on an McpServer, or
/// recording who deleted one.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An Event on the McpServer `namespace/server`.
    Event {
        /// Namespace of the server.
        namespace: String,
        /// Name of the server.
        server: String,
        /// `Normal` or `Warning`.
        warning: bool,
        /// CamelCase reason.
        reason: &'static str,
        /// What happened and what to do.
        message: String,
    },
    /// Annotate McpServer `namespace/server` with the user that is deleting it.
    RecordRemoval {
        /// Namespace of the server.
        namespace: String,
        /// Name of the server.
        server: String,
        /// Who deletes it.
        user: String,
    },
}

/// The answer to one review, with its outcome label for metrics and what else to do.
#[derive(Debug)]
pub struct Decision {
    /// The response to send back (inside an AdmissionReview).
    pub response: AdmissionResponse,
    /// Bounded label: `allowed`, `patched`, `denied`, `invalid`.
    pub outcome: &'static str,
    /// Side effects for the server to carry out.
    pub effects: Vec<Effect>,
}

impl Decision {
    fn allow(req: &AdmissionRequest<DynamicObject>) -> Self {
        Self { response: AdmissionResponse::from(req), outcome: "allowed", effects: Vec::new() }
    }

    fn deny(req: &AdmissionRequest<DynamicObject>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut response = AdmissionResponse::from(req).deny(&message);
        response.result.reason = "Invalid".to_owned();
        response.result.code = 422;
        Self { response, outcome: "denied", effects: Vec::new() }
    }

    fn invalid(req: &AdmissionRequest<DynamicObject>, message: impl Into<String>) -> Self {
        let mut response = AdmissionResponse::from(req).deny(message.into());
        response.result.reason = "BadRequest".to_owned();
        response.result.code = 400;
        Self { response, outcome: "invalid", effects: Vec::new() }
    }

    fn patch(req: &AdmissionRequest<DynamicObject>, before: &Value, after: &Value) -> Self {
        let patch: Patch = json_patch::diff(before, after);
        if patch.0.is_empty() {
            return Self::allow(req);
        }
        match AdmissionResponse::from(req).with_patch(patch) {
            Ok(response) => Self { response, outcome: "patched", effects: Vec::new() },
            Err(e) => Self::invalid(req, format!("could not serialize the patch: {e}")),
        }
    }

    fn warn(mut self, warnings: Vec<String>) -> Self {
        if !warnings.is_empty() {
            self.response.warnings = Some(warnings);
        }
        self
    }
}

/// Parses an AdmissionReview body. `Err` holds the message for a body that is not one
/// (the server answers 400: without a request uid there is nothing to answer to).
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not an AdmissionReview: {e}"))?;
    if review.types.api_version != "admission.k8s.io/v1" {
        return Err(format!(
            "AdmissionReview apiVersion '{}' is not supported: register the webhook with admissionReviewVersions [v1]",
            review.types.api_version
        ));
    }
    review.try_into().map_err(|_| "the AdmissionReview has no request".to_owned())
}

/// Serializes a response inside an AdmissionReview v1. The patch goes out as a base64
/// string, the encoding of Go's `[]byte` that the API server documents (kube-core writes
/// it as an array of numbers).
pub fn review_body(response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review()).expect("an AdmissionReview serializes");
    if let Some(bytes) = patch {
        review["response"]["patch"] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&review).expect("JSON values serialize")
}

fn typed<T: DeserializeOwned>(object: &Option<DynamicObject>) -> Result<(T, Value), String> {
    let value = serde_json::to_value(object.as_ref().ok_or("the request has no object")?)
        .map_err(|e| format!("the object does not serialize: {e}"))?;
    let typed = serde_json::from_value(value.clone()).map_err(|e| format!("the object does not parse: {e}"))?;
    Ok((typed, value))
}

fn annotation<'a>(object: &'a Option<DynamicObject>, key: &str) -> Option<&'a str> {
    object.as_ref()?.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_annotation(value: &mut Value, key: &str, text: &str) {
    let metadata = value
        .as_object_mut()
        .expect("objects are maps")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let annotations = metadata
        .as_object_mut()
        .expect("metadata is a map")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    annotations.as_object_mut().expect("set above").insert(key.to_owned(), Value::String(text.to_owned()));
}

fn remove_annotation(value: &mut Value, key: &str) {
    if let Some(a) = value.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(key);
    }
}

/// Refuses an UPDATE that changes or removes one of `keys`, unless made by `operator`.
fn guard_annotations(req: &AdmissionRequest<DynamicObject>, keys: &[&str], operator: &str) -> Option<Decision> {
    if req.operation != Operation::Update || req.user_info.username.as_deref() == Some(operator) {
        return None;
    }
    for key in keys {
        let (old, new) = (annotation(&req.old_object, key), annotation(&req.object, key));
        if old != new {
            return Some(Decision::deny(
                req,
                format!(
                    "metadata.annotations['{key}'] is recorded by mcp-ledger and cannot be set, changed or removed \
                     (was {}, now {}): leave it out of your manifests",
                    old.map(|v| format!("'{v}'")).unwrap_or_else(|| "unset".into()),
                    new.map(|v| format!("'{v}'")).unwrap_or_else(|| "unset".into()),
                ),
            ));
        }
    }
    None
}

fn username(req: &AdmissionRequest<DynamicObject>) -> String {
    req.user_info.username.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "unknown".to_owned())
}

/// McpServer CREATE/UPDATE/DELETE. `redaction_policies` are the names of the
/// McpRedactionPolicies in the request's namespace; `operator` is the operator's own user.
pub fn admit_server(req: &AdmissionRequest<DynamicObject>, redaction_policies: &[String], operator: &str) -> Decision {
    if req.operation == Operation::Delete {
        let mut d = Decision::allow(req);
        // A collection delete (a namespace being deleted, `kubectl delete mcps --all`) is
        // reviewed once, without a name: there is no one object to mark, so the history
        // says `unknown` for who removed each server.
        if !req.dry_run && !req.name.is_empty() {
            d.effects.push(Effect::RecordRemoval {
                namespace: req.namespace.clone().unwrap_or_default(),
                server: req.name.clone(),
                user: username(req),
            });
        }
        return d;
    }
    if let Some(refusal) = guard_annotations(req, &[names::ADDED_BY, names::REMOVED_BY], operator) {
        return refusal;
    }
    let (server, mut value): (McpServer, Value) = match typed(&req.object) {
        Ok(v) => v,
        Err(e) => return Decision::invalid(req, format!("McpServer: {e}")),
    };
    // Only a new spec is checked: metadata-only updates (finalizers, annotations, a
    // deletion in progress) must never be blocked by, say, a policy deleted since.
    let old_spec = req.old_object.as_ref().map(|o| &o.data["spec"]);
    if req.operation == Operation::Update
        && (old_spec == Some(&value["spec"]) || server.metadata.deletion_timestamp.is_some())
    {
        return Decision::allow(req);
    }
    let id = format!("{}/{}", req.namespace.as_deref().unwrap_or_default(), req.name);
    let mut problems = Vec::new();
    match Selector::try_from(server.spec.selector.clone()) {
        Ok(s) if s.selects_all() => problems.push(
            "spec.selector selects every pod of the namespace: select on at least one label (matchLabels or matchExpressions)"
                .to_owned(),
        ),
        Ok(_) => {}
        Err(e) => problems.push(format!("spec.selector is not a valid label selector: {e}")),
    }
    for (i, expr) in server.spec.selector.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.as_ref().map_or(0, Vec::len);
        let problem = match (expr.operator.as_str(), values) {
            ("In" | "NotIn", 0) => Some("needs at least one value"),
            ("Exists" | "DoesNotExist", n) if n > 0 => Some("must not list values"),
            ("In" | "NotIn" | "Exists" | "DoesNotExist", _) => None,
            _ => Some("has an unknown operator: use In, NotIn, Exists or DoesNotExist"),
        };
        if let Some(problem) = problem {
            problems.push(format!(
                "spec.selector is not a valid label selector: matchExpressions[{i}] (key '{}', operator {}) {problem}",
                expr.key, expr.operator
            ));
        }
    }
    if let Some(reference) = &server.spec.redaction_policy_ref
        && !redaction_policies.contains(&reference.name)
    {
        problems.push(format!(
            "spec.redactionPolicyRef names McpRedactionPolicy '{}', which does not exist in namespace {}: create it \
             first or remove the reference (the cluster default applies either way)",
            reference.name,
            req.namespace.as_deref().unwrap_or_default()
        ));
    }
    if !problems.is_empty() {
        return Decision::deny(req, format!("McpServer {id}: {}", problems.join("; ")));
    }
    if req.operation == Operation::Create {
        let before = value.clone();
        set_annotation(&mut value, names::ADDED_BY, &username(req));
        remove_annotation(&mut value, names::REMOVED_BY);
        return Decision::patch(req, &before, &value);
    }
    Decision::allow(req)
}

/// McpServerReview CREATE/UPDATE: records the reviewer, refuses what is not a decision.
pub fn admit_review(req: &AdmissionRequest<DynamicObject>, operator: &str) -> Decision {
    if let Some(refusal) = guard_annotations(req, &[names::REVIEWED_BY], operator) {
        return refusal;
    }
    let (review, mut value): (McpServerReview, Value) = match typed(&req.object) {
        Ok(v) => v,
        Err(e) => {
            return Decision::deny(
                req,
                format!(
                    "McpServerReview {}: {e}; a review is a decision: spec.decision Approve or Reject, spec.serverRef.name, and spec.reason for Reject",
                    req.name
                ),
            );
        }
    };
    if review.spec.decision == mcp_ledger_crds::review::Decision::Reject
        && review.spec.reason.as_deref().is_none_or(|r| r.trim().is_empty())
    {
        return Decision::deny(
            req,
            format!("McpServerReview {}: spec.reason is required when spec.decision is Reject: say why", req.name),
        );
    }
    if req.operation == Operation::Create {
        let before = value.clone();
        set_annotation(&mut value, names::REVIEWED_BY, &username(req));
        return Decision::patch(req, &before, &value);
    }
    Decision::allow(req)
}

/// McpRedactionPolicy CREATE/UPDATE: refuses a policy that does not compile, naming the rule.
pub fn admit_redaction_policy(req: &AdmissionRequest<DynamicObject>) -> Decision {
    let spec =
        match req.object.as_ref().map(|o| serde_json::from_value::<McpRedactionPolicySpec>(o.data["spec"].clone())) {
            Some(Ok(spec)) => spec,
            Some(Err(e)) => {
                return Decision::deny(req, format!("McpRedactionPolicy {}: spec does not parse: {e}", req.name));
            }
            None => return Decision::invalid(req, "the request has no object"),
        };
    // The HMAC key lives in a Secret the operator does not read: compile with a stand-in.
    match Redactor::compile(&spec, Some(vec![0; 32])) {
        Ok(_) => Decision::allow(req),
        Err(e) => Decision::deny(req, format!("McpRedactionPolicy {}: {}", req.name, e.0.join("; "))),
    }
}

/// Problems of an access policy that the schema cannot see.
pub fn check_access_policy(spec: &McpAccessPolicySpec) -> Vec<String> {
    let glob_ok = |g: &str| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric() || "-_.*/:".contains(c));
    let mut problems = Vec::new();
    for (i, g) in spec.servers.iter().enumerate() {
        if !glob_ok(g) {
            problems.push(format!("servers[{i}] '{g}': use a name or a glob with '*' (letters, digits, - _ . / :)"));
        }
    }
    for rule in &spec.rules {
        for (i, g) in rule.servers.iter().enumerate() {
            if !glob_ok(g) {
                problems.push(format!("rule '{}': servers[{i}] '{g}' is not a name or glob", rule.name));
            }
        }
        for (i, g) in rule.tools.iter().enumerate() {
            if !glob_ok(g) {
                problems.push(format!("rule '{}': tools[{i}] '{g}' is not a tool name or glob", rule.name));
            }
        }
        for (i, s) in rule.subjects.iter().enumerate() {
            match s.kind {
                SubjectKind::ServiceAccount
                    if s.name != "*" && s.name.split('/').filter(|p| !p.is_empty()).count() != 2 =>
                {
                    problems.push(format!(
                        "rule '{}': subjects[{i}] ServiceAccount '{}' must be namespace/name (or *)",
                        rule.name, s.name
                    ))
                }
                SubjectKind::Claim if s.claim.as_deref().is_none_or(str::is_empty) => problems.push(format!(
                    "rule '{}': subjects[{i}] of kind Claim needs `claim`, the JWT claim name",
                    rule.name
                )),
                _ => {}
            }
        }
    }
    problems
}

/// McpAccessPolicy CREATE/UPDATE: refuses a policy with rules that cannot match.
pub fn admit_access_policy(req: &AdmissionRequest<DynamicObject>) -> Decision {
    let spec = match req.object.as_ref().map(|o| serde_json::from_value::<McpAccessPolicySpec>(o.data["spec"].clone()))
    {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Decision::deny(req, format!("McpAccessPolicy {}: spec does not parse: {e}", req.name)),
        None => return Decision::invalid(req, "the request has no object"),
    };
    let problems = check_access_policy(&spec);
    if problems.is_empty() {
        Decision::allow(req)
    } else {
        Decision::deny(req, format!("McpAccessPolicy {}: {}", req.name, problems.join("; ")))
    }
}

/// Pod CREATE: injects the agent (see [`inject::decide`]). `servers` are the McpServers of
/// the pod's namespace. A pod the agent cannot be added to is still admitted.
pub fn admit_pod(
    req: &AdmissionRequest<DynamicObject>,
    servers: &[McpServer],
    settings: &InjectSettings,
    hash_key: &dyn Fn(&McpServer) -> Option<mcp_ledger_crds::common::SecretKeyRef>,
) -> (Decision, Option<inject::Skip>) {
    if req.operation != Operation::Create {
        return (Decision::allow(req), None);
    }
    let (pod, before): (k8s_openapi::api::core::v1::Pod, Value) = match typed(&req.object) {
        Ok(v) => v,
        Err(e) => return (Decision::invalid(req, format!("Pod: {e}")), None),
    };
    let namespace = req.namespace.clone().unwrap_or_default();
    match inject::decide_with_key(&pod, servers, settings, hash_key) {
        Outcome::Skip(skip) => (Decision::allow(req), Some(skip)),
        Outcome::Refuse(message) => (Decision::deny(req, message), None),
        Outcome::NotInjected { server, message } => {
            let mut d = Decision::allow(req).warn(vec![message.clone()]);
            d.outcome = "not_injected";
            let servers_named: Vec<String> = if server.is_empty() {
                inject::matching_servers(&pod, servers).iter().map(|s| kube::ResourceExt::name_any(*s)).collect()
            } else {
                vec![server]
            };
            for server in servers_named {
                d.effects.push(Effect::Event {
                    namespace: namespace.clone(),
                    server,
                    warning: true,
                    reason: "InjectionSkipped",
                    message: message.clone(),
                });
            }
            (d, None)
        }
        Outcome::Inject { pod: injected, server, warnings } => {
            let mut after = match serde_json::to_value(&*injected) {
                Ok(v) => v,
                Err(e) => return (Decision::invalid(req, format!("Pod: {e}")), None),
            };
            // Keep fields the typed Pod does not know about (newer API fields) as they were.
            merge_unknown(&before, &mut after);
            let mut d = Decision::patch(req, &before, &after).warn(warnings.clone());
            d.outcome = "injected";
            for message in warnings {
                d.effects.push(Effect::Event {
                    namespace: namespace.clone(),
                    server: server.clone(),
                    warning: true,
                    reason: "PortByNumber",
                    message,
                });
            }
            (d, None)
        }
    }
}

/// Copies keys of `before` that `after` lacks (recursively through objects), so that a
/// round trip through the typed Pod never drops fields it does not model.
fn merge_unknown(before: &Value, after: &mut Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge_unknown(v, existing),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // Injection only appends to lists, so the original elements keep their positions.
        (Value::Array(b), Value::Array(a)) => {
            for (v, existing) in b.iter().zip(a.iter_mut()) {
                merge_unknown(v, existing);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
