//! Shared by the operator's HTTPS tests: generated certificates, temporary folders, and
//! Python's `ssl` module (OpenSSL) as a real TLS client that verifies the chain.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use serde_json::{Value, json};

/// A fresh CA and a server certificate for 127.0.0.1 signed by it: (ca pem, cert pem, key pem).
pub fn pki(name: &str) -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("mcp-ledger test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["mcp-ledger-webhook.mcp-ledger.svc".to_owned()]).unwrap();
    leaf.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A new empty folder under the system temp folder.
pub fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "mcp-ledger-test-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CLIENT: &str = r#"
import json, ssl, sys, urllib.request, urllib.error
method, url, cafile, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
body = sys.stdin.buffer.read() if method == "POST" else None
ctx = ssl.create_default_context(cafile=cafile)
req = urllib.request.Request(url, data=body, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        print(json.dumps({"status": r.status, "type": r.headers.get("Content-Type"), "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "type": e.headers.get("Content-Type"), "body": e.read().decode()}))
except urllib.error.URLError as e:
    print(json.dumps({"status": 0, "type": None, "body": str(e.reason)}))
"#;

/// Sends a request with Python's TLS client, trusting only `ca`: (HTTP status, body).
/// Status 0 means the connection or handshake failed; the body then says why.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    route: &str,
    ca: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let dir = tempdir();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let url = format!("https://127.0.0.1:{}{route}", addr.port());
    let headers: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", CLIENT, method, &url, ca_file.to_str().unwrap(), &Value::Object(headers).to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the machine's Python 3.11)");
    use tokio::io::AsyncWriteExt;
    child.stdin.take().unwrap().write_all(&body).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("client output {out:?}: {e}"));
    (v["status"].as_u64().unwrap() as u16, v["body"].as_str().unwrap().to_owned())
}

/// POSTs a JSON body.
pub async fn post(addr: SocketAddr, route: &str, ca: &str, body: Vec<u8>) -> (u16, String) {
    request(addr, "POST", route, ca, &[("Content-Type", "application/json")], body).await
}
