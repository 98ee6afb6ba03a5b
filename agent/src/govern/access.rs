//! McpAccessPolicy evaluation, compiled once per configuration for the one server this
//! agent fronts. Per policy: a deny rule that matches wins, then an allow rule, then the
//! policy's `defaultEffect`. A caller without a verified identity matches no subject.

use mcp_ledger_crds::access::{Effect, EnforcementMode, Subject, SubjectKind};
use mcp_ledger_crds::config::NamedAccessPolicy;

/// A name pattern: exact, or a glob with `*` (any run of characters) and `?` (one).
#[derive(Debug, Clone)]
pub enum Glob {
    /// Matches everything.
    Any,
    /// Matches one name.
    Exact(String),
    /// A pattern with wildcards.
    Pattern(Vec<char>),
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(p: &str) -> Self {
        if p == "*" {
            Self::Any
        } else if p.contains(['*', '?']) {
            Self::Pattern(p.chars().collect())
        } else {
            Self::Exact(p.to_owned())
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == name,
            Self::Pattern(p) => wildcard(p, name),
        }
    }
}

/// Iterative wildcard match with one backtrack point, over the characters of `name`
/// without allocating (the decision runs on every call).
fn wildcard(p: &[char], name: &str) -> bool {
    let next = |at: usize| name[at..].chars().next().map(|c| (c, at + c.len_utf8()));
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some((c, after)) = next(si) {
        if pi < p.len() && (p[pi] == '?' || p[pi] == c) {
            pi += 1;
            si = after;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            let Some((_, resume)) = next(ss) else { return false };
            pi = sp + 1;
            si = resume;
            star = Some((sp, resume));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Who is calling, as far as it was verified.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// Verified user id (a Kubernetes service account is `system:serviceaccount:<ns>:<name>`).
    pub user: Option<&'a str>,
    /// Verified groups.
    pub groups: &'a [String],
    /// Verified JWT claims with text values (array claims give one pair per element).
    pub claims: &'a [(String, String)],
}

#[derive(Debug, Clone)]
enum Who {
    User(Glob),
    Group(Glob),
    ServiceAccount(Glob),
    Claim(String, Glob),
}

impl Who {
    fn new(s: &Subject) -> Self {
        let name = Glob::new(&s.name);
        match s.kind {
            SubjectKind::User => Self::User(name),
            SubjectKind::Group => Self::Group(name),
            SubjectKind::ServiceAccount => Self::ServiceAccount(name),
            SubjectKind::Claim => Self::Claim(s.claim.clone().unwrap_or_default(), name),
        }
    }

    fn matches(&self, c: &Caller<'_>) -> bool {
        let Some(user) = c.user else { return false };
        match self {
            Self::User(g) => g.matches(user),
            Self::Group(g) => c.groups.iter().any(|x| g.matches(x)),
            Self::ServiceAccount(g) => user
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(ns, name)| match g {
                    Glob::Any => true,
                    Glob::Exact(want) => want.split_once('/') == Some((ns, name)),
                    Glob::Pattern(_) => g.matches(&format!("{ns}/{name}")),
                }),
            Self::Claim(claim, g) => c.claims.iter().any(|(k, v)| k == claim && g.matches(v)),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    effect: Effect,
    subjects: Vec<Who>,
    /// Empty: every tool.
    tools: Vec<Glob>,
}

impl Rule {
    fn applies(&self, c: &Caller<'_>, tool: &str) -> bool {
        (self.tools.is_empty() || self.tools.iter().any(|g| g.matches(tool)))
            && self.subjects.iter().any(|s| s.matches(c))
    }
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    mode: EnforcementMode,
    default_effect: Effect,
    /// Deny rules first, then allow rules: the first match decides.
    rules: Vec<Rule>,
}

/// What one policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// `namespace/name` of the policy.
    pub policy: &'a str,
    /// Its mode.
    pub mode: EnforcementMode,
    /// Allow or deny.
    pub effect: Effect,
    /// The deciding rule, or `defaultEffect`.
    pub rule: &'a str,
}

/// The access policies that apply to this server, compiled.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    policies: Vec<Policy>,
}

/// The rule name reported when no rule matched.
pub const DEFAULT_RULE: &str = "defaultEffect";

impl AccessRules {
    /// Compiles the policies for the server named `server`: policies and rules whose
    /// server lists do not name it are left out.
    pub fn new(policies: &[NamedAccessPolicy], server: &str) -> Self {
        let for_server = |list: &[String]| list.is_empty() || list.iter().any(|p| Glob::new(p).matches(server));
        let policies = policies
            .iter()
            .filter(|p| for_server(&p.spec.servers))
            .map(|p| {
                let mut rules: Vec<Rule> = p
                    .spec
                    .rules
                    .iter()
                    .filter(|r| for_server(&r.servers))
                    .map(|r| Rule {
                        name: r.name.clone(),
                        effect: r.effect,
                        subjects: r.subjects.iter().map(Who::new).collect(),
                        tools: r.tools.iter().map(|t| Glob::new(t)).collect(),
                    })
                    .collect();
                rules.sort_by_key(|r| r.effect != Effect::Deny);
                Policy { name: p.name.clone(), mode: p.spec.mode, default_effect: p.spec.default_effect, rules }
            })
            .collect();
        Self { policies }
    }

    /// True when no policy applies: every call is allowed and nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// True when some policy enforces (lists must then be filtered per caller).
    pub fn enforces(&self) -> bool {
        self.policies.iter().any(|p| p.mode == EnforcementMode::Enforce)
    }

    /// Calls `f` with every policy's verdict that denies `caller` the `tool`.
    pub fn denials<'a>(&'a self, caller: &Caller<'_>, tool: &str, mut f: impl FnMut(Verdict<'a>)) {
        for p in &self.policies {
            let (effect, rule) = match p.rules.iter().find(|r| r.applies(caller, tool)) {
                Some(r) => (r.effect, r.name.as_str()),
                None => (p.default_effect, DEFAULT_RULE),
            };
            if effect == Effect::Deny {
                f(Verdict { policy: &p.name, mode: p.mode, effect, rule });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_ledger_crds::access::{AccessRule, McpAccessPolicySpec};

    fn subject(kind: SubjectKind, name: &str) -> Subject {
        Subject { kind, name: name.into(), claim: None }
    }

    fn rule(name: &str, effect: Effect, subjects: Vec<Subject>, tools: &[&str]) -> AccessRule {
        AccessRule {
            name: name.into(),
            effect,
            subjects,
            servers: vec![],
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn policy(mode: EnforcementMode, servers: &[&str], rules: Vec<AccessRule>) -> NamedAccessPolicy {
        NamedAccessPolicy {
            name: "tools/acl".into(),
            spec: McpAccessPolicySpec {
                mode,
                servers: servers.iter().map(|s| (*s).to_owned()).collect(),
                default_effect: Effect::Deny,
                rules,
            },
        }
    }

    fn denied_by(rules: &AccessRules, c: &Caller<'_>, tool: &str) -> Vec<String> {
        let mut out = vec![];
        rules.denials(c, tool, |v| out.push(v.rule.to_owned()));
        out
    }

    #[test]
    fn globs() {
        assert!(Glob::new("github-*").matches("github-issues"));
        assert!(!Glob::new("github-*").matches("gitlab"));
        assert!(Glob::new("*_issue").matches("create_issue"));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(Glob::new("t?ol").matches("tool"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("é*").matches("été"));
        assert!(Glob::new("?t?").matches("été"));
        assert!(!Glob::new("?t").matches("été"));
        assert!(Glob::new("*a").matches("banana"));
        assert!(!Glob::new("*x*").matches("banana"));
    }

    #[test]
    fn deny_wins_and_default_applies() {
        let groups_dev = vec!["devs".to_owned()];
        let groups_ops = vec!["ops".to_owned()];
        let rules = AccessRules::new(
            &[policy(
                EnforcementMode::Enforce,
                &[],
                vec![
                    rule("devs-read", Effect::Allow, vec![subject(SubjectKind::Group, "devs")], &["search", "get_*"]),
                    rule("ops-all", Effect::Allow, vec![subject(SubjectKind::Group, "ops")], &[]),
                    rule("no-delete", Effect::Deny, vec![subject(SubjectKind::User, "*")], &["delete_*"]),
                ],
            )],
            "github",
        );
        let alice = Caller { user: Some("alice"), groups: &groups_dev, claims: &[] };
        let bob = Caller { user: Some("bob"), groups: &groups_ops, claims: &[] };
        assert!(denied_by(&rules, &alice, "search").is_empty());
        assert!(denied_by(&rules, &alice, "get_issue").is_empty());
        assert_eq!(denied_by(&rules, &alice, "create_issue"), vec![DEFAULT_RULE]);
        assert!(denied_by(&rules, &bob, "create_issue").is_empty());
        assert_eq!(denied_by(&rules, &bob, "delete_repo"), vec!["no-delete"], "deny wins over ops-all");
        let anonymous = Caller::default();
        assert_eq!(denied_by(&rules, &anonymous, "search"), vec![DEFAULT_RULE], "unverified matches no subject");
    }

    #[test]
    fn service_accounts_and_claims() {
        let claims = vec![("department".to_owned(), "finance".to_owned())];
        let rules = AccessRules::new(
            &[policy(
                EnforcementMode::Observe,
                &[],
                vec![
                    rule("bots", Effect::Allow, vec![subject(SubjectKind::ServiceAccount, "agents/runner")], &[]),
                    rule(
                        "finance",
                        Effect::Allow,
                        vec![Subject {
                            kind: SubjectKind::Claim,
                            name: "finance".into(),
                            claim: Some("department".into()),
                        }],
                        &["ledger_*"],
                    ),
                ],
            )],
            "books",
        );
        let sa = Caller { user: Some("system:serviceaccount:agents:runner"), groups: &[], claims: &[] };
        let other_sa = Caller { user: Some("system:serviceaccount:agents:other"), groups: &[], claims: &[] };
        let carol = Caller { user: Some("carol"), groups: &[], claims: &claims };
        assert!(denied_by(&rules, &sa, "anything").is_empty());
        assert_eq!(denied_by(&rules, &other_sa, "anything").len(), 1);
        assert!(denied_by(&rules, &carol, "ledger_read").is_empty());
        assert_eq!(denied_by(&rules, &carol, "payroll").len(), 1);
    }

    #[test]
    fn policies_for_other_servers_are_left_out() {
        let p = policy(EnforcementMode::Enforce, &["github-*"], vec![]);
        assert!(AccessRules::new(std::slice::from_ref(&p), "slack").is_empty());
        let rules = AccessRules::new(&[p], "github-issues");
        assert!(rules.enforces());
        assert_eq!(denied_by(&rules, &Caller { user: Some("x"), ..Default::default() }, "t"), vec![DEFAULT_RULE]);
    }
}
