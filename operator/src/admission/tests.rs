use serde_json::{Value, json};

use super::*;
use crate::inject::tests::{pod, server};

const OPERATOR: &str = "system:serviceaccount:mcp-ledger:mcp-ledger-operator";

/// An AdmissionReview v1 as the API server sends it.
pub(crate) fn review_json(
    kind: (&str, &str, &str),
    operation: &str,
    user: &str,
    object: Option<Value>,
    old: Option<Value>,
) -> Vec<u8> {
    let (group, kind, resource) = kind;
    let name = object.as_ref().or(old.as_ref()).and_then(|o| o["metadata"]["name"].as_str()).unwrap_or("");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": name,
            "namespace": "tools",
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .unwrap()
}

pub(crate) const SERVER: (&str, &str, &str) = ("mcpledger.dev", "McpServer", "mcpservers");
const REVIEW: (&str, &str, &str) = ("mcpledger.dev", "McpServerReview", "mcpserverreviews");
const REDACTION: (&str, &str, &str) = ("mcpledger.dev", "McpRedactionPolicy", "mcpredactionpolicies");
const ACCESS: (&str, &str, &str) = ("mcpledger.dev", "McpAccessPolicy", "mcpaccesspolicies");
pub(crate) const POD: (&str, &str, &str) = ("", "Pod", "pods");

fn server_json(annotations: Value) -> Value {
    let mut v = serde_json::to_value(server("github", json!("mcp"))).unwrap();
    v["metadata"]["annotations"] = annotations;
    v
}

/// Applies the response's JSON patch to `object`, as the API server does.
pub(crate) fn apply(response: &AdmissionResponse, object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(bytes) = &response.patch {
        let patch: json_patch::Patch = serde_json::from_slice(bytes).expect("the patch is a JSON patch");
        json_patch::patch(&mut out, &patch).expect("the patch applies");
    }
    out
}

#[test]
fn creating_a_server_records_the_requesting_user_and_overwrites_a_forged_one() {
    let object = server_json(json!({names::ADDED_BY: "someone-else", names::REMOVED_BY: "x", "team": "platform"}));
    let req = parse_review(&review_json(SERVER, "CREATE", "alice@example.com", Some(object.clone()), None)).unwrap();
    let d = admit_server(&req, &[], OPERATOR);
    assert!(d.response.allowed);
    assert_eq!(d.outcome, "patched");
    let patched = apply(&d.response, &object);
    assert_eq!(patched["metadata"]["annotations"][names::ADDED_BY], "alice@example.com");
    assert!(patched["metadata"]["annotations"].get(names::REMOVED_BY).is_none());
    assert_eq!(patched["metadata"]["annotations"]["team"], "platform");

    let bare = serde_json::to_value(server("github", json!("mcp"))).unwrap();
    let req = parse_review(&review_json(SERVER, "CREATE", "bob", Some(bare.clone()), None)).unwrap();
    let patched = apply(&admit_server(&req, &[], OPERATOR).response, &bare);
    assert_eq!(patched["metadata"]["annotations"][names::ADDED_BY], "bob");
}

#[test]
fn users_cannot_change_or_remove_the_recorded_creator() {
    let old = server_json(json!({names::ADDED_BY: "alice"}));
    for new in [server_json(json!({names::ADDED_BY: "mallory"})), server_json(json!({}))] {
        let req = parse_review(&review_json(SERVER, "UPDATE", "mallory", Some(new), Some(old.clone()))).unwrap();
        let d = admit_server(&req, &[], OPERATOR);
        assert!(!d.response.allowed);
        assert!(
            d.response.result.message.starts_with(
                "metadata.annotations['mcpledger.dev/added-by'] is recorded by mcp-ledger and cannot be set, changed or removed (was 'alice'"
            ),
            "{}",
            d.response.result.message
        );
    }
    // Other edits pass.
    let mut new = old.clone();
    new["spec"]["description"] = json!("GitHub tools");
    let req = parse_review(&review_json(SERVER, "UPDATE", "alice", Some(new), Some(old))).unwrap();
    assert!(admit_server(&req, &[], OPERATOR).response.allowed);
}

#[test]
fn a_missing_redaction_policy_is_refused_with_what_to_do() {
    let mut object = server_json(json!({}));
    object["spec"]["redactionPolicyRef"] = json!({"name": "strict"});
    let req = parse_review(&review_json(SERVER, "CREATE", "alice", Some(object), None)).unwrap();
    let d = admit_server(&req, &["other".into()], OPERATOR);
    assert!(!d.response.allowed);
    assert_eq!(d.response.result.code, 422);
    assert_eq!(
        d.response.result.message,
        "McpServer tools/github: spec.redactionPolicyRef names McpRedactionPolicy 'strict', which does not exist in \
         namespace tools: create it first or remove the reference (the cluster default applies either way)"
    );
    assert!(admit_server(&req, &["strict".into()], OPERATOR).response.allowed);
}

