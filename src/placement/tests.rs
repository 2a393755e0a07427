use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;

use super::*;

const ME: &str = "me";

fn member(uuid: &str) -> Candidate {
    Candidate {
        uuid: uuid.to_owned(),
        active: true,
        passive: false,
        tags: Vec::new(),
        running: 0,
        capacity: 10,
        load1: 0.0,
        cpus: 1,
    }
}

fn tagged(uuid: &str, tags: &[&str]) -> Candidate {
    Candidate { tags: tags.iter().map(|t| t.to_string()).collect(), ..member(uuid) }
}

fn loaded(uuid: &str, running: u32, load1: f64) -> Candidate {
    Candidate { running, load1, ..member(uuid) }
}

/// The configuration file as the server will read it: a `[remoteExecution]` table.
#[derive(Deserialize)]
struct Root {
    #[serde(rename = "remoteExecution")]
    remote_execution: RemoteExecutionFile,
}

fn file(toml_text: &str) -> RemoteExecutionFile {
    toml::from_str::<Root>(&format!("[remoteExecution]\n{toml_text}")).expect("valid TOML").remote_execution
}

fn parse(toml_text: &str) -> Result<Placement, PlacementError> {
    Placement::from_file(&file(toml_text))
}

/// The default policy of a configuration that must be valid.
fn policy(toml_text: &str) -> Policy {
    parse(toml_text).expect("valid configuration").policy_for("any project").clone()
}

fn choose(policy: &Policy, members: &[Candidate]) -> Result<String, NoEligibleMember> {
    policy.choose(ME, members, &AtomicU64::new(0), &mut StdRng::seed_from_u64(1))
}

/// How often each member is chosen over `n` decisions (one counter and one seeded generator).
fn draws(policy: &Policy, members: &[Candidate], n: usize) -> BTreeMap<String, usize> {
    let rr = AtomicU64::new(0);
    let mut rng = StdRng::seed_from_u64(42);
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let uuid = policy.choose(ME, members, &rr, &mut rng).expect("a member qualifies");
        *counts.entry(uuid).or_insert(0) += 1;
    }
    counts
}

/// The members chosen at least once over many Random decisions.
fn reachable(policy_toml: &str, members: &[Candidate]) -> Vec<String> {
    let policy = policy(&format!("policy = \"Random\"\n{policy_toml}"));
    draws(&policy, members, 400).into_keys().collect()
}

fn error(toml_text: &str) -> PlacementError {
    parse(toml_text).expect_err("the configuration is invalid")
}

#[test]
fn none_is_the_default_and_always_chooses_the_deciding_member() {
    let members = [member("a"), member("b")];
    assert_eq!(Placement::none().policy_for("p").name(), "None");
    assert_eq!(policy("").name(), "None");
    assert_eq!(choose(&policy(""), &members).unwrap(), ME);
    // Even a passive deciding member that is not in the table: None forwards nothing.
    assert_eq!(choose(&policy("policy = \"None\""), &[]).unwrap(), ME);
}

#[test]
fn preset_sends_every_execution_to_its_member() {
    let p = policy("policy = \"Preset\"\nconfig.uuid = \"b\"");
    assert_eq!(p.name(), "Preset");
    assert_eq!(draws(&p, &[member(ME), member("a"), member("b")], 20), BTreeMap::from([("b".to_owned(), 20)]));
}

