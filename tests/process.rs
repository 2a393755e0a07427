//! Real `steward` processes: SIGKILL, SIGTERM, restarts, exit codes, files and the CLI.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::fixture::process::{free_addr_pair, run_steward, ProcCluster, BIN};
use crate::fixture::wait_for;

async fn create(c: &ProcCluster, i: usize, name: &str) -> u16 {
    c.req(i, Method::POST, "/api/45/projects")
        .json(&json!({ "name": name }))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn names(c: &ProcCluster, i: usize) -> Option<Vec<String>> {
    let r = c.req(i, Method::GET, "/api/45/projects").send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    let mut n: Vec<String> = v.as_array()?.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect();
    n.sort();
    Some(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_survive_sigkill_of_the_leader_and_a_restart_catches_up() {
    let mut c = ProcCluster::start(3).await;
    let leader_uuid = wait_for(Duration::from_secs(10), "a leader", || c.leader_uuid(0)).await;
    let mut uuids = Vec::new();
    for i in 0..3 {
        uuids.push(c.uuid(i).await);
    }
    let leader = uuids.iter().position(|u| *u == leader_uuid).unwrap();
    let mut acked = Vec::new();
    for n in 0..15 {
        let name = format!("k{n}");
        if create(&c, n % 3, &name).await == 201 {
            acked.push(name);
        }
    }
    assert_eq!(acked.len(), 15, "all writes acknowledged while healthy");
    c.kill(leader);
    let killed = Instant::now();
    let other = (0..3).find(|&i| i != leader).unwrap();
    let new_leader = wait_for(Duration::from_secs(5), "a new leader", || async {
        c.leader_uuid(other).await.filter(|u| *u != leader_uuid)
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert_ne!(new_leader, leader_uuid);
    acked.sort();
    for i in (0..3).filter(|&i| i != leader) {
        assert_eq!(names(&c, i).await, Some(acked.clone()), "process {i} after SIGKILL of the leader");
    }
    assert_eq!(create(&c, other, "after").await, 201);
    acked.push("after".into());
    acked.sort();
    c.spawn(leader);
    c.wait_healthy(leader).await;
    assert_eq!(c.uuid(leader).await, leader_uuid, "same member after restart");
    wait_for(Duration::from_secs(10), "restarted process has every write", || async {
        (names(&c, leader).await == Some(acked.clone())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_a_restart_is_the_same_member_with_the_same_data() {
    let mut c = ProcCluster::start(1).await;
    let uuid = c.uuid(0).await;
    assert_eq!(create(&c, 0, "kept").await, 201);
    let status = c.terminate(0).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    c.spawn(0);
    c.wait_healthy(0).await;
    assert_eq!(c.uuid(0).await, uuid);
    assert_eq!(names(&c, 0).await, Some(vec!["kept".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_secret_and_token_files_readable_only_by_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http, raft) = free_addr_pair();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--http", &http.to_string(), "--raft", &raft.to_string()])
        .env_remove("STEWARD_CLUSTER_SECRET")
        .env_remove("STEWARD_ADMIN_TOKEN")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(15), "member healthy", || async {
        let r = client.get(format!("http://{http}/health")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    for f in ["admin.token", "cluster.secret"] {
        let mode = std::fs::metadata(data.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} mode");
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let r = client
        .get(format!("http://{http}/api/45/projects"))
        .header("X-Rundeck-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the token in admin.token works");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let out = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(out.contains("admin.token"), "the log names the token file");
    assert!(!out.contains(&token), "the log never shows the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_a_follower_while_the_leader_is_frozen_is_answered_by_the_next_leader() {
    // A read forwarded to a stopped leader waited for it until its deadline, then failed with
    // 503, though a new leader had been elected long before (chaos seed 2).
    let c = ProcCluster::start(3).await;
    assert_eq!(create(&c, 0, "before").await, 201);
    let mut uuids = Vec::new();
    for i in 0..3 {
        uuids.push(c.uuid(i).await);
    }
    let leader_uuid = wait_for(Duration::from_secs(10), "a leader", || c.leader_uuid(0)).await;
    let leader = uuids.iter().position(|u| *u == leader_uuid).unwrap();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    assert_eq!(names(&c, follower).await, Some(vec!["before".to_string()]), "the follower knows the leader");
    c.signal(leader, libc::SIGSTOP);
    let r = c.req(follower, Method::GET, "/api/45/projects").send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    c.signal(leader, libc::SIGCONT);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("before"), "{text}");
}

/// A child process that is killed if the test ends (or fails) while it still runs: a newcomer
/// that cannot join would otherwise wait for its cluster for good.
struct KillChild(std::process::Child);

impl Drop for KillChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_waiting_for_its_cluster_stops_at_once_on_sigterm() {
    // A newcomer keeps asking to join for as long as it takes; a SIGTERM meanwhile used to wait
    // in the queue until the member was up.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http, raft) = free_addr_pair();
    let (nobody, _) = free_addr_pair();
    let log = dir.path().join("log");
    let mut child = KillChild(
        std::process::Command::new(BIN)
            .args(["serve", "--data-dir", data.to_str().unwrap()])
            .args(["--http", &http.to_string(), "--raft", &raft.to_string(), "--join", &format!("http://{nobody}")])
            .args(["--cluster-secret", &steward::datadir::random_secret()])
            .args(["--master-key", steward::keys::MasterKey::generate().to_hex().as_ref()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(15), "the newcomer retries its join", || async {
        std::fs::read_to_string(&log).ok()?.contains("join not possible yet").then_some(())
    })
    .await;
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < until, "the newcomer is still running 5 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("SIGTERM while starting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_a_busy_port_exits_non_zero_with_a_clear_message() {
    let c = ProcCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("newcomer");
    let (http, raft) = free_addr_pair();
    let (http, raft) = (http.to_string(), raft.to_string());
    let wrong = steward::datadir::random_secret();
    let (status, out) = run_steward(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--http",
            &http,
            "--raft",
            &raft,
            "--join",
            &c.procs[0].url(),
            "--cluster-secret",
            &wrong,
            "--master-key",
            &c.master_key,
        ],
        dir.path(),
    );
    assert!(!status.success());
    assert!(out.contains("secret"), "message names the secret: {out}");
    assert!(!data.exists(), "nothing half-made is left behind");
    assert!(c.procs[0].log_text().contains("wrong cluster secret"), "the refusal is logged on the member");

    let busy = c.procs[0].http.to_string();
    let (status, out) =
        run_steward(&["serve", "--data-dir", data.to_str().unwrap(), "--http", &busy, "--raft", &raft], dir.path());
    assert!(!status.success());
    assert!(out.contains("cannot listen on") && out.contains(&busy), "{out}");
    assert!(!data.exists());

    let (status, out) = run_steward(&["serve", "--data-dir", data.to_str().unwrap(), "--http", "nonsense"], dir.path());
    assert!(!status.success());
    assert!(out.contains("http"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_commands_show_status_and_make_a_member_leave() {
    let mut c = ProcCluster::start(3).await;
    let token = c.token.clone();
    let dir = c.root.path().to_path_buf();
    let url = c.procs[2].url();
    let (status, out) = run_steward(&["cluster", "status", "--url", &url, "--token", &token], &dir);
    assert!(status.success(), "{out}");
    assert_eq!(out.matches("active").count(), 3, "three active members:\n{out}");
    assert!(out.contains("leader"), "{out}");

    let leaver_uuid = c.uuid(2).await;
    let (status, out) = run_steward(&["cluster", "leave", "--url", &url, "--token", &token], &dir);
    assert!(status.success(), "{out}");
    // The member that left stops by itself.
    let child = c.procs[2].child.as_mut().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the member that left is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "clean exit after leaving: {exit}");
    c.procs[2].child = None;
    let (status, out) = run_steward(&["cluster", "status", "--url", &c.procs[0].url(), "--token", &token], &dir);
    assert!(status.success(), "{out}");
    assert!(!out.contains(&leaver_uuid), "the member is gone:\n{out}");
    assert_eq!(create(&c, 0, "after-leave").await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_standalone_member_joins_a_cluster_with_the_cluster_join_command() {
    let mut c = ProcCluster::start(2).await;
    assert_eq!(create(&c, 0, "shared").await, 201);
    let s = c.add_standalone().await;
    let own_token = std::fs::read_to_string(c.procs[s].data_dir.join("admin.token")).unwrap().trim().to_string();
    let dir = c.root.path().to_path_buf();
    let url = c.procs[s].url();
    let peer = c.procs[1].url();

    // A member that holds data is refused, and keeps its data.
    let r = c
        .http
        .post(format!("{url}/api/45/projects"))
        .header("X-Rundeck-Auth-Token", &own_token)
        .json(&json!({ "name": "local-only" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, out) = run_steward(&["cluster", "join", "--url", &url, "--token", &own_token, "--peer", &peer], &dir);
    assert!(!status.success() && out.contains("holds data"), "{out}");
    let r = c
        .http
        .delete(format!("{url}/api/45/project/local-only"))
        .header("X-Rundeck-Auth-Token", &own_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Another cluster's master key is refused by the peer before this member drops anything.
    let wrong_key = dir.join("other.key");
    let out = run_steward(&["keys", "new-master-key", "--out", wrong_key.to_str().unwrap()], &dir);
    assert!(out.0.success(), "{}", out.1);
    let (status, out) = run_steward(
        &[
            "cluster",
            "join",
            "--url",
            &url,
            "--token",
            &own_token,
            "--peer",
            &peer,
            "--master-key-file",
            wrong_key.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(!status.success() && out.contains("master key"), "{out}");
    let r =
        c.http.get(format!("{url}/api/45/projects")).header("X-Rundeck-Auth-Token", &own_token).send().await.unwrap();
    assert_eq!(r.status(), 200, "still its own cluster, with its own token: nothing was dropped");

    let (status, out) = run_steward(&["cluster", "join", "--url", &url, "--token", &own_token, "--peer", &peer], &dir);
    assert!(status.success(), "{out}");
    // It restarts itself into the cluster: the cluster's token now works on it and it serves
    // the cluster's data.
    wait_for(Duration::from_secs(20), "the member serves the cluster's projects", || async {
        (names(&c, s).await == Some(vec!["shared".to_string()])).then_some(())
    })
    .await;
    let r = c.req(0, Method::GET, "/api/45/cluster/members").send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let uuid = c.uuid(s).await;
    assert!(v["members"].as_array().unwrap().iter().any(|m| m["id"] == json!(uuid)), "{v}");
    assert!(!c.procs[s].data_dir.join("admin.token").exists(), "the old cluster's token file is gone");
}
