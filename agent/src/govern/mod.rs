//! Governance: tool pinning against the approved baseline, server version allow-lists,
//! and McpAccessPolicy decisions. Pure decisions over shared state; the proxy acts on
//! them (refuses calls, filters list answers) and the pipeline records them.
//!
//! The proxy calls [`Governance::check_request`] for every JSON-RPC request it can read,
//! [`Governance::on_tools_list`] for every `tools/list` answer and
//! [`Governance::on_server_info`] for every `initialize` answer. Each returns the
//! [`Event`]s to record; the first two also say what to refuse or hide.

pub mod access;
pub mod fingerprint;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::access::EnforcementMode;
use mcp_ledger_crds::record::{Decision, ToolChange};
use mcp_ledger_crds::server::{ToolFingerprint, ToolPolicy};
use mcp_ledger_crds::versions::VersionRules;
use serde_json::Value;

use access::AccessRules;
pub use access::Caller;
use fingerprint::ToolDef;

/// Most pages of one paginated `tools/list` kept while waiting for its last page.
const MAX_PAGES_TOOLS: usize = 10_000;
/// Most sessions with a paginated `tools/list` in progress.
const MAX_PAGED_SESSIONS: usize = 1_024;
/// Most `policy-denied` records for one list answer (the rest are counted in the last).
pub const MAX_LIST_RECORDS: usize = 64;

/// The rules, from the configuration; replaced whole on reload.
#[derive(Debug, Default)]
pub struct Rules {
    server: String,
    tool_policy: ToolPolicy,
    /// name → approved hash; `None` when the server has no approved baseline.
    baseline: Option<HashMap<String, String>>,
    versions: VersionRules,
    access: AccessRules,
}

impl Rules {
    /// From an (already validated) agent configuration.
    pub fn from_config(config: &AgentConfig) -> Self {
        let s = &config.server;
        Self {
            server: s.name.clone(),
            tool_policy: s.tool_policy,
            baseline: (!s.approved_tools.is_empty())
                .then(|| s.approved_tools.iter().map(|t| (t.name.clone(), t.definition_hash.clone())).collect()),
            versions: VersionRules::new(&s.allowed_versions),
            access: AccessRules::new(&config.access, &s.name),
        }
    }

    fn blocks(&self) -> bool {
        self.tool_policy == ToolPolicy::Block
    }
}

/// Something to record.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A call refused or a tool hidden, or what enforcement would have done.
    Denied {
        /// The tool concerned, if any.
        tool: Option<String>,
        /// The decision.
        decision: Decision,
    },
    /// A tool differs from the approved baseline.
    ToolChanged {
        /// The tool.
        tool: String,
        /// The change.
        change: ToolChange,
    },
}

/// The outcome of checking one request.
#[derive(Debug, Default)]
pub struct RequestCheck {
    /// Records to write.
    pub events: Vec<Event>,
    /// When set, the request is refused with this message (the first enforced denial).
    pub refuse: Option<String>,
}

/// The outcome of one `tools/list` answer.
#[derive(Debug, Default)]
pub struct ListCheck {
    /// Records to write.
    pub events: Vec<Event>,
    /// Tool names to remove from the answer the client gets.
    pub hide: BTreeSet<String>,
    /// The complete tool list with hashes, when this answer completed one.
    pub complete: Option<Vec<ToolFingerprint>>,
}

#[derive(Debug, Default)]
struct State {
    /// The latest definition seen of each tool.
    tools: HashMap<String, ToolDef>,
    /// The hash last reported in a `tool-definition-changed` record per tool (`None`:
    /// reported as removed), so that each change is recorded once, not once per session.
    reported: HashMap<String, Option<String>>,
    /// The last complete list, as fingerprints.
    complete: Option<Vec<ToolFingerprint>>,
    /// Paginated lists in progress, per session.
    pages: HashMap<String, Vec<ToolFingerprint>>,
    /// The version the server reported last, and whether it was recorded.
    version: Option<String>,
}

/// Governance shared by the proxy and the pipeline.
#[derive(Debug, Default)]
pub struct Governance {
    rules: RwLock<Arc<Rules>>,
    state: Mutex<State>,
}

fn tool_policy_text(p: ToolPolicy) -> &'static str {
    match p {
        ToolPolicy::Observe => "observe",
        ToolPolicy::Warn => "warn",
        ToolPolicy::Block => "block",
    }
}

fn mode_text(m: EnforcementMode) -> &'static str {
    match m {
        EnforcementMode::Observe => "observe",
        EnforcementMode::Enforce => "enforce",
    }
}

/// Requests a version block never refuses: the client must be able to connect and learn why.
fn exempt_from_version_block(method: &str) -> bool {
    matches!(method, "initialize" | "ping") || method.starts_with("notifications/")
}

impl Governance {
    /// Governance with `rules`.
    pub fn new(rules: Rules) -> Self {
        Self { rules: RwLock::new(Arc::new(rules)), state: Mutex::default() }
    }