#[test]
fn preset_member_that_cannot_run_is_an_error_naming_it() {
    let p = policy("policy = \"Preset\"\nconfig.uuid = \"b\"");
    let passive = Candidate { passive: true, ..member("b") };
    let err = choose(&p, &[member(ME), passive]).unwrap_err();
    assert_eq!(err.policy, "Preset");
    assert_eq!(err.reason, "the preset member b is passive");

    let inactive = Candidate { active: false, ..member("b") };
    let err = choose(&p, &[member(ME), inactive.clone()]).unwrap_err();
    assert_eq!(err.reason, "the preset member b is not active (activeOnly is true)");
    assert_eq!(
        err.to_string(),
        "no cluster member may run this execution under the Preset remote execution policy: \
         the preset member b is not active (activeOnly is true)"
    );

    let err = choose(&p, &[member(ME)]).unwrap_err();
    assert_eq!(err.reason, "the preset member b is not in the heartbeat table");

    // With activeOnly = false an inactive preset member still runs it.
    let lenient = policy("policy = \"Preset\"\nconfig.uuid = \"b\"\nconfig.activeOnly = false");
    assert_eq!(choose(&lenient, &[member(ME), inactive]).unwrap(), "b");
}

#[test]
fn random_reaches_every_eligible_member_and_never_another() {
    let members = [
        member("a"),
        member("b"),
        member("c"),
        Candidate { passive: true, ..member("passive") },
        Candidate { active: false, ..member("inactive") },
    ];
    let counts = draws(&policy("policy = \"Random\""), &members, 3000);
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    // Uniform: each of three gets about 1000 of 3000.
    assert!(counts.values().all(|&n| (850..1150).contains(&n)), "{counts:?}");
}

#[test]
fn round_robin_walks_the_eligible_members_in_uuid_order() {
    let p = policy("policy = \"RoundRobin\"");
    assert_eq!(p.name(), "RoundRobin");
    let members = [member("c"), member("a"), Candidate { passive: true, ..member("aa") }, member("b")];
    let rr = AtomicU64::new(0);
    let mut rng = StdRng::seed_from_u64(0);
    let turns: Vec<String> = (0..7).map(|_| p.choose(ME, &members, &rr, &mut rng).unwrap()).collect();
    assert_eq!(turns, ["a", "b", "c", "a", "b", "c", "a"]);
    // The counter is the caller's: another decision continues where it stands.
    assert_eq!(p.choose(ME, &members, &AtomicU64::new(5), &mut rng).unwrap(), "c");
}

#[test]
fn load_with_a_single_weighted_first_group_takes_the_least_loaded() {
    let members = [loaded("a", 5, 0.5), loaded("b", 1, 0.1), loaded("c", 9, 0.9), loaded("d", 3, 0.3)];
    let p = policy("policy = \"Load\"\nconfig.groupWeight = \"1,0,0,0\"");
    assert_eq!(p.name(), "Load");
    assert_eq!(draws(&p, &members, 50), BTreeMap::from([("b".to_owned(), 50)]));

    // 1,0 over two members: groups of one, the less loaded always.
    let p = policy("policy = \"Load\"\nconfig.groupWeight = \"1,0\"");
    assert_eq!(draws(&p, &members[..2], 50), BTreeMap::from([("b".to_owned(), 50)]));
}

#[test]
fn load_by_default_spreads_over_the_less_loaded_half() {
    let members = [loaded("a", 5, 0.5), loaded("b", 1, 0.1), loaded("c", 9, 0.9), loaded("d", 3, 0.3)];
    let counts = draws(&policy("policy = \"Load\""), &members, 400);
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["b", "d"]);
    assert!(counts.values().all(|&n| n > 150), "{counts:?}");
}

#[test]
fn load_weights_decide_which_criterion_counts() {
    // a runs many executions on an idle CPU; b runs none on a busy one.
    let a = Candidate { running: 9, capacity: 10, load1: 0.0, ..member("a") };
    let b = Candidate { running: 0, capacity: 10, load1: 4.0, cpus: 2, ..member("b") };
    let members = [a, b];
    let by_threads = policy("policy = \"Load\"\nconfig.weights = \"1,0\"");
    assert_eq!(choose(&by_threads, &members).unwrap(), "b");
    let by_cpu = policy("policy = \"Load\"\nconfig.weights = [0, 1]");
    assert_eq!(choose(&by_cpu, &members).unwrap(), "a");
    // Equal weights: a scores 0.9, b 2.0.
    assert_eq!(choose(&policy("policy = \"Load\""), &members).unwrap(), "a");
    // Criteria alone get one weight each.
    let only_threads = policy("policy = \"Load\"\nconfig.criteria = \"threadRatio\"");
    assert_eq!(choose(&only_threads, &members).unwrap(), "b");
}

