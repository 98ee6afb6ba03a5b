//! The inventory API's backend on a real cluster: TokenReview, SubjectAccessReview, the
//! McpServer cache, the history ConfigMap, and conditional status writes for usage.

use futures::FutureExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::usage::UsageReport;
use serde_json::json;

use super::{Backend, Identity};
use crate::cache::Caches;
use crate::inventory::{self, RemovalRecord};
use crate::names;

/// The backend that asks the API server.
pub struct KubeBackend {
    /// The client (the operator's service account).
    pub client: Client,
    /// The McpServer cache.
    pub caches: Caches,
    /// The operator's namespace (where the history lives).
    pub namespace: String,
}

impl Backend for KubeBackend {
    fn authenticate(&self, token: String) -> BoxFuture<'static, Result<Option<Identity>, String>> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        async move {
            let review =
                TokenReview { spec: TokenReviewSpec { token: Some(token), audiences: None }, ..Default::default() };
            let answer = api.create(&PostParams::default(), &review).await.map_err(|e| e.to_string())?;
            let status = answer.status.unwrap_or_default();
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let user = status.user.unwrap_or_default();
            Ok(user.username.map(|username| Identity {
                username,
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
                uid: user.uid,
            }))
        }
        .boxed()
    }

    fn may_list(&self, who: Identity, namespace: Option<String>) -> BoxFuture<'static, Result<bool, String>> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(who.username),
                    groups: Some(who.groups),
                    extra: Some(who.extra),
                    uid: who.uid,
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(mcp_ledger_crds::GROUP.to_owned()),
                        resource: Some("mcpservers".to_owned()),
                        verb: Some("list".to_owned()),
                        namespace,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await.map_err(|e| e.to_string())?;
            Ok(answer.status.is_some_and(|s| s.allowed))
        }
        .boxed()
    }

    fn servers(&self, namespace: Option<&str>) -> Vec<McpServer> {
        self.caches
            .servers
            .state()
            .iter()
            .filter(|s| namespace.is_none_or(|n| s.namespace().as_deref() == Some(n)))
            .map(|s| s.as_ref().clone())
            .collect()
    }

    fn history(&self) -> BoxFuture<'static, Result<Vec<RemovalRecord>, String>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        async move {
            let cm = api.get_opt(names::HISTORY_CONFIG_MAP).await.map_err(|e| e.to_string())?;
            let text = cm.as_ref().and_then(|c| c.data.as_ref()?.get(names::HISTORY_KEY).cloned());
            Ok(inventory::parse_history(text.as_deref()))
        }
        .boxed()
    }

    fn merge_usage(&self, report: UsageReport) -> BoxFuture<'static, Result<Vec<String>, String>> {
        let client = self.client.clone();
        async move {
            let mut unknown = Vec::new();
            for usage in report.servers {
                let api: Api<McpServer> = Api::namespaced(client.clone(), &usage.namespace);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let Some(server) = api.get_opt(&usage.name).await.map_err(|e| e.to_string())? else {
                        unknown.push(format!("{}/{}", usage.namespace, usage.name));
                        break;
                    };
                    let old = server.status.clone().unwrap_or_default();
                    let merged = inventory::apply_usage(&old, &usage, Timestamp::now());
                    if merged == old {
                        break;
                    }
                    // Conditional on the version read: a concurrent writer makes this a 409.
                    let patch = json!({
                        "metadata": {"resourceVersion": server.resource_version()},
                        "status": {
                            "serverInfo": merged.server_info, "tools": merged.tools, "toolCount": merged.tool_count,
                            "lastUsedAt": merged.last_used_at, "lastUsedBy": merged.last_used_by,
                            "errors": merged.errors, "sanitized": merged.sanitized,
                        }
                    });
                    let params =
                        PatchParams { field_manager: Some(names::FIELD_MANAGER.to_owned()), ..Default::default() };
                    match api.patch_status(&usage.name, &params, &Patch::Merge(&patch)).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => continue,
                        Err(e) => return Err(format!("{}/{}: {e}", usage.namespace, usage.name)),
                    }
                }
            }
            Ok(unknown)
        }
        .boxed()
    }
}
