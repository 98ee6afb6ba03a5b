//! Leader election on a coordination.k8s.io Lease, so that two or more replicas can run:
//! every replica serves the webhooks, only the leader runs the controllers (the operator
//! stays the single writer of status). A leader that cannot renew its Lease within the
//! lease duration stops its controllers and reports the loss, so that it never acts on a
//! Lease another replica may already hold.

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::Result;
use crate::metrics::Metrics;

/// What the Lease says and what we should do about it.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Nobody holds it (or the holder let it expire): take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and it is still valid.
    HeldBy(String),
}

/// The pure decision about a Lease for `identity` at `now`.
pub fn claim(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp, default_duration: Duration) -> Claim {
    let Some(spec) = spec else { return Claim::Take };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Claim::Renew;
    }
    if holder.is_empty() {
        return Claim::Take;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(default_duration);
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match renewed {
        // A renewal in the future (clock skew) counts as valid.
        Some(t)
            if now.duration_since(t)
                <= jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX) =>
        {
            Claim::HeldBy(holder.to_owned())
        }
        _ => Claim::Take,
    }
}

/// A Lease lock held by one replica.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A lock on Lease `name` in `namespace` for `identity` (the pod name).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_owned(), identity: identity.to_owned(), duration }
    }

    /// Takes or renews the Lease. `Ok(false)` when another replica holds it or won a race.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
        let decision = claim(existing.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, now, self.duration);
        let transitions = existing.as_ref().and_then(|l| l.spec.as_ref()?.lease_transitions).unwrap_or(0);
        let spec = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: acquire,
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let result = match (decision, existing) {
            (Claim::HeldBy(_), _) => return Ok(false),
            (Claim::Take, None) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec(Some(MicroTime(now)), 0)),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            (Claim::Take, Some(mut lease)) => {
                lease.spec = Some(spec(Some(MicroTime(now)), transitions + 1));
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
            }
            (Claim::Renew, Some(mut lease)) => {
                let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
                lease.spec = Some(spec(acquired, transitions));
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
            }
            (Claim::Renew, None) => unreachable!("claim() renews only an existing Lease"),
        };
        match result {
            Ok(()) => Ok(true),
            // Another replica wrote first (resourceVersion or name conflict).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up so that another replica takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }

    /// Waits for the Lease, runs `work` while holding it, renews every third of the
    /// duration. Returns `Ok` when `shutdown` fires, `Err` when the Lease was lost.
    pub async fn run<F>(
        &self,
        work: F,
        metrics: &Metrics,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::result::Result<(), String>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let period = self.duration / 3;
        loop {
            match self.try_acquire().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "could not read the leader Lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        tracing::info!(identity = %self.identity, lease = %self.name, "became leader: starting the controllers");
        metrics.leader.set(1);
        let task = tokio::spawn(work);
        let mut renewed = Instant::now();
        let outcome = loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => break Ok(()),
            }
            match self.try_acquire().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break Err(format!("lost the leader Lease {} to another replica", self.name)),
                Err(e) if renewed.elapsed() >= self.duration => {
                    break Err(format!("could not renew the leader Lease {} for {:?}: {e}", self.name, self.duration));
                }
                Err(e) => tracing::warn!(error = %e, "leader Lease renewal failed; retrying"),
            }
        };
        task.abort();
        metrics.leader.set(0);
        if outcome.is_ok() {
            self.release().await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_expired_and_respected_while_valid() {
        let now: Timestamp = "2026-11-24T10:00:30Z".parse().unwrap();
        let d = Duration::from_secs(15);
        assert_eq!(claim(None, "b", now, d), Claim::Take);
        assert_eq!(claim(Some(&lease("a", "2026-11-24T10:00:20Z", 15)), "b", now, d), Claim::HeldBy("a".into()));
        assert_eq!(claim(Some(&lease("a", "2026-11-24T10:00:10Z", 15)), "b", now, d), Claim::Take, "expired");
        assert_eq!(claim(Some(&lease("b", "2026-11-24T09:00:00Z", 15)), "b", now, d), Claim::Renew);
        assert_eq!(claim(Some(&lease("", "2026-11-24T10:00:29Z", 15)), "b", now, d), Claim::Take, "released");
        let no_times = LeaseSpec { holder_identity: Some("a".into()), ..Default::default() };
        assert_eq!(claim(Some(&no_times), "b", now, d), Claim::Take);
    }
}