#[test]
fn load_draws_groups_in_proportion_to_their_weights() {
    let members = [loaded("busy", 8, 0.8), loaded("idle", 0, 0.0)];
    let counts = draws(&policy("policy = \"Load\"\nconfig.groupWeight = [3, 1]"), &members, 4000);
    assert!((2800..3200).contains(&counts["idle"]), "{counts:?}");
    assert_eq!(counts["idle"] + counts["busy"], 4000);
}

#[test]
fn load_ties_go_to_the_lowest_uuid_and_empty_weighted_groups_fall_back() {
    let members = [member("c"), member("a"), member("b")];
    let p = policy("policy = \"Load\"\nconfig.groupWeight = \"1,0,0\"");
    assert_eq!(draws(&p, &members, 30), BTreeMap::from([("a".to_owned(), 30)]));
    // One member, so the second group (the only weighted one) is empty: the member still runs it.
    let p = policy("policy = \"Load\"\nconfig.groupWeight = \"0,1\"");
    assert_eq!(choose(&p, &[member("a")]).unwrap(), "a");
}

#[test]
fn load_treats_missing_capacity_and_cpu_figures_as_full() {
    let no_capacity = Candidate { capacity: 0, ..member("a") };
    let garbage_load = Candidate { load1: f64::NAN, ..member("b") };
    let busy = loaded("c", 9, 0.9);
    let p = policy("policy = \"Load\"\nconfig.groupWeight = \"1,0,0\"");
    // Scores: a 1.0 + 0, b 0 + 1.0, c 0.9 + 0.9: a and b tie, a wins by uuid; NaN does not
    // make b the least loaded.
    assert_eq!(choose(&p, &[busy.clone(), garbage_load.clone(), no_capacity]).unwrap(), "a");
    assert_eq!(choose(&p, &[busy, garbage_load, loaded("z", 1, 0.1)]).unwrap(), "z");
}

#[test]
fn allowed_self_other_uuid_and_regex() {
    let members = [member(ME), member("1C519C5A-4E78-1"), member("X1C519C5A-4E78-2"), member("b")];
    assert_eq!(reachable("config.allowed = \"Self\"", &members), [ME]);
    assert_eq!(reachable("config.allowed = \"Other\"", &members), ["1C519C5A-4E78-1", "X1C519C5A-4E78-2", "b"]);
    assert_eq!(reachable("config.allowed = \"b\"", &members), ["b"]);
    // The regex matches whole uuids: X1C519C5A-... contains a match but does not match.
    assert_eq!(reachable("config.allowed = \"Self, /1C519C5A-4E78-.+/\"", &members), ["1C519C5A-4E78-1", ME]);
    assert_eq!(reachable("config.allowed = \"*\"", &members).len(), 4);
    // A regex with a comma is written as an array element.
    assert_eq!(reachable("config.allowed = [\"/[a-c]{1,2}/\"]", &members), ["b"]);
}

#[test]
fn allowed_tags_or_and_any() {
    let members = [
        tagged("linux-worker", &["worker", "linux"]),
        tagged("win-worker", &["worker", "windows"]),
        tagged("db", &["db"]),
        member("untagged"),
    ];
    assert_eq!(reachable("config.allowedTags = \"db, windows\"", &members), ["db", "win-worker"]);
    assert_eq!(reachable("config.allowedTags = \"worker + linux\"", &members), ["linux-worker"]);
    assert_eq!(reachable("config.allowedTags = [\"worker+windows\", \"db\"]", &members), ["db", "win-worker"]);
    assert_eq!(reachable("config.allowedTags = \"*\"", &members).len(), 4);
    // Tags are case-sensitive.
    assert!(choose(&policy("policy = \"Random\"\nconfig.allowedTags = \"DB\""), &members).is_err());
}