#[test]
fn an_invalid_selector_is_refused() {
    let mut object = server_json(json!({}));
    object["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]});
    let req = parse_review(&review_json(SERVER, "CREATE", "alice", Some(object), None)).unwrap();
    let d = admit_server(&req, &[], OPERATOR);
    assert!(!d.response.allowed);
    assert!(
        d.response.result.message.contains("spec.selector is not a valid label selector"),
        "{}",
        d.response.result.message
    );
}

#[test]
fn deleting_a_server_asks_to_record_who_did_it() {
    let old = server_json(json!({names::ADDED_BY: "alice"}));
    let req = parse_review(&review_json(SERVER, "DELETE", "carol", None, Some(old))).unwrap();
    let d = admit_server(&req, &[], OPERATOR);
    assert!(d.response.allowed);
    assert_eq!(
        d.effects,
        [Effect::RecordRemoval { namespace: "tools".into(), server: "github".into(), user: "carol".into() }]
    );
}

#[test]
fn a_collection_delete_is_admitted_without_marking_an_object() {
    // What the API server sends for a namespace's deletion: one review, no name, no object.
    let mut review: Value = serde_json::from_slice(&review_json(
        SERVER,
        "DELETE",
        "system:serviceaccount:kube-system:namespace-controller",
        None,
        None,
    ))
    .unwrap();
    assert_eq!(review["request"]["name"], "");
    review["request"]["options"] =
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"});
    let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
    let d = admit_server(&req, &[], OPERATOR);
    assert!(d.response.allowed);
    assert!(d.effects.is_empty(), "{:?}", d.effects);
}

#[test]
fn a_review_records_the_reviewer_and_a_rejection_needs_a_reason() {
    let object = json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServerReview",
        "metadata": {"name": "r1", "namespace": "tools", "annotations": {names::REVIEWED_BY: "forged"}},
        "spec": {"serverRef": {"name": "github"}, "decision": "Approve", "notes": "scopes checked"}
    });
    let req = parse_review(&review_json(REVIEW, "CREATE", "security@example.com", Some(object.clone()), None)).unwrap();
    let patched = apply(&admit_review(&req, OPERATOR).response, &object);
    assert_eq!(patched["metadata"]["annotations"][names::REVIEWED_BY], "security@example.com");

    let mut reject = object.clone();
    reject["spec"]["decision"] = json!("Reject");
    let req = parse_review(&review_json(REVIEW, "CREATE", "security", Some(reject), None)).unwrap();
    let d = admit_review(&req, OPERATOR);
    assert!(!d.response.allowed);
    assert!(d.response.result.message.contains("spec.reason is required"), "{}", d.response.result.message);

    let mut maybe = object;
    maybe["spec"]["decision"] = json!("Maybe");
    let req = parse_review(&review_json(REVIEW, "CREATE", "security", Some(maybe), None)).unwrap();
    let d = admit_review(&req, OPERATOR);
    assert!(!d.response.allowed);
    assert!(d.response.result.message.contains("a review is a decision"), "{}", d.response.result.message);
}

#[test]
fn a_redaction_policy_that_does_not_compile_is_refused_naming_the_rule() {
    let object = json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpRedactionPolicy",
        "metadata": {"name": "strict", "namespace": "tools"},
        "spec": {"customPatterns": [{"name": "ticket", "regex": "TCK-(["}],
                 "detectors": [{"name": "no-such-detector", "enabled": true}]}
    });
    let req = parse_review(&review_json(REDACTION, "CREATE", "alice", Some(object.clone()), None)).unwrap();
    let d = admit_redaction_policy(&req);
    assert!(!d.response.allowed);
    let message = &d.response.result.message;
    assert!(message.starts_with("McpRedactionPolicy strict: "), "{message}");
    assert!(message.contains("'ticket'") || message.contains("ticket"), "{message}");
    assert!(message.contains("no-such-detector"), "{message}");

    let mut fine = object;
    fine["spec"] = json!({"customPatterns": [{"name": "ticket", "regex": "TCK-[0-9]{6}"}], "defaultAction": "hash",
                          "hashKeySecretRef": {"name": "hmac", "key": "key"}});
    let req = parse_review(&review_json(REDACTION, "UPDATE", "alice", Some(fine.clone()), Some(fine))).unwrap();
    assert!(admit_redaction_policy(&req).response.allowed);
}

