//! Helpers for the cross-component and cluster tests in `tests/tests/`.
//!
//! Cluster tests run only under `make e2e` (which sets `MCP_LEDGER_E2E=1`) against the
//! cluster that `KUBECONFIG` points to. Anywhere else they print why they skipped and
//! pass without touching any cluster, so `make test` never reaches a developer's cluster
//! by accident.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

/// Field manager of everything the e2e tests apply.
pub const MANAGER: &str = "mcp-ledger-e2e";

/// Applies the generated CRDs and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in mcp_ledger_crds::crds() {
        let name = crd.metadata.name.clone().expect("CRDs are named");
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let mut established = false;
        for _ in 0..60 {
            let got = crds.get(&name).await.unwrap_or_else(|e| panic!("reading CRD {name}: {e}"));
            established = got
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(established, "CRD {name} did not become Established within 30 s");
    }
}

/// Returns a client for the e2e cluster, or prints why the test is skipped and returns None.
pub async fn e2e_client(test: &str) -> Option<Client> {
    if std::env::var("MCP_LEDGER_E2E").ok().as_deref() != Some("1") {
        eprintln!("SKIPPED {test}: cluster tests run under `make e2e` (MCP_LEDGER_E2E=1 is not set)");
        return None;
    }
    match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() && std::path::Path::new(&path).exists() => {}
        Ok(path) if !path.is_empty() => {
            eprintln!("SKIPPED {test}: KUBECONFIG points to {path}, which does not exist");
            return None;
        }
        _ => {
            eprintln!("SKIPPED {test}: KUBECONFIG is not set; point it at a cluster to run the e2e tests");
            return None;
        }
    }
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("SKIPPED {test}: KUBECONFIG is set but no client could be made from it: {e}");
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(v)) => {
            eprintln!("{test}: running against Kubernetes {}.{} ({})", v.major, v.minor, v.git_version);
            Some(client)
        }
        Ok(Err(e)) => panic!("{test}: KUBECONFIG points to a cluster that does not answer: {e}"),
        Err(_) => panic!("{test}: KUBECONFIG points to a cluster that did not answer within 10 s"),
    }
}

/// Runs `cleanup` with a client of its own on a thread and runtime of its own, and waits
/// for it (at most 120 s). For `Drop`, which runs inside the test's runtime: a client made
/// there is driven by that runtime, which is blocked while `Drop` waits, so calls through
/// it would never finish.
pub fn cleanup_blocking<F, Fut>(cleanup: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            match Client::try_default().await {
                Ok(client) => {
                    if tokio::time::timeout(Duration::from_secs(120), cleanup(client)).await.is_err() {
                        eprintln!("cleanup did not finish within 120 s");
                    }
                }
                Err(e) => eprintln!("cleanup skipped: no client from KUBECONFIG: {e}"),
            }
        });
    })
    .join();
}

/// A CA and a serving certificate for `host` (an IP address or a DNS name), generated
/// for the run: (CA PEM, certificate PEM, key PEM).
pub fn pki(host: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "mcp-ledger e2e CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a key")).expect("a CA");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf parameters");
    leaf.subject_alt_names.push(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().expect("a DNS name")),
    });
    let key = KeyPair::generate().expect("a key");
    let cert = leaf.signed_by(&key, &ca).expect("a certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Writes a serving certificate for `host` to `dir/tls.crt` and its key to `dir/tls.key`
/// (the operator's `--tls-cert`/`--tls-key`); returns the PEM of the CA that signed it.
pub fn write_tls(dir: &std::path::Path, host: &str) -> String {
    let (ca, cert, key) = pki(host);
    std::fs::write(dir.join("tls.crt"), cert).expect("writing tls.crt");
    std::fs::write(dir.join("tls.key"), key).expect("writing tls.key");
    ca
}

/// The binary `make e2e` built and named in the environment variable `var`, else
/// `target/debug/<name>` of this workspace.
pub fn binary(var: &str, name: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| format!("{}/../target/debug/{name}", env!("CARGO_MANIFEST_DIR")))
}

