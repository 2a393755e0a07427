//! Authentication and authorization as a client sees them: every route of the route table is
//! guarded, ACL policies allow and deny as Rundeck's do, tokens expire and are revoked, and a
//! browser session started on one member is accepted by every member.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use steward::acl::{Authorizer, Context, Decision, Resource, Subject};
use steward::api::authz::Perm;
use steward::api::ROUTES;

use crate::fixture::{assert_envelope, body, wait_for, TestCluster};

const PASSWORD: &str = "application/x-rundeck-data-password";

/// Creates (as admin) a token for `user` with `roles`; returns its text and id.
async fn token_for(c: &TestCluster, user: &str, roles: &[&str], duration: Option<&str>) -> (String, String) {
    let mut b = json!({ "user": user, "roles": roles, "name": "test" });
    if let Some(d) = duration {
        b["duration"] = json!(d);
    }
    let (s, v) = body(c.req(0, Method::POST, "/api/45/tokens").json(&b).send().await.unwrap()).await;
    assert_eq!(s, 201, "{v}");
    (v["token"].as_str().unwrap().to_string(), v["id"].as_str().unwrap().to_string())
}

/// Stores a system policy as admin.
async fn policy(c: &TestCluster, name: &str, yaml: &str) {
    let r = c
        .req(0, Method::POST, &format!("/api/45/system/acl/{name}"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap();
    let (s, v) = body(r).await;
    assert_eq!(s, 201, "policy {name}: {v}");
}

fn as_token(c: &TestCluster, i: usize, token: &str, m: Method, path: &str) -> reqwest::RequestBuilder {
    c.http.request(m, format!("{}{path}", c.url(i))).header("X-Rundeck-Auth-Token", token)
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str, user: &str) -> String {
    // Execution ids are numbers; job and token ids are not.
    let pattern = pattern.replace("/execution/{id}", "/execution/999999");
    pattern
        .replace("{v}", "45")
        .replace("{p}", "p1")
        .replace("{*path}", "a/b")
        .replace("{id}", "no-such-id")
        .replace("{user}", user)
        .replace("{name}", "x.aclpolicy")
}

/// A policy granting exactly what `perm` requires to `group`.
fn grant(perm: Perm, group: &str) -> Option<String> {
    let (context, rule) = match perm {
        Perm::Authenticated | Perm::Filtered | Perm::InHandler => return None,
        Perm::App { kind, action } => {
            ("application: rundeck", format!("resource: [{{equals: {{kind: {kind}}}, allow: [{action}]}}]"))
        }
        Perm::Project(action) => {
            ("application: rundeck", format!("project: [{{equals: {{name: p1}}, allow: [{action}]}}]"))
        }
        Perm::ProjectAcl(action) => {
            ("application: rundeck", format!("project_acl: [{{equals: {{name: p1}}, allow: [{action}]}}]"))
        }
        Perm::Storage(action) => {
            ("application: rundeck", format!("storage: [{{match: {{path: 'keys(/.*)?'}}, allow: [{action}]}}]"))
        }
        Perm::InProject { kind, action } => {
            ("project: p1", format!("resource: [{{equals: {{kind: {kind}}}, allow: [{action}]}}]"))
        }
        Perm::Adhoc(action) => ("project: p1", format!("adhoc: [{{allow: [{action}]}}]")),
    };
    Some(format!("description: probe\ncontext: {{{context}}}\nfor:\n  {rule}\nby:\n  group: {group}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_no_token_and_a_token_without_its_right_and_admits_one_with_it() {
    let c = TestCluster::start(1).await;
    assert_eq!(c.create_project(0, "p1").await, 201);
    let (nobody, _) = token_for(&c, "nobody", &["nobody"], None).await;
    let url = c.url(0);
    assert!(ROUTES.len() >= 30, "the table holds every /api route");
    for (n, spec) in ROUTES.iter().enumerate() {
        // A route before may have deleted it.
        c.create_project(0, "p1").await;
        let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
        let path = concrete(spec.path, "nobody");
        let what = format!("{} {}", spec.method, spec.path);

        let (s, e) = body(c.http.request(method.clone(), format!("{url}{path}")).send().await.unwrap()).await;
        assert_eq!(s, 401, "{what} without a token: {e}");
        assert_envelope(&e, "api.error.unauthenticated");

        // Bulk operations answer per item: a caller without rights gets every item refused.
        if spec.path.ends_with("/jobs/delete") {
            let r = as_token(&c, 0, &nobody, method.clone(), &path).json(&json!({ "ids": ["no-such-id"] }));
            let (s, v) = body(r.send().await.unwrap()).await;
            assert_eq!(s, 200, "{what}: {v}");
            assert_eq!(v["allsuccessful"], json!(false), "{what}: {v}");
            assert_eq!(v["succeeded"], json!([]), "{what}: {v}");
            continue;
        }
        if spec.path.ends_with("/executions/delete") {
            let r = as_token(&c, 0, &nobody, method.clone(), &path).json(&json!({ "ids": [999_999] }));
            let (s, v) = body(r.send().await.unwrap()).await;
            assert_eq!(s, 200, "{what}: {v}");
            assert_eq!(
                (v["allsuccessful"].clone(), v["successCount"].clone()),
                (json!(false), json!(0)),
                "{what}: {v}"
            );
            continue;
        }
        let (s, e) = body(as_token(&c, 0, &nobody, method.clone(), &path).send().await.unwrap()).await;
        match spec.perm {
            // Only the caller's own data, or only what the caller may read.
            Perm::Authenticated | Perm::Filtered => assert_eq!(s, 200, "{what} for a caller without rights: {e}"),
            Perm::InHandler => assert!(s == 403 || s == 404, "{what}: {s} {e}"),
            _ => {
                assert_eq!(s, 403, "{what} with a token that lacks the right: {e}");
                assert_envelope(&e, "api.error.item.unauthorized");
            }
        }

        // A caller granted exactly this route's permission gets past authorization.
        if let Some(yaml) = grant(spec.perm, &format!("probe{n}")) {
            policy(&c, &format!("probe{n}.aclpolicy"), &yaml).await;
            let user = format!("probe{n}");
            let (token, _) = token_for(&c, &user, &[&user], None).await;
            let path = concrete(spec.path, &user);
            let (s, e) = body(as_token(&c, 0, &token, method, &path).send().await.unwrap()).await;
            assert!(s != 401 && s != 403, "{what} with exactly its permission answered {s}: {e}");
        }
    }
    // A caller without rights sees no projects.
    let (s, v) = body(as_token(&c, 0, &nobody, Method::GET, "/api/45/projects").send().await.unwrap()).await;
    assert_eq!((s, v), (200, json!([])));
    c.shutdown().await;
}

const OPS: &str = r#"
description: ops read and create keys under keys/ops, but not the root key
context:
  application: 'rundeck'
for:
  storage:
    - match: {path: 'keys/ops(/.*)?'}
      allow: [read, create]
    - equals: {path: 'keys/ops/root'}
      deny: [read]
by:
  group: ops
---
description: dave reads the system
context:
  application: 'rundeck'
for:
  resource:
    - equals: {kind: system}
      allow: read
by:
  urn: user:dave
"#;

const OPS_TOO_MUCH: &str = r#"
description: another file that would let ops read everything
context:
  application: 'rundeck'
for:
  storage:
    - allow: [read]
by:
  group: ops
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_allow_by_group_and_user_and_a_deny_wins_over_any_allow() {
    let c = TestCluster::start(1).await;
    policy(&c, "ops.aclpolicy", OPS).await;
    policy(&c, "ops-too-much.aclpolicy", OPS_TOO_MUCH).await;
    let root = c
        .req(0, Method::POST, "/api/45/storage/keys/ops/root")
        .header("content-type", PASSWORD)
        .body("root-pw")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 201);
    let (alice, _) = token_for(&c, "alice", &["ops"], None).await;
    let (dave, _) = token_for(&c, "dave", &["dev"], None).await;

    let post = |t: &str, path: &str| {
        as_token(&c, 0, t, Method::POST, &format!("/api/45/storage/keys/{path}"))
            .header("content-type", PASSWORD)
            .body("v")
    };
    assert_eq!(post(&alice, "ops/app").send().await.unwrap().status(), 201, "allowed by group");
    let (s, e) = body(post(&alice, "dev/app").send().await.unwrap()).await;
    assert_eq!(s, 403, "no rule allows it");
    assert!(e["message"].as_str().unwrap().contains("keys/dev/app"), "{e}");
    let meta =
        as_token(&c, 0, &alice, Method::GET, "/api/45/storage/keys/ops/app").header("accept", "application/json");
    assert_eq!(meta.send().await.unwrap().status(), 200);
    let r = as_token(&c, 0, &alice, Method::GET, "/api/45/storage/keys/ops/root").send().await.unwrap();
    assert_eq!(r.status(), 403, "the deny wins over both files' allows");
    let r = as_token(&c, 0, &alice, Method::DELETE, "/api/45/storage/keys/ops/app").send().await.unwrap();
    assert_eq!(r.status(), 403, "delete is not allowed");
    // The listing leaves out what the caller may not read.
    let (_, list) = body(as_token(&c, 0, &alice, Method::GET, "/api/45/storage/keys/ops/").send().await.unwrap()).await;
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["app"]);
    // By user name (urn), not by group.
    assert_eq!(as_token(&c, 0, &dave, Method::GET, "/api/45/system/info").send().await.unwrap().status(), 200);
    assert_eq!(as_token(&c, 0, &alice, Method::GET, "/api/45/system/info").send().await.unwrap().status(), 403);
    // The bootstrap admin token keeps full access.
    let meta = c.req(0, Method::GET, "/api/45/storage/keys/ops/root").header("accept", "application/json");
    assert_eq!(meta.send().await.unwrap().status(), 200);
    assert_eq!(c.req(0, Method::DELETE, "/api/45/storage/keys/ops/app").send().await.unwrap().status(), 204);

    // Project policies apply in their project only, through the same authorizer.
    assert_eq!(c.create_project(0, "web").await, 201);
    let project_policy = "description: ops run adhoc in web\nfor:\n  adhoc: [{allow: [run]}]\nby:\n  group: ops\n";
    let r = c
        .req(0, Method::POST, "/api/45/project/web/acl/ops.aclpolicy")
        .header("content-type", "text/plain")
        .body(project_policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let acl = Authorizer::new(c.server(0).member.clone());
    let ops = vec!["ops".to_string()];
    let s = Subject { user: "alice", groups: &ops };
    assert_eq!(acl.check(&s, Context::Project("web"), &Resource::adhoc(), "run").unwrap(), Decision::Allowed);
    assert_eq!(acl.check(&s, Context::Project("db"), &Resource::adhoc(), "run").unwrap(), Decision::Rejected);
    assert_eq!(acl.check(&s, Context::Project("web"), &Resource::adhoc(), "kill").unwrap(), Decision::Rejected);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_endpoints_validate_store_list_and_delete_policies() {
    let c = TestCluster::start(1).await;
    let send = |m: Method, path: &str, ctype: &str, text: &str| {
        c.req(0, m, path).header("content-type", ctype).body(text.to_string()).send()
    };
    let malformed = "description: x\ncontext: {application: rundeck\nfor: [";
    let contradictory =
        "description: x\ncontext: {application: rundeck}\nfor:\n  storage: [{allow: read, deny: read}]\nby: {group: a}";
    let not_by_allow =
        "description: x\ncontext: {application: rundeck}\nfor:\n  storage: [{allow: read}]\nnotBy: {group: a}";
    for (text, want) in [(malformed, "YAML"), (contradictory, "both allowed and denied"), (not_by_allow, "notBy")] {
        let (s, e) =
            body(send(Method::POST, "/api/45/system/acl/bad.aclpolicy", "application/yaml", text).await.unwrap()).await;
        assert_eq!(s, 400, "{text}");
        assert_envelope(&e, "api.error.invalid.request");
        assert!(e["message"].as_str().unwrap().contains(want), "{e}");
    }
    let (s, _) = body(send(Method::POST, "/api/45/system/acl/no-suffix", "application/yaml", OPS).await.unwrap()).await;
    assert_eq!(s, 400, "a name must end in .aclpolicy");
    let (s, _) = body(send(Method::POST, "/api/45/system/acl/x.aclpolicy", "image/png", OPS).await.unwrap()).await;
    assert_eq!(s, 415);
    let (s, list) = body(c.req(0, Method::GET, "/api/45/system/acl/").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(list["resources"], json!([]), "nothing was stored");

    let (s, created) =
        body(send(Method::POST, "/api/45/system/acl/ops.aclpolicy", "application/yaml", OPS).await.unwrap()).await;
    assert_eq!(s, 201);
    assert_eq!(created["contents"], json!(OPS));
    let (s, e) =
        body(send(Method::POST, "/api/45/system/acl/ops.aclpolicy", "application/yaml", OPS).await.unwrap()).await;
    assert_eq!(s, 409);
    assert_envelope(&e, "api.error.item.alreadyexists");
    let (_, list) = body(c.req(0, Method::GET, "/api/45/system/acl/").send().await.unwrap()).await;
    assert_eq!(list["type"], json!("directory"));
    assert_eq!(list["resources"][0]["name"], json!("ops.aclpolicy"));
    assert_eq!(list["resources"][0]["type"], json!("file"));
    assert!(list["resources"][0]["href"].as_str().unwrap().ends_with("/api/45/system/acl/ops.aclpolicy"));
    let (_, got) = body(c.req(0, Method::GET, "/api/45/system/acl/ops.aclpolicy").send().await.unwrap()).await;
    assert_eq!(got["contents"], json!(OPS));
    let yaml = c
        .req(0, Method::GET, "/api/45/system/acl/ops.aclpolicy")
        .header("accept", "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.text().await.unwrap(), OPS);
    let json_body = serde_json::to_string(&json!({ "contents": OPS_TOO_MUCH })).unwrap();
    let (s, _) =
        body(send(Method::PUT, "/api/45/system/acl/ops.aclpolicy", "application/json", &json_body).await.unwrap())
            .await;
    assert_eq!(s, 200);
    let (s, _) =
        body(send(Method::PUT, "/api/45/system/acl/missing.aclpolicy", "application/yaml", OPS).await.unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(c.req(0, Method::DELETE, "/api/45/system/acl/ops.aclpolicy").send().await.unwrap().status(), 204);
    assert_eq!(c.req(0, Method::DELETE, "/api/45/system/acl/ops.aclpolicy").send().await.unwrap().status(), 404);

    // Project policies: the project must exist, the context must be the project's.
    let pp = "description: x\nfor:\n  job: [{allow: [run]}]\nby:\n  group: ops\n";
    let (s, _) =
        body(send(Method::POST, "/api/45/project/nope/acl/a.aclpolicy", "text/plain", pp).await.unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(c.create_project(0, "web").await, 201);
    let (s, e) =
        body(send(Method::POST, "/api/45/project/web/acl/a.aclpolicy", "text/plain", OPS).await.unwrap()).await;
    assert_eq!(s, 400, "an application context in a project policy: {e}");
    let (s, _) = body(send(Method::POST, "/api/45/project/web/acl/a.aclpolicy", "text/plain", pp).await.unwrap()).await;
    assert_eq!(s, 201);
    let (_, list) = body(c.req(0, Method::GET, "/api/45/project/web/acl/").send().await.unwrap()).await;
    assert_eq!(list["resources"][0]["name"], json!("a.aclpolicy"));
    // A project's policies go with it.
    assert_eq!(c.req(0, Method::DELETE, "/api/45/project/web").send().await.unwrap().status(), 204);
    assert_eq!(c.create_project(0, "web").await, 201);
    let (_, list) = body(c.req(0, Method::GET, "/api/45/project/web/acl/").send().await.unwrap()).await;
    assert_eq!(list["resources"], json!([]));
    c.shutdown().await;
}

const SELF_SERVICE: &str = r#"
description: ops manage their own tokens
context:
  application: 'rundeck'
for:
  resource:
    - equals: {kind: apitoken}
      allow: [generate_user_token]
by:
  group: ops
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_expire_are_revoked_and_stay_within_their_rights() {
    let c = TestCluster::start(1).await;
    let (s, v) = body(
        c.req(0, Method::POST, "/api/45/tokens")
            .json(&json!({ "user": "erin", "roles": "ops,dev", "duration": "1d", "name": "ci" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let erin = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["user"], json!("erin"));
    assert_eq!(v["roles"], json!(["ops", "dev"]));
    assert_eq!(v["expired"], json!(false));
    assert_eq!(v["creator"], json!("admin"));
    assert!(v["expiration"].is_string());

    // Shown once: neither the list nor the token's own page has its text.
    let (_, list) = body(c.req(0, Method::GET, "/api/45/tokens/erin").send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none() && !list.to_string().contains(&erin));
    let (s, one) = body(c.req(0, Method::GET, &format!("/api/45/token/{id}")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(one["id"], json!(id));
    assert!(!one.to_string().contains(&erin));

    let (s, me) = body(as_token(&c, 0, &erin, Method::GET, "/api/45/user/info").send().await.unwrap()).await;
    assert_eq!((s, me["login"].clone()), (200, json!("erin")));
    let (_, roles) = body(as_token(&c, 0, &erin, Method::GET, "/api/45/user/roles").send().await.unwrap()).await;
    assert_eq!(roles["roles"], json!(["ops", "dev"]));

    // Without a policy erin cannot make tokens; with one, only her own, within her roles.
    let mine = |roles: Value, user: Option<&str>| {
        let mut b = json!({ "roles": roles });
        if let Some(u) = user {
            b["user"] = json!(u);
        }
        as_token(&c, 0, &erin, Method::POST, "/api/45/tokens").json(&b).send()
    };
    assert_eq!(mine(json!("*"), None).await.unwrap().status(), 403);
    policy(&c, "self.aclpolicy", SELF_SERVICE).await;
    let (s, own) = body(mine(json!("*"), None).await.unwrap()).await;
    assert_eq!(s, 201, "{own}");
    assert_eq!(own["roles"], json!(["ops", "dev"]));
    assert_eq!(mine(json!(["admin"]), None).await.unwrap().status(), 403, "a role she lacks");
    assert_eq!(mine(json!(["ops"]), Some("frank")).await.unwrap().status(), 403, "someone else's");
    let (_, theirs) = body(as_token(&c, 0, &erin, Method::GET, "/api/45/tokens").send().await.unwrap()).await;
    assert!(theirs.as_array().unwrap().iter().all(|t| t["user"] == "erin"), "only her own: {theirs}");

    // Bad requests store nothing.
    let before = body(c.req(0, Method::GET, "/api/45/tokens").send().await.unwrap()).await.1.as_array().unwrap().len();
    for (b, why) in [
        (json!({ "user": "x", "roles": ["ops"], "duration": "31d" }), "beyond the 30d maximum"),
        (json!({ "user": "x", "roles": ["ops"], "duration": "soon" }), "not a duration"),
        (json!({ "user": "x", "roles": [] }), "no role"),
        (json!({ "user": "x" }), "roles missing"),
        (json!({ "user": "../x", "roles": ["ops"] }), "bad user name"),
    ] {
        let (s, e) = body(c.req(0, Method::POST, "/api/45/tokens").json(&b).send().await.unwrap()).await;
        assert_eq!(s, 400, "{why}: {e}");
        assert_envelope(&e, "api.error.invalid.request");
    }
    let after = body(c.req(0, Method::GET, "/api/45/tokens").send().await.unwrap()).await.1.as_array().unwrap().len();
    assert_eq!(before, after);

    // Revoked: the token stops working at once, everywhere.
    assert_eq!(c.req(0, Method::DELETE, &format!("/api/45/token/{id}")).send().await.unwrap().status(), 204);
    let (s, e) = body(as_token(&c, 0, &erin, Method::GET, "/api/45/user/info").send().await.unwrap()).await;
    assert_eq!(s, 401, "a revoked token");
    assert_envelope(&e, "api.error.unauthenticated");
    assert_eq!(c.req(0, Method::DELETE, &format!("/api/45/token/{id}")).send().await.unwrap().status(), 404);

    // Expired: refused with a message that says so.
    let (short, _) = token_for(&c, "erin", &["ops"], Some("1s")).await;
    let e = wait_for(Duration::from_secs(5), "the short token expires", || async {
        let (s, e) = body(as_token(&c, 0, &short, Method::GET, "/api/45/user/info").send().await.ok()?).await;
        (s == 401).then_some(e)
    })
    .await;
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    c.shutdown().await;
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn login(c: &TestCluster, i: usize, user: &str, password: &str) -> (u16, Option<String>) {
    let r = c
        .http
        .post(format!("{}/j_security_check", c.url(i)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("j_username={}&j_password={}", form_encode(user), form_encode(password)))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    (r.status().as_u16(), cookie)
}

async fn with_cookie(c: &TestCluster, i: usize, cookie: &str) -> (u16, Value) {
    body(c.http.get(format!("{}/api/45/user/info", c.url(i))).header("cookie", cookie).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_member_is_accepted_by_every_member() {
    let c = TestCluster::start(3).await;
    c.leader().await;
    let r = c
        .req(0, Method::POST, "/api/45/users")
        .json(&json!({ "login": "gina", "password": "correct horse", "groups": ["ops"], "email": "g@x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, e) = body(
        c.req(0, Method::POST, "/api/45/users")
            .json(&json!({ "login": "h", "password": "short" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "a too-short password: {e}");

    assert_eq!(login(&c, 1, "gina", "wrong password").await.0, 401);
    assert_eq!(login(&c, 1, "nobody", "correct horse").await.0, 401);
    let (s, cookie) = login(&c, 1, "gina", "correct horse").await;
    assert_eq!(s, 200);
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("JSESSIONID="));
    for i in 0..3 {
        let (s, me) = with_cookie(&c, i, &cookie).await;
        assert_eq!(s, 200, "member {i} accepts the session: {me}");
        assert_eq!(me["login"], json!("gina"));
        assert_eq!(me["email"], json!("g@x"));
    }
    let mut forged = cookie.clone();
    forged.push('A');
    assert_eq!(with_cookie(&c, 2, &forged).await.0, 401, "a tampered cookie");

    // A new password ends the sessions started with the old one, on every member.
    let r = c
        .req(2, Method::PUT, "/api/45/users/gina")
        .json(&json!({ "password": "battery staple" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..3 {
        wait_for(Duration::from_secs(5), "the old session is refused", || async {
            (with_cookie(&c, i, &cookie).await.0 == 401).then_some(())
        })
        .await;
    }
    let (s, fresh) = login(&c, 0, "gina", "battery staple").await;
    assert_eq!(s, 200);
    assert_eq!(with_cookie(&c, 2, &fresh.unwrap()).await.0, 200);
    c.shutdown().await;
}