    /// Takes new rules (a reload). A new baseline is compared afresh: tools that now match
    /// it are no longer reported, tools that still differ are reported again.
    pub fn set_rules(&self, rules: Rules) {
        let baseline_changed = self.rules().baseline != rules.baseline;
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        if baseline_changed {
            self.state().reported.clear();
        }
    }

    fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when list answers must be held back and filtered (pinning `block` or an
    /// enforcing access policy).
    pub fn filters_lists(&self) -> bool {
        let r = self.rules();
        r.blocks() || r.access.enforces()
    }

    /// True when requests must be read before they are forwarded.
    pub fn checks_requests(&self) -> bool {
        let r = self.rules();
        r.blocks() || !r.access.is_empty()
    }

    /// `f` of the definition hash of `tool` as last listed (read in place, under the lock).
    pub fn with_tool_hash<R>(&self, tool: &str, f: impl FnOnce(Option<&str>) -> R) -> R {
        f(self.state().tools.get(tool).map(|t| t.hash.as_str()))
    }

    /// The last complete tool list seen.
    pub fn complete_list(&self) -> Option<Vec<ToolFingerprint>> {
        self.state().complete.clone()
    }

    /// Checks one request (`method`, with `tool` for `tools/call`) from `caller`.
    pub fn check_request(&self, caller: &Caller<'_>, method: &str, tool: Option<&str>) -> RequestCheck {
        let rules = self.rules();
        let mut out = RequestCheck::default();
        if rules.blocks() && !exempt_from_version_block(method) {
            let state = self.state();
            if let Some(v) = state.version.as_deref().filter(|v| !rules.versions.allows(v)) {
                let reason = format!(
                    "server version {v} is not in allowedVersions of McpServer {}; toolPolicy block refuses its calls",
                    rules.server
                );
                out.refuse.get_or_insert_with(|| reason.clone());
                out.events.push(Event::Denied {
                    tool: tool.map(str::to_owned),
                    decision: decision("server-version", None, None, "block", true, "call", reason),
                });
            }
        }
        let Some(tool) = tool.filter(|_| method == "tools/call") else { return out };
        if rules.blocks()
            && let Some(why) = self.pinning_problem(&rules, tool)
        {
            let reason = format!("tool {tool} {why}; toolPolicy block refuses calls to it until a new approval");
            out.refuse.get_or_insert_with(|| reason.clone());
            out.events.push(Event::Denied {
                tool: Some(tool.to_owned()),
                decision: decision("tool-pinning", None, None, "block", true, "call", reason),
            });
        }
        rules.access.denials(caller, tool, |v| {
            let enforced = v.mode == EnforcementMode::Enforce;
            let who = caller.user.unwrap_or("an unverified caller");
            let reason = format!("{who} may not call tool {tool}: McpAccessPolicy {} rule {}", v.policy, v.rule);
            if enforced {
                out.refuse.get_or_insert_with(|| reason.clone());
            }
            out.events.push(Event::Denied {
                tool: Some(tool.to_owned()),
                decision: decision("access", Some(v.policy), Some(v.rule), mode_text(v.mode), enforced, "call", reason),
            });
        });
        out
    }

    /// Why `tool` is not the approved definition, if it is not.
    fn pinning_problem(&self, rules: &Rules, tool: &str) -> Option<&'static str> {
        let baseline = rules.baseline.as_ref()?;
        let approved = baseline.get(tool);
        match (approved, self.state().tools.get(tool)) {
            (None, _) => Some("is not in the approved tool set"),
            (Some(a), Some(seen)) if *a != seen.hash => Some("changed its definition since approval"),
            _ => None,
        }
    }

