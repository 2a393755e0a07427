//! Key storage as a client sees it: Rundeck's shapes, write-only secrets, bad input refused,
//! no plaintext in any member's files, and rotating the master key.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use steward::keys::{KeyStore, Keyring, MasterKey};

use crate::fixture::process::run_steward;
use crate::fixture::{assert_envelope, body, default_tune, raw_request, wait_for, TestCluster};

const PASSWORD: &str = "application/x-rundeck-data-password";
const PRIVATE: &str = "application/octet-stream";
const PUBLIC: &str = "application/pgp-keys";

async fn put_key(c: &TestCluster, i: usize, method: Method, path: &str, ctype: &str, value: &str) -> (u16, Value) {
    let r = c
        .req(i, method, &format!("/api/45/storage/keys/{path}"))
        .header("content-type", ctype)
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    body(r).await
}

/// GET with `accept` (metadata, as JSON, by default: like Rundeck, `*/*` asks for the content).
async fn get_key(c: &TestCluster, i: usize, path: &str, accept: Option<&str>) -> (u16, Value) {
    let r = c.req(i, Method::GET, &format!("/api/45/storage/keys/{path}"));
    body(r.header("accept", accept.unwrap_or("application/json")).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_read_and_deleted_in_rundecks_shapes() {
    let c = TestCluster::start(1).await;
    let (s, pw) = put_key(&c, 0, Method::POST, "ops/db.password", PASSWORD, "s3cret-pw").await;
    assert_eq!(s, 201, "{pw}");
    assert_eq!(pw["path"], json!("keys/ops/db.password"));
    assert_eq!(pw["name"], json!("db.password"));
    assert_eq!(pw["type"], json!("file"));
    assert_eq!(pw["meta"]["Rundeck-data-type"], json!("password"));
    assert_eq!(pw["meta"]["Rundeck-content-mask"], json!("content"));
    assert_eq!(pw["meta"]["Rundeck-content-size"], json!("9"));
    assert!(pw["url"].as_str().unwrap().ends_with("/api/45/storage/keys/ops/db.password"));
    assert_eq!(put_key(&c, 0, Method::POST, "ops/id_rsa", PRIVATE, "-----BEGIN KEY-----").await.0, 201);
    let (s, public) = put_key(&c, 0, Method::POST, "ops/id_rsa.pub", PUBLIC, "ssh-ed25519 AAAA ops").await;
    assert_eq!(s, 201);
    assert_eq!(public["meta"]["Rundeck-key-type"], json!("public"));
    assert_eq!(put_key(&c, 0, Method::POST, "web/api.password", PASSWORD, "other").await.0, 201);

    // Metadata of each; the content of the public key only.
    let (s, m) = get_key(&c, 0, "ops/id_rsa", None).await;
    assert_eq!(s, 200);
    assert_eq!(m["meta"]["Rundeck-key-type"], json!("private"));
    assert_eq!(m["meta"]["Rundeck-content-type"], json!(PRIVATE));
    let r = c.req(0, Method::GET, "/api/45/storage/keys/ops/id_rsa.pub").header("accept", PUBLIC).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], PUBLIC);
    assert_eq!(r.text().await.unwrap(), "ssh-ed25519 AAAA ops");
    for (path, accept) in [("ops/id_rsa", PRIVATE), ("ops/db.password", PASSWORD), ("ops/db.password", "*/*")] {
        let (s, e) = get_key(&c, 0, path, Some(accept)).await;
        assert_eq!(s, 403, "content of {path} with Accept {accept}");
        assert_envelope(&e, "api.error.item.unauthorized");
        assert!(!e.to_string().contains("s3cret-pw"));
    }

    // Directory listings: the root shows two directories, a directory its files.
    let (s, root) = get_key(&c, 0, "", None).await;
    assert_eq!(s, 200);
    assert_eq!(root["type"], json!("directory"));
    assert_eq!(root["path"], json!("keys"));
    let paths: Vec<&str> = root["resources"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["keys/ops", "keys/web"]);
    assert!(root["resources"].as_array().unwrap().iter().all(|r| r["type"] == "directory"));
    let (s, ops) = get_key(&c, 0, "ops/", None).await;
    assert_eq!(s, 200);
    assert_eq!(ops["path"], json!("keys/ops"));
    let names: Vec<&str> = ops["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["db.password", "id_rsa", "id_rsa.pub"]);
    assert_eq!(ops["resources"][0]["meta"]["Rundeck-data-type"], json!("password"));
    let no_slash = c.req(0, Method::GET, "/api/45/storage/keys").send().await.unwrap();
    assert_eq!(no_slash.status(), 200);

    // POST never replaces, PUT never creates; PUT replaces the value and may change the type.
    let (s, e) = put_key(&c, 0, Method::POST, "ops/db.password", PASSWORD, "again").await;
    assert_eq!(s, 409);
    assert_envelope(&e, "api.error.item.alreadyexists");
    let (s, e) = put_key(&c, 0, Method::PUT, "ops/missing", PASSWORD, "x").await;
    assert_eq!(s, 404);
    assert_envelope(&e, "api.error.item.doesnotexist");
    let (s, m) = put_key(&c, 0, Method::PUT, "ops/db.password", PASSWORD, "longer-s3cret").await;
    assert_eq!(s, 200);
    assert_eq!(m["meta"]["Rundeck-content-size"], json!("13"));
    assert_eq!(m["meta"]["Rundeck-content-creation-time"], pw["meta"]["Rundeck-content-creation-time"]);

    // The job engine's view: the plaintext, and masked output.
    let store = &c.server(0).keys;
    let secret = steward::keys::resolve(store, "keys/ops/db.password").await.unwrap();
    assert_eq!(secret.as_str(), Some("longer-s3cret"));
    let same = steward::keys::resolve(store, "/keys/ops/db.password").await.unwrap();
    assert_eq!(same.expose(), secret.expose());
    assert_eq!(steward::keys::mask("pw=longer-s3cret;", &[secret]), "pw=[SECURE];");
    assert!(steward::keys::resolve(store, "keys/ops/nope").await.is_err());

    let r = c.req(0, Method::DELETE, "/api/45/storage/keys/ops/db.password").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get_key(&c, 0, "ops/db.password", None).await.0, 404);
    let r = c.req(0, Method::DELETE, "/api/45/storage/keys/ops/db.password").send().await.unwrap();
    assert_eq!(r.status(), 404, "deleting a missing key");
    c.shutdown().await;
}

