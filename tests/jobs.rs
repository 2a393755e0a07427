//! The job engine as a user sees it: imports, runs, schedules fired exactly once, output from
//! any member, timeouts, aborts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use steward::engine::catalog::Catalog;
use steward::engine::fire::{fire_batch, interpret, DueSlot, SlotAction, SlotResult};

use crate::fixture::{wait_for, TestCluster};

async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Imports a YAML document into `project` through member `i`; returns Rundeck's answer.
async fn import(c: &TestCluster, i: usize, project: &str, yaml: &str) -> Value {
    let r = c
        .req(i, Method::POST, &format!("/api/45/project/{project}/jobs/import?dupeOption=update"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 200, "import: {v}");
    v
}

async fn execution(c: &TestCluster, i: usize, id: u64) -> Value {
    let (status, v) = body(c.req(i, Method::GET, &format!("/api/45/execution/{id}")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn run_job(c: &TestCluster, i: usize, job: &str, req: Value) -> (u16, Value) {
    body(c.req(i, Method::POST, &format!("/api/45/job/{job}/run")).json(&req).send().await.unwrap()).await
}

/// Waits until execution `id` has ended; returns its record.
async fn ended(c: &TestCluster, i: usize, id: u64, within: Duration) -> Value {
    wait_for(within, &format!("execution {id} ends"), || async {
        let v = execution(c, i, id).await;
        (!["running", "scheduled"].contains(&v["status"].as_str().unwrap_or(""))).then_some(v)
    })
    .await
}

/// Sets one key of `project`'s config through member 0; returns the answer.
async fn set_project_config(c: &TestCluster, project: &str, key: &str, value: &str) -> (u16, Value) {
    let path = format!("/api/45/project/{project}/config/{key}");
    body(c.req(0, Method::PUT, &path).json(&json!({ "value": value })).send().await.unwrap()).await
}

/// The jobs member 0 owns, as `/cluster/members` counts them (one-member clusters).
async fn owned_jobs(c: &TestCluster) -> u64 {
    let (s, v) = body(c.req(0, Method::GET, "/api/45/cluster/members").send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    v["members"][0]["ownedJobs"].as_u64().unwrap()
}

async fn all_executions(c: &TestCluster, i: usize, project: &str) -> Vec<Value> {
    let (status, v) =
        body(c.req(i, Method::GET, &format!("/api/45/project/{project}/executions?max=100000")).send().await.unwrap())
            .await;
    assert_eq!(status, 200, "{v}");
    v["executions"].as_array().unwrap().clone()
}

async fn output_lines(c: &TestCluster, i: usize, id: u64) -> (Vec<String>, Value) {
    let (status, v) =
        body(c.req(i, Method::GET, &format!("/api/45/execution/{id}/output")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    let lines = v["entries"].as_array().unwrap().iter().map(|e| e["log"].as_str().unwrap_or("").to_string()).collect();
    (lines, v)
}

fn job_id(answer: &Value, name: &str) -> String {
    answer["succeeded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == json!(name))
        .unwrap_or_else(|| panic!("job {name} not imported: {answer}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_every_slot_exactly_once_while_the_leader_is_killed_and_restarted() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    // The job's owner is a follower: killing the leader must not stop or double its fires.
    let owner = (0..3).find(|&i| i != leader).unwrap();
    assert_eq!(c.create_project(owner, "sched").await, 201);
    let answer = import(
        &c,
        owner,
        "sched",
        "- name: tick\n  schedule:\n    crontab: '* * * * * ? *'\n  multipleExecutions: true\n  sequence:\n    commands:\n      - exec: 'true'\n",
    )
    .await;
    let job = job_id(&answer, "tick");
    let started = Instant::now();
    let at = |s: u64| started + Duration::from_secs(s);
    tokio::time::sleep_until(at(8).into()).await;
    c.stop(leader).await;
    let new_leader = c.leader_within(Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    tokio::time::sleep_until(at(16).into()).await;
    c.restart(leader).await;
    tokio::time::sleep_until(at(30).into()).await;
    let r = c.req(owner, Method::POST, &format!("/api/45/job/{job}/schedule/disable")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Every slot from the first to the last fire is recorded once, as a fire.
    let m = &c.server(owner).member;
    m.read_barrier().await.unwrap();
    let fires = m.kv().range(&format!("fires/{job}/")).unwrap();
    let slots: Vec<i64> = fires.iter().map(|(k, _)| k.rsplit('/').next().unwrap().parse().unwrap()).collect();
    let (first, last) = (*slots.iter().min().unwrap(), *slots.iter().max().unwrap());
    assert!(last - first >= 27_000, "fired for about 30 s: {first}..{last}");
    let expected: BTreeSet<i64> = (0..=(last - first) / 1000).map(|k| first + k * 1000).collect();
    let got: BTreeSet<i64> = slots.iter().copied().collect();
    assert_eq!(got, expected, "a slot is missing");
    for (k, kv) in &fires {
        let rec: Value = serde_json::from_slice(&kv.value[1..]).unwrap();
        assert_eq!(rec["outcome"], json!("fired"), "{k}: {rec}");
    }
    // …and has exactly one execution.
    let execs = all_executions(&c, owner, "sched").await;
    let mut per_slot: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &execs {
        *per_slot.entry(e["dateScheduled"]["unixtime"].as_i64().unwrap()).or_default() += 1;
    }
    let doubled: Vec<_> = per_slot.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "slots run twice: {doubled:?}");
    assert_eq!(per_slot.keys().copied().collect::<BTreeSet<_>>(), expected, "one execution per slot");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_firing_the_same_slot_commit_it_once_and_a_stale_owner_not_at_all() {
    let c = TestCluster::start(3).await;
    assert_eq!(c.create_project(0, "race").await, 201);
    let answer = import(
        &c,
        0,
        "race",
        "- name: yearly\n  schedule:\n    crontab: '0 0 0 1 1 ? *'\n  sequence:\n    commands:\n      - exec: 'true'\n",
    )
    .await;
    let job = job_id(&answer, "yearly");
    c.wait_applied(c.server(0).member.kv().applied_index()).await;
    let entry = |i: usize| Catalog::new(c.server(i).member.clone()).job_entry(&job).unwrap().unwrap();
    let (e0, e1) = (entry(0), entry(1));
    let slot = 1_700_000_000_000;
    // Member 1 believes it owns the job too (the same owner record): only the slot guard stands
    // between the two.
    let slots0 = [DueSlot { job: &e0.job, slot_ms: slot, action: SlotAction::Fire, runs_on: None }];
    let slots1 = [DueSlot { job: &e1.job, slot_ms: slot, action: SlotAction::Fire, runs_on: None }];
    let (m0, m1) = (c.server(0).member.clone(), c.server(1).member.clone());
    let (t0, t1) = (fire_batch("m0", None, &slots0, slot), fire_batch("m1", None, &slots1, slot));
    let (r0, r1) = tokio::join!(m0.write(t0), m1.write(t1));
    let outcomes = [interpret(&slots0, &r0.unwrap())[0], interpret(&slots1, &r1.unwrap())[0]];
    let fired = outcomes.iter().filter(|o| matches!(o, SlotResult::Fired(_))).count();
    assert_eq!(fired, 1, "{outcomes:?}");
    assert!(outcomes.contains(&SlotResult::AlreadyRecorded), "{outcomes:?}");

    // A member holding an older owner record fires nothing.
    let mut stale = e1.job.clone();
    stale.owner_record = br#"{"member":"someone-else","epoch":0}"#.to_vec();
    let other = [DueSlot { job: &stale, slot_ms: slot + 1000, action: SlotAction::Fire, runs_on: None }];
    let r = m1.write(fire_batch("m1", None, &other, slot)).await.unwrap();
    assert_eq!(interpret(&other, &r), vec![SlotResult::NotOwner]);
    assert!(m1.kv().get(&format!("fires/{job}/{}", slot + 1000)).unwrap().is_none());
    let execs = all_executions(&c, 2, "race").await;
    assert_eq!(execs.len(), 1, "one execution for the slot");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_output_is_readable_on_another_member_before_it_ends() {
    let c = TestCluster::start(2).await;
    assert_eq!(c.create_project(0, "out").await, 201);
    let gate = c.root.path().join("gate");
    let yaml = "- name: slow\n  options:\n    - name: gate\n  sequence:\n    commands:\n      - script: |\n          echo first line\n          \
                while [ ! -e \"$RD_OPTION_GATE\" ]; do sleep 0.05; done\n          echo last line\n";
    let job = job_id(&import(&c, 0, "out", yaml).await, "slow");
    let (status, e) = run_job(&c, 0, &job, json!({ "options": { "gate": gate.to_str().unwrap() } })).await;
    assert_eq!(status, 200, "{e}");
    let id = e["id"].as_u64().unwrap();
    // Member 1 serves the output of the execution member 0 runs, while it runs.
    let v = wait_for(Duration::from_secs(10), "the first line on the other member", || async {
        let (lines, v) = output_lines(&c, 1, id).await;
        lines.contains(&"first line".to_string()).then_some(v)
    })
    .await;
    assert_eq!(v["execCompleted"], json!(false), "read before the end: {v}");
    assert_eq!(v["completed"], json!(false));
    std::fs::write(&gate, b"").unwrap();
    let done = ended(&c, 1, id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], json!("succeeded"));
    let (lines, v) = output_lines(&c, 1, id).await;
    assert_eq!(lines, vec!["first line", "last line"]);
    assert_eq!(v["completed"], json!(true));
    c.shutdown().await;
}

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_process_group_grandchildren_too() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "to").await, 201);
    let yaml = "- name: hang\n  timeout: 1s\n  sequence:\n    commands:\n      - script: |\n          \
                sh -c 'sleep 1000 & echo grandchild $!; wait' &\n          wait\n";
    let job = job_id(&import(&c, 0, "to", yaml).await, "hang");
    let (_, e) = run_job(&c, 0, &job, json!({})).await;
    let id = e["id"].as_u64().unwrap();
    let pid: i32 = wait_for(Duration::from_secs(10), "the grandchild's pid in the output", || async {
        let (lines, _) = output_lines(&c, 0, id).await;
        lines.iter().find_map(|l| l.strip_prefix("grandchild ").and_then(|p| p.trim().parse().ok()))
    })
    .await;
    let done = ended(&c, 0, id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], json!("timedout"), "{done}");
    wait_for(Duration::from_secs(10), "the grandchild is gone", || async { (!alive(pid)).then_some(()) }).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_stops_a_running_execution() {
    let c = TestCluster::start(2).await;
    assert_eq!(c.create_project(0, "ab").await, 201);
    let job = job_id(
        &import(&c, 0, "ab", "- name: long\n  sequence:\n    commands:\n      - exec: 'echo started; sleep 1000'\n")
            .await,
        "long",
    );
    let (_, e) = run_job(&c, 0, &job, json!({})).await;
    let id = e["id"].as_u64().unwrap();
    wait_for(Duration::from_secs(10), "the job started", || async {
        output_lines(&c, 0, id).await.0.contains(&"started".to_string()).then_some(())
    })
    .await;
    // Asked on the other member; the member that runs it stops it.
    let (status, a) =
        body(c.req(1, Method::POST, &format!("/api/45/execution/{id}/abort")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["abort"]["status"], json!("pending"));
    let done = ended(&c, 1, id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], json!("aborted"));
    let (running_status, running) =
        body(c.req(1, Method::GET, "/api/45/project/ab/executions/running").send().await.unwrap()).await;
    assert_eq!(running_status, 200);
    assert_eq!(running["paging"]["total"], json!(0), "{running}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_history_filters_by_job_status_and_time_and_refuses_a_bad_time() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "hist").await, 201);
    let yaml = "- name: ok\n  sequence:\n    commands:\n      - exec: 'true'\n\
                - name: bad\n  sequence:\n    commands:\n      - exec: 'false'\n";
    let answer = import(&c, 0, "hist", yaml).await;
    let (ok, bad) = (job_id(&answer, "ok"), job_id(&answer, "bad"));
    let mut ids = Vec::new();
    for job in [&ok, &bad, &ok] {
        let (status, e) = run_job(&c, 0, job, json!({})).await;
        assert_eq!(status, 200, "{e}");
        let id = e["id"].as_u64().unwrap();
        ended(&c, 0, id, Duration::from_secs(15)).await;
        ids.push(id);
    }
    let list = |query: String| {
        let c = &c;
        async move {
            let (status, v) =
                body(c.req(0, Method::GET, &format!("/api/45/project/hist/executions?{query}")).send().await.unwrap())
                    .await;
            assert_eq!(status, 200, "{query}: {v}");
            let got: Vec<u64> = v["executions"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
            (got, v["paging"]["total"].as_u64().unwrap())
        }
    };
    // Newest first; by job, by status; paged.
    assert_eq!(list(String::new()).await, (vec![ids[2], ids[1], ids[0]], 3));
    assert_eq!(list(format!("jobIdListFilter={ok}")).await, (vec![ids[2], ids[0]], 2));
    assert_eq!(list("statusFilter=failed".into()).await, (vec![ids[1]], 1));
    assert_eq!(list("max=1&offset=1".into()).await, (vec![ids[1]], 3));
    // Time bounds, in ms or ISO-8601: the second run's start bounds the last two.
    let second = execution(&c, 0, ids[1]).await;
    let started = second["date-started"]["unixtime"].as_i64().expect("a start time");
    assert_eq!(list(format!("begin={started}")).await.0, vec![ids[2], ids[1]]);
    let iso = chrono::DateTime::from_timestamp_millis(started).unwrap().to_rfc3339();
    assert_eq!(list(format!("end={}", iso.replace('+', "%2B"))).await.0, vec![ids[1], ids[0]]);
    // A time that is neither is refused, not ignored.
    let (status, v) =
        body(c.req(0, Method::GET, "/api/45/project/hist/executions?begin=yesterday").send().await.unwrap()).await;
    assert_eq!(status, 400, "{v}");
    crate::fixture::assert_envelope(&v, "api.error.invalid.request");
    assert!(v["message"].as_str().unwrap_or("").contains("begin 'yesterday'"), "{v}");
    c.shutdown().await;
}

/// Where member `i` keeps the log of execution `id` (the local log store's layout).
fn log_dir(c: &TestCluster, i: usize, id: u64) -> std::path::PathBuf {
    c.data_dir(i).join("logs").join("executions").join(id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_executions_are_gone_with_their_logs_on_the_member_that_ran_them_and_a_running_one_is_kept() {
    let mut c = TestCluster::start(3).await;
    c.leader().await;
    assert_eq!(c.create_project(0, "del").await, 201);
    let yaml = "- name: quick\n  sequence:\n    commands:\n      - exec: echo hello\n\
                - name: slow\n  sequence:\n    commands:\n      - exec: sleep 30\n";
    let answer = import(&c, 0, "del", yaml).await;
    let (quick, slow) = (job_id(&answer, "quick"), job_id(&answer, "slow"));
    // Run on member 1 (a run is placed on the member asked), deleted through member 0.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, e) = run_job(&c, 1, &quick, json!({})).await;
        assert_eq!(status, 200, "{e}");
        let id = e["id"].as_u64().unwrap();
        ended(&c, 1, id, Duration::from_secs(15)).await;
        ids.push(id);
    }
    assert!(log_dir(&c, 1, ids[0]).exists(), "the log is on the member that ran it");

    let r = c.req(0, Method::DELETE, &format!("/api/45/execution/{}", ids[0])).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for i in 0..2 {
        let (s, v) = body(c.req(i, Method::GET, &format!("/api/45/execution/{}", ids[0])).send().await.unwrap()).await;
        assert_eq!(s, 404, "member {i}: {v}");
        let (s, v) =
            body(c.req(i, Method::GET, &format!("/api/45/execution/{}/output", ids[0])).send().await.unwrap()).await;
        assert_eq!(s, 404, "member {i}: {v}");
    }
    wait_for(Duration::from_secs(10), "member 1 removes the deleted execution's log", || async {
        (!log_dir(&c, 1, ids[0]).exists()).then_some(())
    })
    .await;
    assert!(log_dir(&c, 1, ids[1]).exists(), "the others' logs stay");
    let r = c.req(0, Method::DELETE, &format!("/api/45/execution/{}", ids[0])).send().await.unwrap();
    assert_eq!(r.status(), 404, "deleting twice");

    // A running execution is never deleted.
    let (_, e) = run_job(&c, 1, &slow, json!({})).await;
    let running = e["id"].as_u64().unwrap();
    let (s, v) = body(c.req(0, Method::DELETE, &format!("/api/45/execution/{running}")).send().await.unwrap()).await;
    assert_eq!(s, 409, "{v}");
    crate::fixture::assert_envelope(&v, "api.error.exec.delete.failed");
    assert_eq!(execution(&c, 0, running).await["status"], json!("running"));

    // In bulk: each id succeeds or says why not.
    let r = c
        .req(0, Method::POST, "/api/45/executions/delete")
        .json(&json!({ "ids": [ids[1], "x", 999_999, running.to_string()] }))
        .send()
        .await
        .unwrap();
    let (s, v) = body(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["requestCount"].clone(), v["successCount"].clone(), v["failedCount"].clone()),
        (json!(4), json!(1), json!(3)),
        "{v}"
    );
    assert_eq!(v["allsuccessful"], json!(false));
    let failed: Vec<&str> = v["failures"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(failed, vec!["x", "999999", running.to_string().as_str()], "{v}");
    let (s, v) = body(c.req(0, Method::POST, "/api/45/executions/delete").json(&json!({})).send().await.unwrap()).await;
    assert_eq!(s, 400, "no ids: {v}");

    // A job's whole history, while the member that ran it is down: it removes the logs when
    // it is back.
    let r = c.req(0, Method::POST, &format!("/api/45/execution/{running}/abort")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    ended(&c, 0, running, Duration::from_secs(15)).await;
    c.stop(1).await;
    let (s, v) = body(c.req(0, Method::DELETE, &format!("/api/45/job/{quick}/executions")).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["successCount"].clone(), v["allsuccessful"].clone()), (json!(1), json!(true)), "{v}");
    assert!(log_dir(&c, 1, ids[2]).exists());
    c.restart(1).await;
    let left: Vec<u64> = all_executions(&c, 1, "del").await.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(left, vec![running], "only the other job's execution is left");
    wait_for(Duration::from_secs(10), "every deleted log is gone", || async {
        ids.iter().all(|id| !log_dir(&c, 1, *id).exists()).then_some(())
    })
    .await;
    assert!(log_dir(&c, 1, running).exists());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_history_cleanup_deletes_old_executions_and_keeps_its_newest_and_a_bad_setting_is_refused() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "tidy").await, 201);
    let answer = import(&c, 0, "tidy", "- name: quick\n  sequence:\n    commands:\n      - exec: echo hi\n").await;
    let quick = job_id(&answer, "quick");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (_, e) = run_job(&c, 0, &quick, json!({})).await;
        let id = e["id"].as_u64().unwrap();
        ended(&c, 0, id, Duration::from_secs(15)).await;
        ids.push(id);
    }
    let set = |key: &'static str, value: &'static str| set_project_config(&c, "tidy", key, value);
    // A value the cleanup could not act on is refused when written, and nothing changes.
    let (s, v) = set("project.execution.history.cleanup.retention.days", "a week").await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("retention.days"), "{v}");
    let (s, v) = set("project.execution.history.cleanup.schedule", "at noon").await;
    assert_eq!(s, 400, "{v}");
    // Keep the newest 2 of any age; clean every second.
    for (k, v) in [
        ("project.execution.history.cleanup.retention.days", "0"),
        ("project.execution.history.cleanup.retention.minimum", "2"),
        ("project.execution.history.cleanup.schedule", "* * * * * ? *"),
        ("project.execution.history.cleanup.enabled", "true"),
    ] {
        let (s, e) = set(k, v).await;
        assert_eq!(s, 200, "{k}: {e}");
    }
    let left = wait_for(Duration::from_secs(15), "the cleanup leaves the newest two", || async {
        let left: Vec<u64> = all_executions(&c, 0, "tidy").await.iter().map(|e| e["id"].as_u64().unwrap()).collect();
        (left.len() == 2).then_some(left)
    })
    .await;
    assert_eq!(left, vec![ids[3], ids[2]]);
    wait_for(Duration::from_secs(10), "the cleaned executions' logs are gone", || async {
        (!log_dir(&c, 0, ids[0]).exists() && !log_dir(&c, 0, ids[1]).exists()).then_some(())
    })
    .await;
    assert!(log_dir(&c, 0, ids[3]).exists());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_deletes_old_fire_records_but_a_jobs_latest_and_a_deleted_jobs_records_go_at_once() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "fired").await, 201);
    let every_second = |name: &str| {
        format!(
            "- name: {name}\n  schedule:\n    crontab: '* * * * * ? *'\n  multipleExecutions: true\n  \
             sequence:\n    commands:\n      - exec: 'true'\n"
        )
    };
    let answer = import(&c, 0, "fired", &format!("{}{}", every_second("tick"), every_second("gone"))).await;
    let (tick, gone) = (job_id(&answer, "tick"), job_id(&answer, "gone"));
    let m = &c.server(0).member;
    let slots = |job: &str| -> Vec<i64> {
        let prefix = format!("fires/{job}/");
        m.kv().range(&prefix).unwrap().iter().map(|(k, _)| k[prefix.len()..].parse().unwrap()).collect()
    };
    wait_for(Duration::from_secs(20), "both jobs fire four times", || async {
        (slots(&tick).len() >= 4 && slots(&gone).len() >= 4).then_some(())
    })
    .await;

    // A deleted job's records go without waiting for any cleanup; its executions stay.
    let r = c.req(0, Method::DELETE, &format!("/api/45/job/{gone}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    wait_for(Duration::from_secs(10), "the deleted job's fire records and links are gone", || async {
        (slots(&gone).is_empty() && m.kv().range(&format!("firexec/{gone}/")).unwrap().is_empty()).then_some(())
    })
    .await;

    let r = c.req(0, Method::POST, &format!("/api/45/job/{tick}/schedule/disable")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = wait_for(Duration::from_secs(15), "tick's runs end", || async {
        let execs = all_executions(&c, 0, "fired").await;
        execs.iter().all(|e| e["status"] != "running" && e["status"] != "scheduled").then(|| slots(&tick))
    })
    .await;
    let latest = *before.iter().max().unwrap();
    // Clean every second: executions of any age, but the newest one.
    for (k, v) in [
        ("project.execution.history.cleanup.retention.days", "0"),
        ("project.execution.history.cleanup.retention.minimum", "1"),
        ("project.execution.history.cleanup.schedule", "* * * * * ? *"),
        ("project.execution.history.cleanup.enabled", "true"),
    ] {
        let (s, e) = set_project_config(&c, "fired", k, v).await;
        assert_eq!(s, 200, "{k}: {e}");
    }
    let left = wait_for(Duration::from_secs(15), "the cleanup leaves one execution and few fire records", || async {
        let execs = all_executions(&c, 0, "fired").await;
        let left = slots(&tick);
        (execs.len() == 1 && left.len() <= 2).then_some(left)
    })
    .await;
    assert!(left.contains(&latest), "the job's latest record is kept: {left:?}, latest {latest}");
    for slot in left.iter().filter(|&&s| s != latest) {
        let link = m.kv().get(&format!("firexec/{tick}/{slot}")).unwrap();
        assert!(link.is_some(), "slot {slot} is kept only for its kept execution");
    }

    // The scheduler resumes after the latest record: no slot is decided twice.
    let r = c.req(0, Method::POST, &format!("/api/45/job/{tick}/schedule/enable")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after = wait_for(Duration::from_secs(15), "tick fires again", || async {
        let now = slots(&tick);
        (now.iter().filter(|&&s| s > latest).count() >= 2).then_some(now)
    })
    .await;
    let again: Vec<&i64> = after.iter().filter(|&&s| s <= latest && !left.contains(&s)).collect();
    assert!(again.is_empty(), "slots decided again after their records were pruned: {again:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_fire_records_pages_through_long_histories_and_never_takes_a_live_jobs_latest_which_the_scheduler_reads_alone(
) {
    use steward::engine::history::{prune_job_fires, prune_orphan_fires, FirePrune};
    use steward_storage::{kv::encode_seq, Op, Txn};
    let c = TestCluster::start(1).await;
    let m = &c.server(0).member;
    let base = 1_800_000_000_000i64;
    let slot = |k: i64| base + k * 1000;
    let put = |key: String, value: Vec<u8>| Op::Put { key, value };
    // "live" is a job; "dead", "dead-2" (before "dead/" in key order) and "deadx" (after it) are
    // not. Each has more records than one page holds, or a few.
    let mut ops = vec![put("jobidx/live".into(), b"x".to_vec())];
    for (job, n) in [("live", 2500), ("dead", 1100), ("dead-2", 3), ("deadx", 2)] {
        ops.extend((0..n).map(|k| put(format!("fires/{job}/{}", slot(k)), b"x".to_vec())));
    }
    // Slot 10's execution is kept; slot 11's was deleted (its link outlived it).
    ops.push(put(format!("firexec/live/{}", slot(10)), encode_seq(77)));
    ops.push(put(steward::engine::records::exec_key(77), b"x".to_vec()));
    ops.push(put(format!("firexec/live/{}", slot(11)), encode_seq(78)));
    ops.push(put(format!("firexec/dead/{}", slot(3)), encode_seq(79)));
    for chunk in ops.chunks(500) {
        assert!(m.write(Txn::ops(chunk.to_vec())).await.unwrap().succeeded);
    }
    let count = |prefix: &str| m.kv().range(prefix).unwrap().len();

    assert_eq!(prune_orphan_fires(m).await.unwrap(), 1105);
    assert_eq!(count("fires/live/"), 2500, "a live job's records are not orphans");
    for job in ["dead", "dead-2", "deadx"] {
        assert_eq!(count(&format!("fires/{job}/")), 0, "{job}");
    }
    assert_eq!(count("firexec/dead/"), 0);

    // Before a cutoff: all but the kept execution's.
    assert_eq!(prune_job_fires(m, "live", FirePrune::Before(slot(2000))).await.unwrap(), 1999);
    assert_eq!(count("fires/live/"), 501);
    assert!(m.kv().get(&format!("fires/live/{}", slot(10))).unwrap().is_some());
    assert!(m.kv().get(&format!("firexec/live/{}", slot(11))).unwrap().is_none());
    // With every slot past the cutoff, the latest stays too.
    assert_eq!(prune_job_fires(m, "live", FirePrune::Before(i64::MAX)).await.unwrap(), 499);
    let left: Vec<String> = m.kv().range("fires/live/").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, vec![format!("fires/live/{}", slot(10)), format!("fires/live/{}", slot(2499))]);
    // A job that exists is never pruned as a deleted one.
    assert_eq!(prune_job_fires(m, "live", FirePrune::All).await.unwrap(), 0);
    assert_eq!(count("fires/live/"), 2);

    // Where the scheduler resumes: the latest slot, read from the last key; a slot of another
    // form (a clock before 2001) is still compared as a number.
    use steward::engine::scheduler::latest_recorded_slot;
    assert_eq!(latest_recorded_slot(m.kv(), "live"), Some(slot(2499)));
    assert_eq!(latest_recorded_slot(m.kv(), "dead"), None);
    let odd =
        vec![put("fires/odd/999999999999".into(), b"x".to_vec()), put(format!("fires/odd/{}", slot(1)), b"x".to_vec())];
    assert!(m.write(Txn::ops(odd)).await.unwrap().succeeded);
    assert_eq!(latest_recorded_slot(m.kv(), "odd"), Some(slot(1)));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_clears_the_index_and_owner_of_a_job_whose_record_is_gone_and_nothing_of_a_live_job() {
    use steward_storage::{Op, Txn};
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "kept").await, 201);
    let answer = import(&c, 0, "kept", "- name: live\n  sequence:\n    commands:\n      - exec: 'true'\n").await;
    let live = job_id(&answer, "live");
    let m = &c.server(0).member;
    let before = owned_jobs(&c).await;
    // What a job made during its project's deletion leaves: its index and owner, no record.
    let owner = m.kv().get(&format!("owner/{live}")).unwrap().unwrap().value;
    let ops = vec![
        Op::Put { key: "jobidx/ghost".into(), value: steward::codec::encode(&"gone".to_string()) },
        Op::Put { key: "owner/ghost".into(), value: owner },
    ];
    assert!(m.write(Txn::ops(ops)).await.unwrap().succeeded);
    assert_eq!(owned_jobs(&c).await, before + 1, "the leftover owner is counted");

    assert_eq!(steward::engine::history::delete_orphan_jobs(m).await.unwrap(), 1);
    assert!(m.kv().get("jobidx/ghost").unwrap().is_none());
    assert!(m.kv().get("owner/ghost").unwrap().is_none());
    assert_eq!(owned_jobs(&c).await, before);
    assert!(m.kv().get(&format!("jobidx/{live}")).unwrap().is_some(), "a live job keeps its index");
    assert_eq!(c.req(0, Method::GET, &format!("/api/45/job/{live}")).send().await.unwrap().status(), 200);
    assert_eq!(steward::engine::history::delete_orphan_jobs(m).await.unwrap(), 0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_project_leaves_no_jobs_owners_or_executions_behind_for_a_project_of_the_same_name() {
    let c = TestCluster::start(1).await;
    let before = owned_jobs(&c).await;
    assert_eq!(c.create_project(0, "gone").await, 201);
    let yaml = "- name: once\n  sequence:\n    commands:\n      - exec: echo hi\n\
                - name: yearly\n  schedule: { crontab: '0 0 0 1 1 ? *' }\n  sequence:\n    commands:\n      - exec: echo new year\n";
    let answer = import(&c, 0, "gone", yaml).await;
    let (once, yearly) = (job_id(&answer, "once"), job_id(&answer, "yearly"));
    let (_, e) = run_job(&c, 0, &once, json!({})).await;
    let id = e["id"].as_u64().unwrap();
    ended(&c, 0, id, Duration::from_secs(15)).await;
    assert!(owned_jobs(&c).await > before, "the project's jobs are owned");

    let r = c.req(0, Method::DELETE, "/api/45/project/gone").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(owned_jobs(&c).await, before, "no owner records of deleted jobs");
    for job in [&once, &yearly] {
        assert_eq!(c.req(0, Method::GET, &format!("/api/45/job/{job}")).send().await.unwrap().status(), 404);
    }
    wait_for(Duration::from_secs(10), "the deleted project's execution log is gone", || async {
        (!log_dir(&c, 0, id).exists()).then_some(())
    })
    .await;
    // A new project of the same name starts with an empty history.
    assert_eq!(c.create_project(0, "gone").await, 201);
    assert!(all_executions(&c, 0, "gone").await.is_empty(), "old executions show in the new project");
    assert_eq!(c.req(0, Method::GET, &format!("/api/45/execution/{id}")).send().await.unwrap().status(), 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_malformed_jobs_names_each_bad_job_and_field_and_keeps_the_good_ones() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "imp").await, 201);
    assert_eq!(c.create_project(0, "other").await, 201);
    let taken = job_id(
        &import(&c, 0, "other", "- name: owner\n  uuid: 0a0a0a0a-0000-0000-0000-000000000001\n  sequence:\n    commands:\n      - exec: 'true'\n")
            .await,
        "owner",
    );
    let doc = format!(
        "- name: good\n  sequence:\n    commands:\n      - exec: echo ok\n\
         - name: bad-cron\n  schedule:\n    crontab: '0 0 25 * * ? *'\n  sequence:\n    commands:\n      - exec: 'true'\n\
         - name: bad-zone\n  timeZone: Mars/Olympus\n  schedule:\n    crontab: '0 0 1 * * ? *'\n  sequence:\n    commands:\n      - exec: 'true'\n\
         - name: bad-type\n  multipleExecutions: [1, 2]\n  sequence:\n    commands:\n      - exec: 'true'\n\
         - name: bad-default\n  options:\n    - name: env\n      value: moon\n      values: [dev, prod]\n      enforced: true\n  sequence:\n    commands:\n      - exec: 'true'\n\
         - name: dup-uuid\n  uuid: {taken}\n  sequence:\n    commands:\n      - exec: 'true'\n\
         - name: also-good\n  sequence:\n    commands:\n      - exec: echo ok\n"
    );
    let v = import(&c, 0, "imp", &doc).await;
    let ok: Vec<&str> = v["succeeded"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(ok, vec!["good", "also-good"], "{v}");
    let failed = v["failed"].as_array().unwrap();
    let by_name =
        |n: &str| failed.iter().find(|f| f["name"] == json!(n)).unwrap_or_else(|| panic!("{n} not failed: {v}"));
    for (name, field) in [
        ("bad-cron", "schedule.crontab"),
        ("bad-zone", "timeZone"),
        ("bad-type", "multipleExecutions"),
        ("bad-default", "options[0]"),
        ("dup-uuid", "uuid"),
    ] {
        let f = by_name(name);
        assert!(f["error"].as_str().unwrap().contains(field), "{name}: error names {field}: {f}");
    }
    let (_, list) = body(c.req(0, Method::GET, "/api/45/project/imp/jobs").send().await.unwrap()).await;
    let names: BTreeSet<&str> = list.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["good", "also-good"]));
    // A document that is not a list of jobs is refused whole, with the envelope.
    let r = c
        .req(0, Method::POST, "/api/45/project/imp/jobs/import")
        .header("content-type", "application/yaml")
        .body("name: [unclosed")
        .send()
        .await
        .unwrap();
    let (status, e) = body(r).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], json!(true));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_bad_options_is_refused_and_starts_nothing() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "opt").await, 201);
    let yaml = "- name: deploy\n  options:\n    - name: env\n      required: true\n      values: [dev, prod]\n      enforced: true\n  \
                sequence:\n    commands:\n      - exec: echo $RD_OPTION_ENV\n";
    let job = job_id(&import(&c, 0, "opt", yaml).await, "deploy");
    for req in [json!({}), json!({ "options": { "env": "moon" } }), json!({ "argString": "-env" })] {
        let (status, e) = run_job(&c, 0, &job, req.clone()).await;
        assert_eq!(status, 400, "{req}: {e}");
        assert!(e["message"].as_str().unwrap().contains("env"), "{e}");
    }
    assert!(all_executions(&c, 0, "opt").await.is_empty(), "nothing started");
    let (status, e) = run_job(&c, 0, &job, json!({ "argString": "-env prod" })).await;
    assert_eq!(status, 200, "{e}");
    let done = ended(&c, 0, e["id"].as_u64().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(done["status"], json!("succeeded"));
    assert_eq!(output_lines(&c, 0, e["id"].as_u64().unwrap()).await.0, vec!["prod"]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_multiple_executions_a_slot_during_a_run_is_skipped_never_run_beside_it() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "solo").await, 201);
    let yaml = "- name: slowtick\n  schedule:\n    crontab: '* * * * * ? *'\n  sequence:\n    commands:\n      - exec: sleep 2.2\n";
    let job = job_id(&import(&c, 0, "solo", yaml).await, "slowtick");
    let m = c.server(0).member.clone();
    wait_for(Duration::from_secs(20), "skipped slots and finished runs", || async {
        let fires = m.kv().range(&format!("fires/{job}/")).unwrap();
        let skipped = fires.iter().filter(|(_, kv)| String::from_utf8_lossy(&kv.value).contains("skipped")).count();
        let done = m.kv().range("exec/").unwrap().len();
        (skipped >= 3 && done >= 3).then_some(())
    })
    .await;
    c.req(0, Method::POST, &format!("/api/45/job/{job}/schedule/disable")).send().await.unwrap();
    let execs = all_executions(&c, 0, "solo").await;
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for e in &execs {
        let id = e["id"].as_u64().unwrap();
        let e = ended(&c, 0, id, Duration::from_secs(10)).await;
        spans.push((e["date-started"]["unixtime"].as_i64().unwrap(), e["date-ended"]["unixtime"].as_i64().unwrap()));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "two runs overlapped: {w:?}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_and_execution_routes_enforce_job_rights_from_acl_policies() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "acl").await, 201);
    let doc = "- name: deploy\n  group: ops\n  sequence:\n    commands:\n      - exec: echo ops\n\
               - name: payroll\n  group: hr\n  sequence:\n    commands:\n      - exec: echo hr\n";
    let answer = import(&c, 0, "acl", doc).await;
    let (ops, hr) = (job_id(&answer, "deploy"), job_id(&answer, "payroll"));
    let (_, e) = run_job(&c, 0, &hr, json!({})).await;
    let hr_exec = e["id"].as_u64().unwrap();
    ended(&c, 0, hr_exec, Duration::from_secs(10)).await;
    // Auditors may read the project and the ops jobs, and run nothing.
    let policy = "description: auditors\ncontext:\n  application: rundeck\nfor:\n  project:\n    - equals: {name: acl}\n      allow: [read]\nby:\n  group: auditors\n\
                  ---\ndescription: auditors read ops jobs\ncontext:\n  project: acl\nfor:\n  job:\n    - equals: {group: ops}\n      allow: [read]\nby:\n  group: auditors\n";
    let r = c
        .req(0, Method::POST, "/api/45/system/acl/auditors.aclpolicy")
        .header("content-type", "application/yaml")
        .body(policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (s, t) = body(
        c.req(0, Method::POST, "/api/45/tokens")
            .json(&json!({ "user": "ann", "roles": ["auditors"] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    let as_ann = |m: Method, path: &str| {
        c.http.request(m, format!("{}{path}", c.url(0))).header("X-Rundeck-Auth-Token", token.clone())
    };
    let (s, list) = body(as_ann(Method::GET, "/api/45/project/acl/jobs").send().await.unwrap()).await;
    assert_eq!(s, 200, "{list}");
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["deploy"], "only the jobs ann may read");
    assert_eq!(as_ann(Method::GET, &format!("/api/45/job/{ops}")).send().await.unwrap().status(), 200);
    assert_eq!(as_ann(Method::GET, &format!("/api/45/job/{hr}")).send().await.unwrap().status(), 403);
    let (s, e) =
        body(as_ann(Method::POST, &format!("/api/45/job/{ops}/run")).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(s, 403, "no run right: {e}");
    assert_eq!(as_ann(Method::DELETE, &format!("/api/45/job/{ops}")).send().await.unwrap().status(), 403);
    assert_eq!(as_ann(Method::GET, &format!("/api/45/execution/{hr_exec}")).send().await.unwrap().status(), 403);
    assert_eq!(as_ann(Method::GET, &format!("/api/45/execution/{hr_exec}/output")).send().await.unwrap().status(), 403);
    assert_eq!(as_ann(Method::POST, &format!("/api/45/execution/{hr_exec}/abort")).send().await.unwrap().status(), 403);
    let (s, e) = body(as_ann(Method::DELETE, &format!("/api/45/execution/{hr_exec}")).send().await.unwrap()).await;
    assert_eq!(s, 403, "no delete_execution right: {e}");
    crate::fixture::assert_envelope(&e, "api.error.item.unauthorized");
    let r = as_ann(Method::POST, "/api/45/executions/delete").json(&json!({ "ids": [hr_exec] }));
    let (s, v) = body(r.send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["successCount"], json!(0), "{v}");
    assert_eq!(v["failures"][0]["errorCode"], json!("api.error.item.unauthorized"), "{v}");
    // ann may read the ops job, but not delete its history.
    let (s, e) = body(as_ann(Method::DELETE, &format!("/api/45/job/{ops}/executions")).send().await.unwrap()).await;
    assert_eq!(s, 403, "{e}");
    crate::fixture::assert_envelope(&e, "api.error.item.unauthorized");
    let (s, ex) = body(as_ann(Method::GET, "/api/45/project/acl/executions").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(ex["paging"]["total"], json!(0), "hr's executions are not listed for ann: {ex}");
    // Nothing was started or deleted by the refused requests.
    assert_eq!(all_executions(&c, 0, "acl").await.len(), 1);
    assert_eq!(c.req(0, Method::GET, &format!("/api/45/job/{ops}")).send().await.unwrap().status(), 200);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_option_from_key_storage_reaches_steps_only_as_a_masked_environment_variable() {
    let c = TestCluster::start(2).await;
    assert_eq!(c.create_project(0, "sec").await, 201);
    let secret = "s3cr3t-Pa55-value";
    let r = c
        .req(0, Method::POST, "/api/45/storage/keys/app/db")
        .header("content-type", "application/x-rundeck-data-password")
        .body(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let yaml = "- name: migrate\n  options:\n    - name: dbpass\n      secure: true\n      valueExposed: true\n      storagePath: keys/app/db\n  \
                sequence:\n    commands:\n      - script: |\n          echo \"pw=$RD_OPTION_DBPASS\"\n          \
                echo \"length ${#RD_OPTION_DBPASS}\"\n";
    let job = job_id(&import(&c, 0, "sec", yaml).await, "migrate");
    // Run through member 1: its runner reads the key itself.
    let (status, e) = run_job(&c, 1, &job, json!({})).await;
    assert_eq!(status, 200, "{e}");
    let id = e["id"].as_u64().unwrap();
    let done = ended(&c, 1, id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], json!("succeeded"), "{done}");
    let (lines, raw) = output_lines(&c, 0, id).await;
    assert_eq!(lines, vec!["pw=*****".to_string(), format!("length {}", secret.len())], "the step saw the value");
    assert!(!raw.to_string().contains(secret), "the output never holds the secret");
    assert!(!done.to_string().contains(secret), "the execution record never holds the secret");
    let (_, export) =
        body(c.req(0, Method::GET, &format!("/api/45/job/{job}?format=yaml")).send().await.unwrap()).await;
    assert!(!export.to_string().contains(secret));
    c.shutdown().await;
}

/// A gauge of member `i`'s metrics.
async fn gauge(c: &TestCluster, i: usize, name: &str) -> i64 {
    let (status, v) = body(c.req(i, Method::GET, "/api/45/metrics/metrics").send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    v["gauges"][name]["value"].as_i64().unwrap_or_else(|| panic!("no gauge {name}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_capacity_executions_run_at_once_and_the_others_wait_for_a_slot() {
    let c = TestCluster::start_with(1, |cfg| {
        crate::fixture::default_tune(cfg);
        cfg.scheduling.member.capacity = 1;
    })
    .await;
    assert_eq!(c.create_project(0, "cap").await, 201);
    let gate = c.root.path().join("gate");
    let yaml =
        "- name: gated\n  multipleExecutions: true\n  options:\n    - name: gate\n    - name: n\n  sequence:\n    \
                commands:\n      - script: |\n          echo \"start $RD_OPTION_N\"\n          \
                while [ ! -e \"$RD_OPTION_GATE\" ]; do sleep 0.05; done\n          echo \"end $RD_OPTION_N\"\n";
    let job = job_id(&import(&c, 0, "cap", yaml).await, "gated");
    let run = |n: &'static str| {
        let (c, job, gate) = (&c, job.clone(), gate.clone());
        async move {
            let (status, e) =
                run_job(c, 0, &job, json!({ "options": { "gate": gate.to_str().unwrap(), "n": n } })).await;
            assert_eq!(status, 200, "{e}");
            e["id"].as_u64().unwrap()
        }
    };
    let a = run("a").await;
    wait_for(Duration::from_secs(10), "a started", || async {
        output_lines(&c, 0, a).await.0.contains(&"start a".to_string()).then_some(())
    })
    .await;
    let b = run("b").await;
    let cc = run("c").await;
    wait_for(Duration::from_secs(10), "b and c wait for the one slot", || async {
        (gauge(&c, 0, "steward.executions.waiting").await == 2).then_some(())
    })
    .await;
    assert_eq!(gauge(&c, 0, "steward.executions.running").await, 1);
    let (_, info) = body(c.req(0, Method::GET, "/api/45/system/info").send().await.unwrap()).await;
    assert_eq!(info["system"]["stats"]["scheduler"], json!({ "running": 1, "threadPoolSize": 1 }), "{info}");
    // Claimed (running, as Rundeck shows a run waiting for a thread) but no step started.
    assert_eq!(execution(&c, 0, b).await["status"], json!("running"));
    assert!(output_lines(&c, 0, b).await.0.is_empty());

    // An abort while waiting ends it without running anything.
    let (status, v) =
        body(c.req(0, Method::POST, &format!("/api/45/execution/{cc}/abort")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ended(&c, 0, cc, Duration::from_secs(10)).await["status"], json!("aborted"));
    assert_eq!(output_lines(&c, 0, cc).await.0, vec!["aborted while waiting for a free execution slot"]);
    assert_eq!(gauge(&c, 0, "steward.executions.waiting").await, 1);

    // The slot passes to b once a has ended.
    std::fs::write(&gate, b"").unwrap();
    assert_eq!(ended(&c, 0, a, Duration::from_secs(10)).await["status"], json!("succeeded"));
    assert_eq!(ended(&c, 0, b, Duration::from_secs(10)).await["status"], json!("succeeded"));
    let (lines, _) = output_lines(&c, 0, b).await;
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("start") || l.starts_with("end")).collect::<Vec<_>>(),
        ["start b", "end b"]
    );
    assert_eq!(gauge(&c, 0, "steward.executions.waiting").await, 0);
    c.shutdown().await;
}

/// A histogram of member `i`'s metrics.
async fn histogram(c: &TestCluster, i: usize, name: &str) -> Value {
    let (status, v) = body(c.req(i, Method::GET, "/api/45/metrics/metrics").send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    v["histograms"][name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_slots_is_decided_ahead_and_each_run_starts_at_its_slot_never_before() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "burst").await, 201);
    // 300 jobs on the same second, far enough ahead for the import to be done by then.
    let slot = (chrono::Utc::now() + chrono::TimeDelta::seconds(12)).with_timezone(&chrono::Utc);
    let slot_ms = slot.timestamp() * 1000;
    let cron = slot.format("%-S %-M %-H %-d %-m ? *").to_string();
    let jobs = 300;
    let yaml: String = (0..jobs)
        .map(|i| {
            format!(
                "- name: b{i}\n  timeZone: UTC\n  multipleExecutions: true\n  schedule:\n    crontab: '{cron}'\n  \
                 sequence:\n    commands:\n      - script: 'echo \"start $(date +%s%3N)\"'\n"
            )
        })
        .collect();
    let answer = import(&c, 0, "burst", &yaml).await;
    assert_eq!(answer["succeeded"].as_array().unwrap().len(), jobs, "{answer}");
    assert!(chrono::Utc::now().timestamp_millis() < slot_ms - 1000, "the import took too long for this test");

    let execs = wait_for(Duration::from_secs(90), "every slot ran and ended", || async {
        let all = all_executions(&c, 0, "burst").await;
        (all.len() >= jobs && all.iter().all(|e| e["status"] == json!("succeeded"))).then_some(all)
    })
    .await;
    // One run per job, each for the slot.
    assert_eq!(execs.len(), jobs);
    let per_job: BTreeSet<&str> = execs.iter().map(|e| e["job"]["id"].as_str().unwrap()).collect();
    assert_eq!(per_job.len(), jobs, "a job ran twice");
    for e in &execs {
        assert_eq!(e["dateScheduled"]["unixtime"].as_i64(), Some(slot_ms), "{e}");
        let id = e["id"].as_u64().unwrap();
        let (lines, _) = output_lines(&c, 0, id).await;
        let started: i64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("start ")?.parse().ok())
            .unwrap_or_else(|| panic!("execution {id} printed no start: {lines:?}"));
        assert!(started >= slot_ms, "execution {id} started {} ms before its slot", slot_ms - started);
    }
    // The burst was committed before its slot (fire lateness below zero), so that its runs could
    // start on time.
    let fires = histogram(&c, 0, "steward.scheduler.fireLateness").await;
    assert_eq!(fires["count"], json!(jobs), "{fires}");
    assert!(fires["min"].as_i64().unwrap() < 0, "no slot was decided ahead: {fires}");
    let starts = histogram(&c, 0, "steward.executions.startLateness").await;
    assert_eq!(starts["count"], json!(jobs), "{starts}");
    assert!(starts["min"].as_i64().unwrap() >= 0, "{starts}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_runs_a_slot_decided_ahead_whose_time_had_not_come() {
    let mut c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "ahead").await, 201);
    let yaml = "- name: yearly\n  multipleExecutions: true\n  schedule:\n    crontab: '0 0 0 1 1 ? *'\n  \
                sequence:\n    commands:\n      - script: 'echo \"start $(date +%s%3N)\"'\n";
    let job = job_id(&import(&c, 0, "ahead", yaml).await, "yearly");
    let me = c.server(0).member.node().uuid.clone();
    let entry = Catalog::new(c.server(0).member.clone()).job_entry(&job).unwrap().unwrap();
    // Two slots claimed by an earlier incarnation of this member: one decided ahead of a time
    // still to come, one whose time had passed (it was running when that incarnation died).
    let now = chrono::Utc::now().timestamp_millis();
    let (ahead, past) = (now + 8000, now - 500);
    let slots = [
        DueSlot { job: &entry.job, slot_ms: ahead, action: SlotAction::Fire, runs_on: None },
        DueSlot { job: &entry.job, slot_ms: past, action: SlotAction::Fire, runs_on: None },
    ];
    let earlier = format!("{me}/an-earlier-incarnation");
    let r = c.server(0).member.write(fire_batch(&me, Some(&earlier), &slots, now)).await.unwrap();
    let ids: Vec<u64> = interpret(&slots, &r)
        .into_iter()
        .map(|o| match o {
            SlotResult::Fired(id) => id,
            other => panic!("not fired: {other:?}"),
        })
        .collect();
    assert_eq!(execution(&c, 0, ids[0]).await["status"], json!("scheduled"));
    assert_eq!(execution(&c, 0, ids[1]).await["status"], json!("running"));

    c.stop(0).await;
    c.restart(0).await;
    assert!(chrono::Utc::now().timestamp_millis() < ahead - 1000, "the restart took too long for this test");
    let late = ended(&c, 0, ids[1], Duration::from_secs(20)).await;
    assert_eq!(late["status"], json!("incomplete"), "{late}");
    let taken = ended(&c, 0, ids[0], Duration::from_secs(30)).await;
    assert_eq!(taken["status"], json!("succeeded"), "{taken}");
    let (lines, _) = output_lines(&c, 0, ids[0]).await;
    let started: i64 = lines.iter().find_map(|l| l.strip_prefix("start ")?.parse().ok()).expect("a start line");
    assert!(started >= ahead, "started {} ms before its slot", ahead - started);
    c.shutdown().await;
}