    /// Takes one `tools/list` answer (`result`) of session `session`; `first_page` is true
    /// when the request had no cursor. Fingerprints the tools, records changes against the
    /// baseline once each, and says which tools `caller` must not see.
    pub fn on_tools_list(&self, session: &str, first_page: bool, result: &Value, caller: &Caller<'_>) -> ListCheck {
        let rules = self.rules();
        let mut out = ListCheck::default();
        let listed: Vec<ToolDef> = result
            .get("tools")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(ToolDef::from_listed).collect())
            .unwrap_or_default();
        let last_page = result.get("nextCursor").is_none_or(Value::is_null);
        let policy = tool_policy_text(rules.tool_policy);
        {
            let mut state = self.state();
            for def in &listed {
                let previous = state.tools.get(&def.name).cloned();
                if let Some(baseline) = &rules.baseline {
                    let approved = baseline.get(&def.name);
                    let differs = approved != Some(&def.hash);
                    let already = state.reported.get(&def.name) == Some(&Some(def.hash.clone()));
                    if differs && !already {
                        state.reported.insert(def.name.clone(), Some(def.hash.clone()));
                        out.events.push(Event::ToolChanged {
                            tool: def.name.clone(),
                            change: ToolChange {
                                change: if approved.is_some() { "changed" } else { "added" }.to_owned(),
                                approved_hash: approved.cloned(),
                                previous_hash: previous.as_ref().map(|p| p.hash.clone()),
                                hash: Some(def.hash.clone()),
                                changed_fields: previous.as_ref().map(|p| p.changed_fields(def)).unwrap_or_default(),
                                policy: policy.to_owned(),
                            },
                        });
                    } else if !differs {
                        state.reported.remove(&def.name);
                    }
                }
                state.tools.insert(def.name.clone(), def.clone());
            }
            // The complete list: this page alone, or the pages of this session so far.
            let fingerprints =
                listed.iter().map(|d| ToolFingerprint { name: d.name.clone(), definition_hash: d.hash.clone() });
            let complete = if first_page && last_page {
                state.pages.remove(session);
                Some(fingerprints.collect::<Vec<_>>())
            } else {
                if first_page {
                    state.pages.remove(session);
                }
                if state.pages.len() < MAX_PAGED_SESSIONS || state.pages.contains_key(session) {
                    let pages = state.pages.entry(session.to_owned()).or_default();
                    if pages.len() + listed.len() <= MAX_PAGES_TOOLS {
                        pages.extend(fingerprints);
                    }
                }
                if last_page { state.pages.remove(session) } else { None }
            };
            if let Some(all) = &complete {
                if let Some(baseline) = &rules.baseline {
                    let names: BTreeSet<&str> = all.iter().map(|t| t.name.as_str()).collect();
                    let mut removed: Vec<(&String, &String)> =
                        baseline.iter().filter(|(n, _)| !names.contains(n.as_str())).collect();
                    removed.sort();
                    for (name, hash) in removed {
                        if state.reported.get(name) != Some(&None) {
                            state.reported.insert(name.clone(), None);
                            out.events.push(Event::ToolChanged {
                                tool: name.clone(),
                                change: ToolChange {
                                    change: "removed".to_owned(),
                                    approved_hash: Some(hash.clone()),
                                    previous_hash: state.tools.get(name).map(|t| t.hash.clone()),
                                    hash: None,
                                    changed_fields: vec![],
                                    policy: policy.to_owned(),
                                },
                            });
                        }
                    }
                }
                state.complete = Some(all.clone());
            }
            out.complete = complete;
        }
        // What this caller must not see.
        let mut list_records = 0usize;
        for def in &listed {
            if rules.blocks()
                && let Some(why) = self.pinning_problem(&rules, &def.name)
            {
                out.hide.insert(def.name.clone());
                if list_records < MAX_LIST_RECORDS {
                    list_records += 1;
                    out.events.push(Event::Denied {
                        tool: Some(def.name.clone()),
                        decision: decision(
                            "tool-pinning",
                            None,
                            None,
                            "block",
                            true,
                            "list",
                            format!("tool {} {why}; hidden from tools/list by toolPolicy block", def.name),
                        ),
                    });
                }
            }
            rules.access.denials(caller, &def.name, |v| {
                let enforced = v.mode == EnforcementMode::Enforce;
                if enforced {
                    out.hide.insert(def.name.clone());
                }
                if list_records < MAX_LIST_RECORDS {
                    list_records += 1;
                    let who = caller.user.unwrap_or("an unverified caller");
                    let verb = if enforced { "hidden from" } else { "would be hidden from" };
                    out.events.push(Event::Denied {
                        tool: Some(def.name.clone()),
                        decision: decision(
                            "access",
                            Some(v.policy),
                            Some(v.rule),
                            mode_text(v.mode),
                            enforced,
                            "list",
                            format!(
                                "tool {} {verb} tools/list for {who}: McpAccessPolicy {} rule {}",
                                def.name, v.policy, v.rule
                            ),
                        ),
                    });
                }
            });
        }
        out
    }

    /// Takes the `serverInfo.version` of an `initialize` answer. Returns a record when the
    /// version is outside `allowedVersions` and was not recorded yet.
    pub fn on_server_info(&self, version: &str) -> Option<Event> {
        let rules = self.rules();
        let mut state = self.state();
        if state.version.as_deref() == Some(version) {
            return None;
        }
        state.version = Some(version.to_owned());
        if rules.versions.allows(version) {
            return None;
        }
        let enforced = rules.blocks();
        let then = if enforced { "its calls are refused (toolPolicy block)" } else { "calls still go through" };
        Some(Event::Denied {
            tool: None,
            decision: decision(
                "server-version",
                None,
                None,
                tool_policy_text(rules.tool_policy),
                enforced,
                "initialize",
                format!(
                    "McpServer {} reports version {version}, which allowedVersions does not list; {then}",
                    rules.server
                ),
            ),
        })
    }

    /// The record level of a tool change under the current policy.
    pub fn change_is_warning(&self) -> bool {
        self.rules().tool_policy != ToolPolicy::Observe
    }
}

fn decision(
    control: &str,
    policy: Option<&str>,
    rule: Option<&str>,
    mode: &str,
    enforced: bool,
    action: &str,
    reason: String,
) -> Decision {
    Decision {
        control: control.to_owned(),
        policy: policy.map(str::to_owned),
        rule: rule.map(str::to_owned),
        mode: mode.to_owned(),
        enforced,
        action: action.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