/// Server-side applies `manifest` as a dry run (namespaced kinds into `ns`), as `kubectl
/// apply --server-side --dry-run=server` does: the API server's own schemas, defaulting
/// and validation, unknown fields refused. None when the cluster does not serve the kind;
/// a manifest that is not an object with apiVersion, kind and name is an error.
pub async fn dry_run_apply(
    client: &Client,
    discovery: &kube::Discovery,
    ns: &str,
    manifest: &serde_json::Value,
) -> Option<Result<(), String>> {
    let parsed = serde_json::from_value::<DynamicObject>(manifest.clone()).map_err(|e| e.to_string()).and_then(|obj| {
        let types = obj.types.clone().ok_or("no apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
        let name = obj.metadata.name.clone().ok_or("no metadata.name")?;
        Ok((types, gvk, name))
    });
    let (types, gvk, name) = match parsed {
        Ok(parts) => parts,
        Err(e) => return Some(Err(format!("not a Kubernetes object ({e}): {manifest}"))),
    };
    let (resource, caps) = discovery.resolve_gvk(&gvk)?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let params = PatchParams { dry_run: true, ..PatchParams::apply(MANAGER).force() };
    let mut manifest = manifest.clone();
    if caps.scope == kube::discovery::Scope::Namespaced {
        manifest["metadata"]["namespace"] = serde_json::json!(ns);
    }
    Some(
        api.patch(&name, &params, &Patch::Apply(&manifest))
            .await
            .map(|_| ())
            .map_err(|e| format!("{} {name}: {e}", types.kind)),
    )
}

/// Creates the namespace `name`.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("a Namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// Deletes `namespaces` one at a time, each gone before the next (at most 60 s in all):
/// McpServers' finalizers need the operator and write into its namespace, so the
/// servers' namespaces come first and the operator's last.
pub async fn delete_namespaces(client: &Client, namespaces: &[String]) {
    let api = Api::<Namespace>::all(client.clone());
    let gone = tokio::time::timeout(Duration::from_secs(60), async {
        for ns in namespaces {
            let _ = api.delete(ns, &DeleteParams::default()).await;
            while matches!(api.get_opt(ns).await, Ok(Some(_))) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
    .await;
    if gone.is_err() {
        eprintln!("cleanup: namespaces {namespaces:?} were not all deleted within 60 s");
    }
}

/// What a test started and made, undone when it ends, assertions failed or not: the
/// namespaces are deleted first, in order (see [`delete_namespaces`]), while the
/// processes still run; then the processes are killed and the folders removed.
pub struct Cleanup {
    /// Processes to kill.
    pub children: Vec<std::process::Child>,
    /// Namespaces to delete, in this order.
    pub namespaces: Vec<String>,
    /// Folders to remove.
    pub dirs: Vec<std::path::PathBuf>,
}

impl Cleanup {
    /// Deletes `namespaces` (in this order) and removes `dirs` when dropped; push the
    /// processes to kill onto `children`.
    pub fn new(namespaces: Vec<String>, dirs: Vec<std::path::PathBuf>) -> Self {
        Self { children: Vec::new(), namespaces, dirs }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut self.namespaces);
        if !namespaces.is_empty() {
            cleanup_blocking(move |client| async move { delete_namespaces(&client, &namespaces).await });
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

/// Posts one OTLP/HTTP protobuf request to a node agent on 127.0.0.1; returns the status
/// line (or says it is not listening yet).
pub fn post_otlp(port: u16, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "not listening yet".to_owned();
    };
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).is_err() {
        return "connection closed".to_owned();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// A unique, DNS-safe name for a test namespace.
pub fn unique_namespace(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// A namespaced API for one of the mcp-ledger kinds, as dynamic objects (so tests can send
/// what the typed structs would refuse to build).
pub fn crd_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(mcp_ledger_crds::GROUP, mcp_ledger_crds::VERSION, kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// An mcp-ledger object of `kind` named `name` with `spec`.
pub fn object(kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{}/{}", mcp_ledger_crds::GROUP, mcp_ledger_crds::VERSION),
        "kind": kind, "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a DynamicObject")
}
