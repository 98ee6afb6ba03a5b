//! Caller identity and client address from sources that can be trusted: identity headers
//! only from a gateway at configured addresses, `X-Forwarded-For` only from configured
//! proxies. Everything else is unverified.

use std::net::IpAddr;

use http::HeaderMap;
use mcp_ledger_crds::config::IdentityConfig;
use mcp_ledger_crds::record::IdentitySource;

use crate::capture::Identity;
pub use mcp_ledger_crds::config::Cidr;

/// Decides identity and client address for each request.
#[derive(Default)]
pub struct Resolver {
    jwt: Option<super::jwt::JwtVerifier>,
    gateway: Option<(Vec<Cidr>, mcp_ledger_crds::config::GatewayConfig)>,
    trusted_proxies: Vec<Cidr>,
}

impl Resolver {
    /// From the configuration (already validated); loads the JWT keys.
    pub fn new(config: &IdentityConfig) -> Result<Self, super::jwt::JwtConfigError> {
        Ok(Self {
            jwt: config.jwt.as_ref().map(super::jwt::JwtVerifier::new).transpose()?,
            gateway: config
                .trusted_gateway
                .as_ref()
                .map(|g| (g.cidrs.iter().filter_map(|c| Cidr::parse(c)).collect(), g.clone())),
            trusted_proxies: config.trusted_proxies.iter().filter_map(|c| Cidr::parse(c)).collect(),
        })
    }

    /// The client address: the peer, or — when the peer is a trusted proxy — the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        hops.into_iter().rev().find(|ip| !self.trusted_proxies.iter().any(|c| c.contains(*ip))).unwrap_or(peer)
    }

    /// The caller's identity: a verified JWT first, then a trusted gateway's headers.
    pub fn identity(&self, peer: IpAddr, headers: &HeaderMap) -> Identity {
        if let Some(v) = self.jwt.as_ref().and_then(|j| j.verify(headers)) {
            return Identity {
                source: IdentitySource::Jwt,
                user: Some(v.user),
                team: v.team,
                org: v.org,
                groups: v.groups,
                claims: v.claims,
            };
        }
        if let Some((cidrs, g)) = &self.gateway
            && cidrs.iter().any(|c| c.contains(peer))
        {
            let get = |name: &Option<String>| {
                name.as_ref()
                    .and_then(|n| headers.get(n.as_str()))
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let user = get(&Some(g.user_header.clone()));
            if user.is_some() {
                let groups = get(&g.groups_header)
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                return Identity {
                    source: IdentitySource::TrustedGateway,
                    user,
                    team: get(&g.team_header),
                    org: get(&g.org_header),
                    groups,
                    claims: Vec::new(),
                };
            }
        }
        Identity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_ledger_crds::config::GatewayConfig;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_what_they_should() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn identity_headers_count_only_from_the_gateway() {
        let r = Resolver::new(&IdentityConfig {
            trusted_gateway: Some(GatewayConfig {
                cidrs: vec!["10.0.0.0/8".into()],
                user_header: "x-user".into(),
                team_header: Some("x-team".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("x-team", "platform".parse().unwrap());
        let id = r.identity(ip("10.1.1.1"), &h);
        assert_eq!(id.source, IdentitySource::TrustedGateway);
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert_eq!(id.team.as_deref(), Some("platform"));
        let forged = r.identity(ip("192.168.1.1"), &h);
        assert_eq!(forged, Identity::default());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let r = Resolver::new(&IdentityConfig { trusted_proxies: vec!["10.0.0.0/8".into()], ..Default::default() })
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2".parse().unwrap());
        assert_eq!(r.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        assert_eq!(r.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
    }
}