#[test]
fn an_access_policy_with_rules_that_cannot_match_is_refused() {
    let object = json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpAccessPolicy",
        "metadata": {"name": "who", "namespace": "tools"},
        "spec": {"rules": [{"name": "ci", "effect": "Allow",
                            "subjects": [{"kind": "ServiceAccount", "name": "ci-bot"}],
                            "tools": ["create issue"]}]}
    });
    let req = parse_review(&review_json(ACCESS, "CREATE", "alice", Some(object), None)).unwrap();
    let d = admit_access_policy(&req);
    assert!(!d.response.allowed);
    assert_eq!(
        d.response.result.message,
        "McpAccessPolicy who: rule 'ci': tools[0] 'create issue' is not a tool name or glob; rule 'ci': subjects[0] \
         ServiceAccount 'ci-bot' must be namespace/name (or *)"
    );
}

#[test]
fn a_pod_patch_applied_by_the_api_server_yields_the_injected_pod() {
    let mut original = serde_json::to_value(pod("github")).unwrap();
    // A field this Rust type does not model survives the round trip.
    original["spec"]["containers"][0]["futureField"] = json!({"kept": true});
    let req = parse_review(&review_json(
        POD,
        "CREATE",
        "system:serviceaccount:kube-system:replicaset-controller",
        Some(original.clone()),
        None,
    ))
    .unwrap();
    let (d, skip) = admit_pod(&req, &[server("github", json!("mcp"))], &InjectSettings::default(), &|_| None);
    assert_eq!((d.outcome, skip), ("injected", None));
    let patched = apply(&d.response, &original);
    assert_eq!(patched["spec"]["containers"][0]["futureField"]["kept"], true);
    assert_eq!(patched["spec"]["containers"][0]["ports"][0]["name"], "mcpl-app");
    assert_eq!(patched["spec"]["initContainers"][0]["name"], names::AGENT_CONTAINER);
    assert_eq!(patched["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(patched["metadata"]["annotations"][names::INJECTED_ANNOTATION], "true");
    let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(patched).unwrap();
    assert!(inject::is_injected(&typed));
}

#[test]
fn a_pod_without_the_port_is_admitted_unchanged_with_a_warning_and_an_event() {
    let original = serde_json::to_value(pod("github")).unwrap();
    let req = parse_review(&review_json(POD, "CREATE", "rs-controller", Some(original), None)).unwrap();
    let (d, _) = admit_pod(&req, &[server("github", json!("http"))], &InjectSettings::default(), &|_| None);
    assert!(d.response.allowed);
    assert!(d.response.patch.is_none());
    assert_eq!(d.outcome, "not_injected");
    assert!(d.response.warnings.as_ref().unwrap()[0].contains("matches no container port"));
    assert!(
        matches!(&d.effects[..], [Effect::Event { reason: "InjectionSkipped", warning: true, server, .. }] if server == "github")
    );
}

#[test]
fn malformed_reviews_are_refused_with_a_reason() {
    assert!(parse_review(b"{not json").unwrap_err().starts_with("the body is not an AdmissionReview"));
    let v1beta1 = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":null}"#;
    assert!(parse_review(v1beta1).unwrap_err().contains("admissionReviewVersions [v1]"));
    let empty = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
    assert_eq!(parse_review(empty).unwrap_err(), "the AdmissionReview has no request");
    // A pod object that is not a pod is answered (with the request's uid), not dropped.
    let req =
        parse_review(&review_json(POD, "CREATE", "u", Some(json!({"spec": {"containers": "nope"}})), None)).unwrap();
    let (d, _) = admit_pod(&req, &[], &InjectSettings::default(), &|_| None);
    assert!(!d.response.allowed);
    assert_eq!(d.response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(d.outcome, "invalid");
    let body: Value = serde_json::from_slice(&review_body(d.response)).unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["response"]["allowed"], false);
}

#[test]
fn metadata_only_updates_pass_even_when_a_referenced_policy_is_gone() {
    let mut old = server_json(json!({names::ADDED_BY: "alice"}));
    old["spec"]["redactionPolicyRef"] = json!({"name": "deleted-since"});
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([names::FINALIZER]);
    let req = parse_review(&review_json(SERVER, "UPDATE", OPERATOR, Some(new.clone()), Some(old.clone()))).unwrap();
    assert!(admit_server(&req, &[], OPERATOR).response.allowed, "adding the finalizer is not blocked");
    new["metadata"]["deletionTimestamp"] = json!("2026-11-24T12:00:00Z");
    new["metadata"]["finalizers"] = json!([]);
    let req = parse_review(&review_json(SERVER, "UPDATE", OPERATOR, Some(new), Some(old.clone()))).unwrap();
    assert!(admit_server(&req, &[], OPERATOR).response.allowed, "removing it during deletion is not blocked");
    // A spec change is checked again.
    let mut edited = old.clone();
    edited["spec"]["description"] = json!("now with a description");
    let req = parse_review(&review_json(SERVER, "UPDATE", "alice", Some(edited), Some(old))).unwrap();
    assert!(!admit_server(&req, &[], OPERATOR).response.allowed);
}