#[test]
fn the_self_tag_is_on_the_deciding_member_only() {
    // "impostor" reports a Self tag; it does not count.
    let members = [tagged(ME, &["worker"]), tagged("impostor", &["Self", "worker"]), tagged("other", &["worker"])];
    assert_eq!(reachable("config.allowedTags = \"Self\"", &members), [ME]);
    assert_eq!(reachable("config.allowedTags = \"Self+worker\"", &members), [ME]);
    assert_eq!(reachable("config.allowedTags = \"Self,impostor\"", &members), [ME]);
}

#[test]
fn preferred_tags_narrow_the_choice_and_fall_back_when_nobody_matches() {
    let members =
        [tagged("fast", &["ssd"]), tagged("slow", &["hdd"]), Candidate { active: false, ..tagged("down", &["ssd"]) }];
    assert_eq!(reachable("config.preferredTags = \"ssd\"", &members), ["fast"]);
    // No eligible member is preferred ("down" is, but may not run): all eligible ones are used.
    let fallback = [
        tagged("slow", &["hdd"]),
        tagged("slower", &["tape"]),
        Candidate { active: false, ..tagged("down", &["ssd"]) },
    ];
    assert_eq!(reachable("config.preferredTags = \"ssd\"", &fallback), ["slow", "slower"]);
    // Preferred members are chosen among the allowed ones only.
    assert_eq!(reachable("config.allowedTags = \"hdd\"\nconfig.preferredTags = \"ssd\"", &members), ["slow"]);
}

#[test]
fn active_only_false_admits_inactive_members_but_never_passive_ones() {
    let members = [member("a"), Candidate { active: false, ..member("b") }, Candidate { passive: true, ..member("c") }];
    assert_eq!(reachable("", &members), ["a"]);
    assert_eq!(reachable("config.activeOnly = true", &members), ["a"]);
    assert_eq!(reachable("config.activeOnly = false", &members), ["a", "b"]);
}

#[test]
fn no_eligible_member_says_why_for_each() {
    let members = [
        Candidate { passive: true, ..member("a") },
        Candidate { active: false, ..member("b") },
        tagged("c", &["db"]),
        member(ME),
    ];
    let p = policy("policy = \"RoundRobin\"\nconfig.allowed = \"Other\"\nconfig.allowedTags = \"worker\"");
    let err = choose(&p, &members).unwrap_err();
    assert_eq!(
        err.reason,
        "a is passive; b is not active (activeOnly is true); \
         c has tags [\"db\"], not matching allowedTags \"worker\"; me is not in allowed \"Other\""
    );
    assert_eq!(choose(&p, &[]).unwrap_err().reason, "the heartbeat table lists no members");

    let profiled = parse("[remoteExecution.profiles.linux]\nprojects = \"P\"\npolicy = \"Random\"").unwrap();
    let err = choose(profiled.policy_for("P"), &[]).unwrap_err();
    assert_eq!(err.profile.as_deref(), Some("linux"));
    assert!(
        err.to_string().starts_with(
            "no cluster member may run this execution under the Random remote execution policy of profile \"linux\": "
        ),
        "{err}"
    );
}