fn small_values(c: &mut steward::config::Config) {
    default_tune(c);
    c.keys.max_value_bytes = 1024;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_input_gets_a_clear_4xx_with_the_envelope_and_stores_nothing() {
    let c = TestCluster::start_with(1, small_values).await;
    let token = c.token.clone();
    let auth = [("X-Rundeck-Auth-Token", token.as_str()), ("Content-Type", PASSWORD)];
    let addr = c.slots[0].http;
    // Sent raw: an HTTP client would resolve `..` itself before sending.
    for path in ["a/../b", "..", "a/%2e%2e/b", "a//b", "a/./b", "a/"] {
        let (s, e) = raw_request(addr, "POST", &format!("/api/45/storage/keys/{path}"), &auth, b"value").await;
        assert_eq!(s, 400, "POST {path}: {e}");
        assert_envelope(&e, "api.error.invalid.request");
    }
    let (s, e) = raw_request(addr, "GET", "/api/45/storage/keys/a/../../etc", &auth, b"").await;
    assert_eq!(s, 400, "GET with ..: {e}");

    let (s, e) = put_key(&c, 0, Method::POST, "empty", PASSWORD, "").await;
    assert_eq!(s, 400, "empty value");
    assert!(e["message"].as_str().unwrap().contains("empty"), "{e}");
    let (s, e) = put_key(&c, 0, Method::POST, "big", PASSWORD, &"x".repeat(1025)).await;
    assert_eq!(s, 413, "oversized value");
    assert_envelope(&e, "api.error.invalid.request");
    assert!(e["message"].as_str().unwrap().contains("1024"), "names the limit: {e}");
    assert_eq!(put_key(&c, 0, Method::POST, "exactly", PASSWORD, &"x".repeat(1024)).await.0, 201, "at the limit");
    for ctype in ["text/plain", "application/json", ""] {
        let (s, e) = put_key(&c, 0, Method::POST, "typed", ctype, "v").await;
        assert_eq!(s, 415, "content type {ctype:?}");
        assert_envelope(&e, "api.error.invalid.request");
        assert!(e["message"].as_str().unwrap().contains("application/x-rundeck-data-password"), "{e}");
    }
    // A key under a key, and a key where a directory is.
    assert_eq!(put_key(&c, 0, Method::POST, "dir/file", PASSWORD, "v").await.0, 201);
    let (s, e) = put_key(&c, 0, Method::POST, "dir/file/below", PASSWORD, "v").await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = put_key(&c, 0, Method::POST, "dir", PASSWORD, "v").await;
    assert_eq!(s, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("directory"), "{e}");

    let (_, root) = get_key(&c, 0, "", None).await;
    let paths: Vec<&str> = root["resources"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["keys/dir", "keys/exactly"], "only the valid writes were stored");
    c.shutdown().await;
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The ways a value could appear in a file without being sealed: as is, hex, and base64 in
/// both alphabets at each of the three alignments it could have inside a longer encoded run.
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let b = secret.as_bytes();
    let mut out = vec![b.to_vec(), hex::encode(b).into_bytes()];
    for engine in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE] {
        for pad in 0..3 {
            let mut data = vec![b'#'; pad];
            data.extend_from_slice(b);
            let enc = engine.encode(&data);
            // Skip the quantum the prefix touches and the last one (padding depends on length).
            let start = if pad == 0 { 0 } else { 4 };
            out.push(enc.as_bytes()[start..enc.len() - 4].to_vec());
        }
    }
    out
}

