//! `allowedVersions`: which `serverInfo.version` values an McpServer may report. Shared by
//! the operator (the VersionAllowed condition) and the agent (records, `block`).
//!
//! An entry that is a complete semantic version (`1.4.2`, `v1.4.2`) allows exactly that
//! version; an entry that parses as a semver requirement (`>=1.4, <2`, `~1.4`, `1.*`)
//! allows what it matches; anything else is compared as an exact string, so that servers
//! with non-semver versions (`2024.06-b3`) can still be listed.

/// The compiled list. Empty allows every version.
#[derive(Debug, Clone, Default)]
pub struct VersionRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    Exact(semver::Version),
    Range(semver::VersionReq),
    Text(String),
}

fn parse_version(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s.trim().strip_prefix('v').unwrap_or(s.trim())).ok()
}

impl VersionRules {
    /// Compiles `allowedVersions`. Never fails: what is not semver is an exact string.
    pub fn new(entries: &[String]) -> Self {
        let rules = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                if let Some(v) = parse_version(e) {
                    Rule::Exact(v)
                } else if let Ok(r) = semver::VersionReq::parse(e) {
                    Rule::Range(r)
                } else {
                    Rule::Text(e.to_owned())
                }
            })
            .collect();
        Self { rules }
    }

    /// True when no version is configured (every version is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `version` (as the server reported it) is allowed.
    pub fn allows(&self, version: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let parsed = parse_version(version);
        self.rules.iter().any(|rule| match (rule, &parsed) {
            (Rule::Exact(want), Some(v)) => want == v,
            (Rule::Range(req), Some(v)) => req.matches(v),
            (Rule::Text(t), _) => t == version.trim(),
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(e: &[&str]) -> VersionRules {
        VersionRules::new(&e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_versions_are_exact_not_caret() {
        let r = rules(&["1.4.2"]);
        assert!(r.allows("1.4.2"));
        assert!(r.allows("v1.4.2"));
        assert!(!r.allows("1.4.3"), "a bare version must not be read as ^1.4.2");
        assert!(!r.allows("1.5.0"));
    }

    #[test]
    fn ranges_match_and_prereleases_stay_out() {
        let r = rules(&[">=1.4, <2"]);
        assert!(r.allows("1.4.0"));
        assert!(r.allows("1.9.9"));
        assert!(!r.allows("2.0.0"));
        assert!(!r.allows("1.3.9"));
        assert!(!r.allows("1.5.0-rc.1"), "semver ranges do not admit prereleases by default");
        assert!(rules(&["~1.4"]).allows("1.4.7"));
        assert!(!rules(&["~1.4"]).allows("1.5.0"));
    }

    #[test]
    fn non_semver_versions_compare_as_text() {
        let r = rules(&["2024.06-b3"]);
        assert!(r.allows("2024.06-b3"));
        assert!(!r.allows("2024.07"));
        assert!(!rules(&["1.0.0"]).allows("latest"));
    }

    #[test]
    fn empty_allows_everything() {
        assert!(rules(&[]).allows("0.0.1"));
        assert!(rules(&[]).allows("anything"));
    }
}