#[test]
fn every_bad_setting_is_named() {
    let cases = [
        ("policy = \"Foo\"", "remoteExecution.policy", "unknown policy \"Foo\" (expected None, Preset, Random, RoundRobin or Load)"),
        ("policy = \"roundrobin\"", "remoteExecution.policy", "unknown policy"),
        ("policy = \"Preset\"", "remoteExecution.config.uuid", "the Preset policy needs the uuid"),
        ("policy = \"Preset\"\nconfig.uuid = \" \"", "remoteExecution.config.uuid", "is empty"),
        ("config.allowed = \"\"", "remoteExecution.config.allowed", "is empty"),
        ("config.allowed = []", "remoteExecution.config.allowed", "is empty"),
        ("config.allowed = \"Self,,Other\"", "remoteExecution.config.allowed", "empty item"),
        ("config.allowed = \"/[a-/\"", "remoteExecution.config.allowed", "invalid regex /[a-/: regex parse error"),
        ("config.allowed = \"*, /(/\"", "remoteExecution.config.allowed", "invalid regex"),
        ("config.allowed = \"/abc\"", "remoteExecution.config.allowed", "does not end with /"),
        ("config.allowed = \"//\"", "remoteExecution.config.allowed", "empty"),
        ("config.allowed = \"two words\"", "remoteExecution.config.allowed", "contains a space"),
        ("config.allowedTags = \"a,,b\"", "remoteExecution.config.allowedTags", "empty item"),
        ("config.allowedTags = \"a+\"", "remoteExecution.config.allowedTags", "empty tag"),
        ("config.allowedTags = \"+b\"", "remoteExecution.config.allowedTags", "empty tag"),
        ("config.allowedTags = \"a b+c\"", "remoteExecution.config.allowedTags", "space"),
        ("config.allowedTags = \"a+*\"", "remoteExecution.config.allowedTags", "* stands alone"),
        ("config.allowedTags = [\"a,b\"]", "remoteExecution.config.allowedTags", "comma"),
        ("config.allowedTags = \"*,a+\"", "remoteExecution.config.allowedTags", "empty tag"),
        ("config.preferredTags = \"x++y\"", "remoteExecution.config.preferredTags", "empty tag"),
        ("config.criteria = \"threadRatio, cpu\"", "remoteExecution.config.criteria", "unknown criterion \"cpu\""),
        ("config.criteria = \"load,load\"", "remoteExecution.config.criteria", "twice"),
        ("config.weights = \"1\"", "remoteExecution.config.weights", "1 weights for 2 criteria"),
        ("config.weights = \"1,x\"", "remoteExecution.config.weights", "\"x\" is not a number"),
        ("config.weights = [-1, 1]", "remoteExecution.config.weights", "-1 is not a finite, non-negative number"),
        ("config.weights = \"0,0\"", "remoteExecution.config.weights", "every weight is 0"),
        ("config.groupWeight = \"0, 0\"", "remoteExecution.config.groupWeight", "every group weight is 0"),
        ("config.groupWeight = \"\"", "remoteExecution.config.groupWeight", "is empty"),
        ("config.groupWeight = \"inf\"", "remoteExecution.config.groupWeight", "not a finite"),
        ("[remoteExecution.profiles.linux]\npolicy = \"Random\"", "remoteExecution.profiles.linux.projects", "is missing"),
        ("[remoteExecution.profiles.linux]\nprojects = []", "remoteExecution.profiles.linux.projects", "is empty"),
        (
            "[remoteExecution.profiles.linux]\nprojects = \"P\"\npolicy = \"Bar\"",
            "remoteExecution.profiles.linux.policy",
            "unknown policy \"Bar\"",
        ),
        (
            "[remoteExecution.profiles.linux]\nprojects = \"P\"\nconfig.allowedTags = \"a+\"",
            "remoteExecution.profiles.linux.config.allowedTags",
            "empty tag",
        ),
        (
            "[remoteExecution.profiles.linux]\nprojects = \"P\"\npolicy = \"Preset\"",
            "remoteExecution.profiles.linux.config.uuid",
            "needs the uuid",
        ),
        (
            "[remoteExecution.profiles.a]\nprojects = \"P, Q\"\n[remoteExecution.profiles.b]\nprojects = [\"R\", \"Q\"]",
            "remoteExecution.profiles.b.projects",
            "project \"Q\" is also in profile \"a\"",
        ),
    ];
    for (toml_text, setting, message) in cases {
        let err = error(toml_text);
        assert_eq!(err.setting, setting, "{toml_text}: {err}");
        assert!(err.message.contains(message), "{toml_text}: {err}");
        assert!(err.to_string().starts_with(&format!("{setting}: ")), "{err}");
    }
}