fn snapshot_often(c: &mut steward::config::Config) {
    default_tune(c);
    c.cluster.snapshot_every = 20;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_member_keeps_a_plaintext_secret_in_its_log_store_or_snapshots() {
    let mut c = TestCluster::start_with(3, snapshot_often).await;
    let leader = c.leader().await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let password = format!("pw-{tag}-hunter2");
    let private = format!("-----BEGIN OPENSSH PRIVATE KEY----- {tag} -----END");
    let updated = format!("rotated-{tag}");
    let user_password = format!("login-{tag}");
    // Through a follower (forwarded to the leader), a replaced value, and a user's password.
    assert_eq!(put_key(&c, follower, Method::POST, "db/password", PASSWORD, &password).await.0, 201);
    assert_eq!(put_key(&c, leader, Method::POST, "ssh/id", PRIVATE, "first").await.0, 201);
    assert_eq!(put_key(&c, follower, Method::PUT, "ssh/id", PRIVATE, &private).await.0, 200);
    assert_eq!(put_key(&c, leader, Method::POST, "db/other", PASSWORD, &updated).await.0, 201);
    let r = c
        .req(follower, Method::POST, "/api/45/users")
        .json(&json!({ "login": "carol", "password": user_password, "groups": ["ops"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Enough further writes that every member builds a snapshot covering the secrets.
    for n in 0..30 {
        assert_eq!(put_key(&c, leader, Method::POST, &format!("filler/k{n}"), PASSWORD, "filler").await.0, 201);
    }
    let applied = c.server(leader).member.kv().applied_index();
    c.wait_applied(applied).await;
    wait_for(Duration::from_secs(15), "a snapshot on every member", || async {
        c.running()
            .all(|i| c.server(i).member.raft().metrics().borrow().snapshot.is_some_and(|s| s.index > 30))
            .then_some(())
    })
    .await;
    let store = &c.server(follower).keys;
    assert_eq!(steward::keys::resolve(store, "keys/db/password").await.unwrap().as_str(), Some(password.as_str()));
    for i in 0..3 {
        c.stop(i).await;
    }

    let mut all = Vec::new();
    for i in 0..3 {
        files(&c.data_dir(i), &mut all);
    }
    assert!(all.iter().any(|p| p.to_string_lossy().contains("snapshots")), "snapshot files were written");
    let contents: Vec<(std::path::PathBuf, Vec<u8>)> =
        all.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let found = |needle: &[u8]| contents.iter().filter(|(_, d)| d.windows(needle.len()).any(|w| w == needle)).count();
    // The scan does see the store's contents: key paths are metadata, kept in clear.
    assert!(found(b"keys/db/password") > 0, "the scan reads the members' files");
    for secret in [&password, &private, &updated, &user_password, &tag] {
        for needle in encodings(secret) {
            let hits: Vec<_> = contents
                .iter()
                .filter(|(_, d)| d.windows(needle.len()).any(|w| w == needle.as_slice()))
                .map(|(p, _)| p.display().to_string())
                .collect();
            assert!(hits.is_empty(), "{:?} found in {hits:?}", String::from_utf8_lossy(&needle));
        }
    }
    let g = std::mem::replace(&mut c, TestCluster::start(0).await);
    g.shutdown().await;
}

async fn rekey(c: &TestCluster, i: usize, id: &str) -> (u16, Value) {
    body(c.req(i, Method::POST, "/api/45/system/keys/rekey").json(&json!({ "keyId": id })).send().await.unwrap()).await
}

fn write_key(dir: &Path, name: &str, key: &MasterKey) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_hex().as_str())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_reseals_everything_once_every_member_holds_the_new_key() {
    let mut c = TestCluster::start(2).await;
    c.leader().await;
    assert_eq!(put_key(&c, 0, Method::POST, "a/pw", PASSWORD, "old-secret-1").await.0, 201);
    assert_eq!(put_key(&c, 1, Method::POST, "a/pub", PUBLIC, "ssh-rsa PUBLIC").await.0, 201);
    let old = MasterKey::parse(&c.master_key).unwrap();
    let new = MasterKey::generate();
    let old_file = write_key(c.root.path(), "old.key", &old);
    let new_file = write_key(c.root.path(), "new.key", &new);
    let new_id = new.id().to_string();

    let (s, e) = rekey(&c, 0, &new_id).await;
    assert_eq!(s, 409, "no member holds the key yet: {e}");
    assert!(e["message"].as_str().unwrap().contains("not"), "{e}");

    // Member 0 seals under the new key and still opens the old one; member 1 does not yet.
    let reconfigure = |c: &mut TestCluster, i: usize, previous: Vec<std::path::PathBuf>| {
        c.slots[i].config.keys.master_key = None;
        c.slots[i].config.keys.master_key_file = Some(new_file.clone());
        c.slots[i].config.keys.previous_master_key_files = previous;
    };
    c.stop(0).await;
    reconfigure(&mut c, 0, vec![old_file.clone()]);
    c.restart(0).await;
    let uuid1 = c.slots[1].uuid.clone();
    wait_for(Duration::from_secs(10), "the rekey names member 1 as lacking the key", || async {
        let (s, e) = rekey(&c, 0, &new_id).await;
        let msg = e["message"].as_str().unwrap_or_default().to_string();
        (s == 409 && msg.contains(&uuid1) && !msg.contains(&c.slots[0].uuid)).then_some(())
    })
    .await;
    // Values written now are sealed under the new key and read on both members.
    assert_eq!(put_key(&c, 0, Method::POST, "a/during", PASSWORD, "during-rotation").await.0, 201);

    c.stop(1).await;
    reconfigure(&mut c, 1, vec![old_file.clone()]);
    c.restart(1).await;
    let done = wait_for(Duration::from_secs(10), "the rekey succeeds", || async {
        let (s, v) = rekey(&c, 1, &new_id).await;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(done["keyId"], json!(new_id));
    // Two keys and the session signing key were under the old key.
    assert_eq!(done["resealed"], json!(3), "{done}");
    // Again, with the command an operator runs: nothing is left to re-seal.
    let args: Vec<String> = vec![
        "keys".into(),
        "rekey".into(),
        "--new-master-key-file".into(),
        new_file.display().to_string(),
        "--url".into(),
        c.url(0),
        "--token".into(),
        c.token.clone(),
    ];
    let cwd = c.root.path().to_path_buf();
    let (status, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_steward(&args, &cwd)
    })
    .await
    .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains(&new_id) && out.contains("0 values re-sealed"), "{out}");

    // Without the old key, everything still opens.
    for i in 0..2 {
        c.stop(i).await;
        reconfigure(&mut c, i, vec![]);
        c.restart(i).await;
    }
    c.leader().await;
    let store = KeyStore::new(c.server(1).member.clone(), std::sync::Arc::new(Keyring::new(new.clone(), vec![])), 1024);
    assert_eq!(steward::keys::resolve(&store, "keys/a/pw").await.unwrap().as_str(), Some("old-secret-1"));
    assert_eq!(steward::keys::resolve(&store, "keys/a/during").await.unwrap().as_str(), Some("during-rotation"));
    let r = c.req(0, Method::GET, "/api/45/storage/keys/a/pub").header("accept", PUBLIC).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ssh-rsa PUBLIC");
    // A member holding only the old key reads nothing, and says why.
    let stale = KeyStore::new(c.server(0).member.clone(), std::sync::Arc::new(Keyring::new(old, vec![])), 1024);
    let err = steward::keys::resolve(&stale, "keys/a/pw").await.unwrap_err().to_string();
    assert!(err.contains(&new_id), "{err}");

    // And a newcomer with the old key is refused before it joins.
    let mut config = c.member_config(2);
    config.keys.master_key = Some(steward::config::SecretText(c.master_key.clone()));
    let dir = config.data_dir.clone();
    let err = match steward::server::Server::start(config).await {
        Ok(_) => panic!("a member without the active master key joined"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("master key") && err.contains(&new_id), "{err}");
    assert!(!dir.exists());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_any_master_key_cannot_join() {
    let c = TestCluster::start(1).await;
    let mut config = c.member_config(1);
    config.keys.master_key = None;
    let dir = config.data_dir.clone();
    let err = match steward::server::Server::start(config).await {
        Ok(_) => panic!("joined without a master key"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("master-key-file"), "the error says what to give: {err}");
    assert!(!dir.exists());
    c.shutdown().await;
}

#[test]
fn new_master_key_writes_an_owner_only_file_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (status, out) = run_steward(&["keys", "new-master-key", "--out", "m.key"], dir.path());
    assert!(status.success(), "{out}");
    let path = dir.path().join("m.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let key = MasterKey::read_file(&path).unwrap();
    assert!(out.contains(&key.id().to_string()), "names the key id: {out}");
    let (status, out) = run_steward(&["keys", "new-master-key", "--out", "m.key"], dir.path());
    assert!(!status.success(), "overwrote a key file: {out}");
    assert_eq!(MasterKey::read_file(&path).unwrap().id(), key.id(), "the file is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_key_the_first_member_generates_one_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let c = TestCluster::start(0).await;
    let mut config = c.member_config(0);
    config.keys.master_key = None;
    let dir = config.data_dir.clone();
    let server = steward::server::Server::start(config).await.unwrap();
    let file = dir.join("master.key");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let key = MasterKey::read_file(&file).unwrap();
    // It is the key the cluster seals under.
    assert_eq!(steward::keys::active_key_caught_up(&server.member).await.unwrap(), Some(key.id()));
    server.shutdown().await;
}
