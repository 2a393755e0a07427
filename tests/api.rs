//! The HTTP API as a client sees it: Rundeck's shapes, the error envelope, authentication,
//! and 503 with Retry-After when there is no leader.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::fixture::TestCluster;

async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn assert_envelope(v: &Value, code: &str) {
    assert_eq!(v["error"], json!(true), "{v}");
    assert_eq!(v["errorCode"], json!(code), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["apiversion"].is_number(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_has_rundecks_shape_and_this_members_uuid() {
    let c = TestCluster::start(1).await;
    for v in [14, 45, 59] {
        let (status, info) = body(c.req(0, Method::GET, &format!("/api/{v}/system/info")).send().await.unwrap()).await;
        assert_eq!(status, 200);
        let s = &info["system"];
        assert_eq!(s["rundeck"]["serverUUID"], json!(c.slots[0].uuid));
        assert!(s["rundeck"]["apiversion"].is_number());
        assert!(s["timestamp"]["epoch"].is_number());
        assert_eq!(s["executions"]["executionMode"], json!("active"));
        assert!(s["stats"]["uptime"]["duration"].is_number());
        assert!(s["os"]["name"].is_string());
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_api_versions_get_400_with_the_error_envelope() {
    let c = TestCluster::start(1).await;
    for v in ["13", "60", "0", "abc"] {
        let (status, e) = body(c.req(0, Method::GET, &format!("/api/{v}/system/info")).send().await.unwrap()).await;
        assert_eq!(status, 400, "version {v}");
        assert_envelope(&e, "api.error.api-version.unsupported");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_valid_token_but_health_does_not() {
    let c = TestCluster::start(1).await;
    let url = c.url(0);
    let routes = [
        (Method::GET, "/api/45/system/info"),
        (Method::GET, "/api/45/cluster/members"),
        (Method::GET, "/api/45/projects"),
        (Method::POST, "/api/45/projects"),
        (Method::GET, "/api/45/project/x"),
        (Method::DELETE, "/api/45/project/x"),
        (Method::DELETE, "/api/45/cluster/members/x"),
    ];
    for (m, path) in routes {
        let no_token = c.http.request(m.clone(), format!("{url}{path}")).send().await.unwrap();
        let (status, e) = body(no_token).await;
        assert_eq!(status, 401, "{m} {path} without a token");
        assert_envelope(&e, "api.error.unauthenticated");
        let wrong = c
            .http
            .request(m.clone(), format!("{url}{path}"))
            .header("X-Rundeck-Auth-Token", "not-a-valid-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{m} {path} with a wrong token");
    }
    // Both of Rundeck's ways to send the token work.
    let bearer = c.http.get(format!("{url}/api/45/projects")).bearer_auth(&c.token).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let health = c.http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The body says whose vote this member holds: its own, won, in its current term.
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["vote"]["term"], body["term"], "{body}");
    assert_eq!(body["vote"]["node"], c.server(0).member.id().to_string(), "{body}");
    assert_eq!(body["vote"]["committed"], true, "{body}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_created_listed_read_and_deleted_in_rundecks_shapes() {
    let c = TestCluster::start(1).await;
    let r = c
        .req(0, Method::POST, "/api/45/projects")
        .json(&json!({ "name": "ops", "config": { "project.description": "Operations", "k": "v" } }))
        .send()
        .await
        .unwrap();
    let (status, p) = body(r).await;
    assert_eq!(status, 201);
    assert_eq!(p["name"], json!("ops"));
    assert_eq!(p["description"], json!("Operations"));
    assert_eq!(p["config"]["k"], json!("v"));
    assert!(p["url"].as_str().unwrap().ends_with("/api/45/project/ops"));

    let (status, list) = body(c.req(0, Method::GET, "/api/45/projects").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], json!("ops"));
    assert_eq!(list[0]["description"], json!("Operations"));

    let (status, got) = body(c.req(0, Method::GET, "/api/45/project/ops").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(got["config"]["k"], json!("v"));

    let (status, e) =
        body(c.req(0, Method::POST, "/api/45/projects").json(&json!({ "name": "ops" })).send().await.unwrap()).await;
    assert_eq!(status, 409, "duplicate project");
    assert_envelope(&e, "api.error.item.alreadyexists");

    assert_eq!(c.req(0, Method::DELETE, "/api/45/project/ops").send().await.unwrap().status(), 204);
    let (status, e) = body(c.req(0, Method::GET, "/api/45/project/ops").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_envelope(&e, "api.error.item.doesnotexist");
    let (status, _) = body(c.req(0, Method::DELETE, "/api/45/project/ops").send().await.unwrap()).await;
    assert_eq!(status, 404, "deleting a missing project");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_400_with_the_envelope_and_store_nothing() {
    let c = TestCluster::start(1).await;
    let cases: Vec<(&str, &str)> = vec![
        ("{not json", "application/json"),
        ("{\"name\": 5}", "application/json"),
        ("{\"config\": {}}", "application/json"),
        ("{\"name\": \"../etc\"}", "application/json"),
        ("{\"name\": \"\"}", "application/json"),
        ("{\"name\": \"ok\"}", "text/plain"),
    ];
    for (text, ctype) in cases {
        let r = c
            .req(0, Method::POST, "/api/45/projects")
            .header("content-type", ctype)
            .body(text.to_string())
            .send()
            .await
            .unwrap();
        let (status, e) = body(r).await;
        assert_eq!(status, 400, "body {text:?} ({ctype})");
        assert_envelope(&e, "api.error.invalid.request");
    }
    assert!(c.project_names(0).await.is_empty(), "nothing was stored");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_members_lists_each_member_with_role_state_and_progress() {
    let c = TestCluster::start(3).await;
    let leader = c.leader().await;
    c.create_project(leader, "x").await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let v = crate::fixture::wait_for(
        Duration::from_secs(10),
        "every member active with a known replication index",
        || async {
            let (status, v) = body(c.req(follower, Method::GET, "/api/45/cluster/members").send().await.ok()?).await;
            (status == 200
                && v["members"].as_array()?.iter().all(|m| m["state"] == "active" && m["matchedIndex"].is_u64()))
            .then_some(v)
        },
    )
    .await;
    assert_eq!(v["leader"], json!(c.slots[leader].uuid));
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        let uuid = m["id"].as_str().unwrap();
        let i = (0..3).find(|&i| c.slots[i].uuid == uuid).expect("known member");
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(m["role"], json!(role));
        assert_eq!(m["httpAddress"], json!(c.slots[i].http.to_string()));
        assert_eq!(m["raftAddress"], json!(c.slots[i].raft.to_string()));
        assert!(m["matchedIndex"].as_u64().is_some());
        assert!(m["lastContactMs"].as_u64().is_some());
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_leader_requests_get_503_with_retry_after_within_seconds() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    for i in 0..3 {
        if i != survivor {
            c.stop(i).await;
        }
    }
    for (m, path) in [(Method::GET, "/api/45/projects"), (Method::POST, "/api/45/projects")] {
        let started = Instant::now();
        let r = c.req(survivor, m.clone(), path).json(&json!({ "name": "lost" })).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 503, "{m} {path}");
        assert!(r.headers().get("retry-after").is_some(), "Retry-After on {m} {path}");
        let (_, e) = body(r).await;
        assert_eq!(e["error"], json!(true));
        assert!(took < Duration::from_secs(8), "answered after {took:?}");
    }
    let health = c.http.get(format!("{}/health", c.url(survivor))).send().await.unwrap();
    assert_eq!(health.status(), 503, "a member without a leader is not healthy");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_a_clear_error_and_leaves_no_data_dir() {
    let c = TestCluster::start(1).await;
    let dir = c.root.path().join("other");
    let mut config = steward::config::Config::with_data_dir(&dir);
    config.http = c.slots[0].http; // taken
    config.raft = "127.0.0.1:0".parse().unwrap();
    let err = match steward::server::Server::start(config).await {
        Ok(_) => panic!("started on a busy port"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot listen on") && err.contains("http"), "{err}");
    assert!(!dir.exists());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_config_keys_are_read_written_and_deleted_from_any_member() {
    let c = TestCluster::start(3).await;
    let leader = c.leader().await;
    assert_eq!(c.create_project(leader, "cfg").await, 201);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let r = c
        .req(follower, Method::PUT, "/api/45/project/cfg/config/color")
        .json(&json!({ "value": "blue" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..3 {
        let (status, v) = body(c.req(i, Method::GET, "/api/45/project/cfg/config/color").send().await.unwrap()).await;
        assert_eq!((status, v["value"].clone()), (200, json!("blue")), "member {i}");
    }
    let (status, all) = body(c.req(leader, Method::GET, "/api/45/project/cfg/config").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(all["color"], json!("blue"));
    assert_eq!(all["project.name"], json!("cfg"));
    assert_eq!(c.req(leader, Method::DELETE, "/api/45/project/cfg/config/color").send().await.unwrap().status(), 204);
    let (status, e) =
        body(c.req(follower, Method::GET, "/api/45/project/cfg/config/color").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_envelope(&e, "api.error.item.doesnotexist");
    let (status, _) = body(
        c.req(leader, Method::PUT, "/api/45/project/nope/config/color")
            .json(&json!({ "value": "x" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "config of a missing project");
    let (status, _) = body(
        c.req(leader, Method::PUT, "/api/45/project/cfg/config/color").json(&json!({ "v": 1 })).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400, "malformed body");
    c.shutdown().await;
}
