//! Member-to-member TLS with real processes: a cluster forms over mutual TLS, peers without a
//! certificate from the cluster's CA are refused, and so is (with a log line) a member that
//! knows the CA but not the cluster secret.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use reqwest::Method;
use serde_json::json;
use steward_raft::network::{Peers, TlsConfig};

use crate::fixture::process::{free_addr_pair, ProcCluster, BIN};
use crate::fixture::wait_for;

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and one certificate it signs for 127.0.0.1 / localhost, usable as server and client.
fn make_pki(dir: &Path, name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn tls_config(p: &Pki) -> TlsConfig {
    TlsConfig {
        cert_pem: std::fs::read(&p.cert).unwrap(),
        key_pem: std::fs::read(&p.key).unwrap(),
        ca_pem: std::fs::read(&p.ca).unwrap(),
        server_name: None,
    }
}

async fn status_call(peers: &Peers, addr: &str) -> Result<(), tonic::Status> {
    let mut client = peers.cluster_client(addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client.status(steward_raft::pb::Payload { data: steward_raft::wire::encode(&()) }).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_forms_and_refuses_peers_without_the_ca_or_the_secret() {
    let mut c = ProcCluster::new();
    let pki = make_pki(c.root.path(), "cluster");
    let foreign = make_pki(c.root.path(), "foreign");
    c.env = vec![
        ("STEWARD_TLS_CERT".into(), pki.cert.display().to_string()),
        ("STEWARD_TLS_KEY".into(), pki.key.display().to_string()),
        ("STEWARD_TLS_CA".into(), pki.ca.display().to_string()),
    ];
    c.add().await;
    c.add().await;
    // Writes through either member replicate over the TLS port.
    let r = c.req(1, Method::POST, "/api/45/projects").json(&json!({ "name": "over-tls" })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let names = wait_for(Duration::from_secs(10), "member 0 lists the project", || async {
        let r = c.req(0, Method::GET, "/api/45/projects").send().await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v.as_array()?.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(names[0]["name"], json!("over-tls"));

    let addr = c.procs[0].raft.to_string();
    // The right secret is not enough without TLS, nor with a certificate of another CA.
    let plain = Peers::new(&c.secret).unwrap();
    assert!(status_call(&plain, &addr).await.is_err(), "plaintext gRPC to the TLS port");
    let stranger = Peers::with_tls(&c.secret, Some(tls_config(&foreign))).unwrap();
    assert!(status_call(&stranger, &addr).await.is_err(), "a certificate of another CA");
    // The CA's certificate is not enough without the secret; the refusal is logged.
    let wrong = Peers::with_tls(&steward::datadir::random_secret(), Some(tls_config(&pki))).unwrap();
    let err = status_call(&wrong, &addr).await.expect_err("wrong secret");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(status_call(&Peers::with_tls(&c.secret, Some(tls_config(&pki))).unwrap(), &addr).await.is_ok());

    // A newcomer with the CA's certificate but the wrong secret cannot join.
    let dir = c.root.path().join("intruder");
    let (http, raft) = free_addr_pair();
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .args(["--http", &http.to_string(), "--raft", &raft.to_string(), "--join", &c.procs[0].url()])
        .env("STEWARD_CLUSTER_SECRET", steward::datadir::random_secret())
        .env("STEWARD_MASTER_KEY", &c.master_key)
        .envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the intruder started: {text}");
    assert!(text.contains("secret"), "its error names the secret: {text}");
    assert!(!dir.exists(), "it leaves no data dir");
    let log = wait_for(Duration::from_secs(5), "member 0 logs both refusals", || async {
        let log = c.procs[0].log_text();
        (log.contains("refused a join: wrong cluster secret") && log.contains("refused a member-to-member call"))
            .then_some(log)
    })
    .await;
    assert!(!log.contains(&c.secret), "the secret itself is never logged");
}