#[test]
fn keys_are_checked_even_when_the_policy_does_not_use_them() {
    assert_eq!(error("policy = \"None\"\nconfig.criteria = \"cpu\"").setting, "remoteExecution.config.criteria");
}

#[test]
fn unknown_and_misspelt_keys_are_refused_by_the_file_format() {
    for text in ["config.allowedtags = \"a\"", "polciy = \"Random\"", "[remoteExecution.profiles.p]\nproject = \"P\""] {
        let err = toml::from_str::<Root>(&format!("[remoteExecution]\n{text}")).err();
        assert!(err.as_ref().is_some_and(|e| e.to_string().contains("unknown field")), "{text}: {err:?}");
    }
    let err = toml::from_str::<Root>("[remoteExecution]\nconfig.allowed = 3").err().expect("a number is no list");
    assert!(err.to_string().contains("a comma-separated string or an array of strings"), "{err}");
}

#[test]
fn numbers_may_be_a_string_a_number_or_an_array() {
    let members = [loaded("a", 1, 0.0), loaded("b", 0, 0.0)];
    for weights in ["\"1, 0\"", "[1, 0]", "[1.0, 0.0]"] {
        let p = policy(&format!("policy = \"Load\"\nconfig.weights = {weights}\nconfig.groupWeight = 1"));
        // One group: both members reachable, so the single-number groupWeight was taken as [1].
        assert_eq!(draws(&p, &members, 100).len(), 2, "{weights}");
    }
}

#[test]
fn profiles_give_their_projects_a_policy_of_their_own() {
    let placement = parse(
        "policy = \"Random\"\nconfig.allowed = \"Other\"\n\
         [remoteExecution.profiles.linux]\nprojects = \"Example, Test1\"\npolicy = \"Preset\"\nconfig.uuid = \"b\"\n\
         [remoteExecution.profiles.local]\nprojects = [\"Ops\", \"Ops\"]\n\
         [remoteExecution.profiles.spread]\nprojects = \"Batch\"\npolicy = \"RoundRobin\"",
    )
    .unwrap();
    let members = [member(ME), member("a"), member("b")];
    assert_eq!(placement.policy_for("Example").name(), "Preset");
    assert_eq!(placement.policy_for("Test1").profile(), Some("linux"));
    assert_eq!(choose(placement.policy_for("Test1"), &members).unwrap(), "b");
    // A profile without a policy runs locally; projects are case-sensitive.
    assert_eq!(placement.policy_for("Ops").name(), "None");
    assert_eq!(placement.policy_for("ops").name(), "Random");
    assert_eq!(placement.policy_for("Other").profile(), None);
    // The default's allowed = Other is not inherited: RoundRobin reaches me too.
    assert_eq!(draws(placement.policy_for("Batch"), &members, 3).into_keys().collect::<Vec<_>>(), ["a", "b", ME]);
    assert!(!draws(placement.policy_for("Other"), &members, 100).contains_key(ME));
}

#[test]
fn check_members_names_the_setting_of_an_unknown_uuid() {
    let members = ["a".to_owned(), "b".to_owned()];
    let placement = parse(
        "policy = \"Random\"\nconfig.allowed = \"Self, a, /c.*/\"\n\
         [remoteExecution.profiles.linux]\nprojects = \"P\"\npolicy = \"Preset\"\nconfig.uuid = \"c\"",
    )
    .unwrap();
    let err = placement.check_members(&members).unwrap_err();
    assert_eq!(err.setting, "remoteExecution.profiles.linux.config.uuid");
    assert_eq!(err.message, "\"c\" is not a cluster member (members: a, b)");
    assert_eq!(placement.check_members(&["a".to_owned(), "c".to_owned()]), Ok(()));

    let placement = parse("config.allowed = \"Other, x\"").unwrap();
    assert_eq!(placement.check_members(&members).unwrap_err().setting, "remoteExecution.config.allowed");
    assert_eq!(Placement::none().check_members(&[]), Ok(()));
}
