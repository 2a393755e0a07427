//! The executor as a job's author sees it: what the steps run with, what lands in the log, and
//! how failures, error handlers, timeouts and aborts end an execution.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use steward::exec::{
    abort_pair, option_var, AbortKind, AbortSignal, Context, Execution, Executor, FailureReason, JobRef, JobRefCall,
    JobRefRunner, JobVars, Sequence, Status, Step, StepKind, StepOutcome,
};
use steward::logs::{LogEntry, LogLevel, LogSink};

use crate::fixture::{alive, wait_for, KillOnDrop};

/// Collects entries in memory.
#[derive(Default)]
struct Collect(Mutex<Vec<LogEntry>>);

impl LogSink for Collect {
    fn emit(&self, entry: LogEntry) {
        self.0.lock().unwrap().push(entry);
    }
}

impl Collect {
    fn entries(&self) -> Vec<LogEntry> {
        self.0.lock().unwrap().clone()
    }

    fn texts(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.log).collect()
    }

    fn text_of(&self, step_ctx: &str) -> Vec<String> {
        self.entries().into_iter().filter(|e| e.step_ctx.as_deref() == Some(step_ctx)).map(|e| e.log).collect()
    }
}

fn execution(steps: Vec<Step>, keepgoing: bool) -> Execution {
    Execution {
        sequence: Sequence { steps, keepgoing },
        context: Context { node: Some("member-1".into()), user: Some("alice".into()), ..Default::default() },
        timeout: None,
    }
}

/// Every test here starts its steps through the step guard, as the `steward` binary does (the
/// in-process cluster tests start them directly).
fn executor() -> Executor {
    Executor::new()
        .with_kill_grace(Duration::from_millis(300))
        .with_step_guard(env!("CARGO_BIN_EXE_steward-step-guard"))
}

async fn run(exec: &Execution) -> (steward::exec::Outcome, Collect) {
    let sink = Collect::default();
    let outcome = executor().run(exec, &sink, AbortSignal::never()).await;
    (outcome, sink)
}

fn pids_in(lines: &[String]) -> Vec<i32> {
    lines.iter().filter_map(|l| l.strip_prefix("pid ")).map(|p| p.trim().parse().expect("a pid")).collect()
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_line_by_line_with_timestamps_and_the_last_line_without_newline() {
    let before = chrono::Utc::now();
    let exec = execution(vec![Step::exec("echo one; echo two >&2; printf 'three'")], false);
    let (outcome, sink) = run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded);
    let entries = sink.entries();
    let lines: Vec<_> = entries.iter().map(|e| (e.log.as_str(), e.level)).collect();
    assert!(lines.contains(&("one", LogLevel::Normal)), "{lines:?}");
    assert!(lines.contains(&("two", LogLevel::Error)), "{lines:?}");
    assert!(lines.contains(&("three", LogLevel::Normal)), "{lines:?}");
    for e in &entries {
        assert!(e.time >= before && e.time <= outcome.ended, "{e:?}");
        assert_eq!(e.step_ctx.as_deref(), Some("1"));
        assert_eq!(e.node.as_deref(), Some("member-1"));
        assert_eq!(e.user.as_deref(), Some("alice"));
    }
    assert_eq!(outcome.steps.len(), 1);
    assert!(outcome.steps[0].started <= outcome.steps[0].ended);
}

#[tokio::test]
async fn steps_get_rundecks_variables_and_the_working_directory_but_not_the_members_settings() {
    let dir = tempfile::tempdir().unwrap();
    let vars = JobVars {
        id: "job-uuid".into(),
        exec_id: 42,
        name: "nightly".into(),
        group: "ops/db".into(),
        project: "prod".into(),
        username: "alice".into(),
        loglevel: "INFO".into(),
        scheduled_time: chrono::DateTime::from_timestamp(1_700_000_000, 0),
        ..Default::default()
    };
    let mut exec = execution(
        vec![Step::exec(
            "echo \"$RD_JOB_ID $RD_JOB_EXECID $RD_JOB_NAME $RD_JOB_GROUP $RD_JOB_PROJECT $RD_JOB_USERNAME \
             $RD_JOB_LOGLEVEL $RD_JOB_SCHEDULEDEXECUTION\"; echo \"opt=$RD_OPTION_DB_HOST\"; pwd; \
             echo \"leak=${STEWARD_EXEC_TEST_SETTING:-none}\"",
        )],
        false,
    );
    exec.context.env = vars.to_env();
    exec.context.env.push(option_var("db-host", "db1.internal"));
    exec.context.working_dir = Some(dir.path().to_path_buf());
    // A member setting in the member's environment must not reach the job.
    std::env::set_var("STEWARD_EXEC_TEST_SETTING", "member-only");
    let (outcome, sink) = run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded);
    let out = sink.texts();
    assert_eq!(out[0], "job-uuid 42 nightly ops/db prod alice INFO 2023-11-14T22:13:20Z");
    assert_eq!(out[1], "opt=db1.internal");
    assert_eq!(PathBuf::from(&out[2]).canonicalize().unwrap(), dir.path().canonicalize().unwrap());
    assert_eq!(out[3], "leak=none");
}

#[tokio::test]
async fn scripts_run_by_their_shebang_by_sh_or_by_the_given_interpreter_and_their_files_are_removed() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("not-executable.sh");
    std::fs::write(&file, "echo \"from file $1\"\n").unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let exec = execution(
        vec![
            Step::new(StepKind::Script {
                body: "#!/bin/sh -e\necho \"shebang $1 $2\"\n[ -x \"$0\" ] && echo executable".into(),
                args: vec!["a b".into(), "c".into()],
                interpreter: None,
            }),
            Step::script("echo plain sh"),
            Step::new(StepKind::Script {
                body: "print('python', 6*7)".into(),
                args: vec![],
                interpreter: Some("python3 -u".into()),
            }),
            Step::new(StepKind::ScriptFile { path: file, args: vec!["x".into()], interpreter: None }),
        ],
        false,
    );
    let sink = Collect::default();
    let outcome = executor().with_scratch_dir(scripts.path()).run(&exec, &sink, AbortSignal::never()).await;
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", sink.texts());
    assert_eq!(sink.text_of("1"), vec!["shebang a b c", "executable"]);
    assert_eq!(sink.text_of("2"), vec!["plain sh"]);
    assert_eq!(sink.text_of("3"), vec!["python 42"]);
    assert_eq!(sink.text_of("4"), vec!["from file x"]);
    assert_eq!(std::fs::read_dir(scripts.path()).unwrap().count(), 0, "script files are removed");
}

#[tokio::test]
async fn secrets_are_masked_in_every_line_before_anything_is_written() {
    let mut exec = execution(
        vec![Step::exec("echo token=s3cr3t-value; echo s3cr3t-value >&2; echo 'pw: hunter2'; exit 4")],
        false,
    );
    exec.context.secrets = vec!["s3cr3t-value".into(), "hunter2".into()];
    let (outcome, sink) = run(&exec).await;
    assert_eq!(outcome.status, Status::Failed);
    let all = sink.texts().join("\n");
    assert!(!all.contains("s3cr3t") && !all.contains("hunter2"), "{all}");
    assert!(all.contains("token=*****") && all.contains("pw: *****"), "{all}");
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_execution_and_names_the_step_and_code() {
    let exec = execution(vec![Step::exec("true"), Step::exec("echo failing; exit 3"), Step::exec("echo never")], false);
    let (outcome, sink) = run(&exec).await;
    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(outcome.steps.len(), 2, "the third step does not run");
    let failed = outcome.failed_step().expect("a failed step");
    assert_eq!(failed.step_ctx, "2");
    assert_eq!(outcome.exit_code(), Some(3));
    assert!(sink.text_of("2").contains(&"Failed: NonZeroResultCode: Result code was 3".to_string()));
    assert!(!sink.texts().contains(&"never".to_string()));

    // A step that cannot start fails too, saying why.
    let mut exec = execution(vec![Step::exec("true")], false);
    exec.context.working_dir = Some("/nonexistent/steward-test".into());
    let (outcome, _) = run(&exec).await;
    assert_eq!(outcome.status, Status::Failed);
    assert!(matches!(outcome.steps[0].reason, Some(FailureReason::NotStarted(_))));
}

#[tokio::test]
async fn keepgoing_and_error_handlers_follow_rundeck() {
    let fail = || Step::exec("exit 1");
    let ok = || Step::exec("true");
    // (what, steps, keepgoing, expected status, the step contexts that ran)
    type Case = (&'static str, Vec<Step>, bool, Status, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        ("no keepgoing stops at the failure", vec![fail(), ok()], false, Status::Failed, vec!["1"]),
        ("keepgoing runs the rest and still fails", vec![fail(), ok()], true, Status::Failed, vec!["1", "2"]),
        (
            "keepgoing with a recovering handler succeeds",
            vec![fail().with_error_handler(ok(), false), ok()],
            true,
            Status::Succeeded,
            vec!["1", "2"],
        ),
        (
            "no keepgoing: a recovering handler still stops the sequence",
            vec![fail().with_error_handler(ok(), false), ok()],
            false,
            Status::Failed,
            vec!["1"],
        ),
        (
            "no keepgoing: keepgoingOnSuccess lets a recovered step go on",
            vec![fail().with_error_handler(ok(), true), ok()],
            false,
            Status::Succeeded,
            vec!["1", "2"],
        ),
        (
            "a failing handler fails the step",
            vec![fail().with_error_handler(fail(), true), ok()],
            true,
            Status::Failed,
            vec!["1", "2"],
        ),
        (
            "a handler does not run for a step that succeeds",
            vec![ok().with_error_handler(fail(), false)],
            false,
            Status::Succeeded,
            vec!["1"],
        ),
    ];
    for (name, steps, keepgoing, status, ran) in cases {
        let (outcome, _) = run(&execution(steps, keepgoing)).await;
        assert_eq!(outcome.status, status, "{name}");
        assert_eq!(outcome.steps.iter().map(|s| s.step_ctx.as_str()).collect::<Vec<_>>(), ran, "{name}");
    }

    // The handler's output carries its own step context, and the step counts as recovered.
    let exec = execution(vec![Step::exec("exit 2").with_error_handler(Step::exec("echo handling"), false)], true);
    let (outcome, sink) = run(&exec).await;
    assert_eq!(sink.text_of("1e"), vec!["handling"]);
    assert!(outcome.steps[0].recovered());
    assert_eq!(outcome.steps[0].handler.as_ref().unwrap().status, Status::Succeeded);
}

/// A script that starts a grandchild and prints both pids, then waits.
fn spawner(ignore_term: bool) -> Step {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    Step::script(format!("{trap}echo \"pid $$\"\n(sleep 1000) &\necho \"pid $!\"\nwhile true; do sleep 1; done\n"))
}

async fn wait_for_pids(sink: &Collect, n: usize) -> Vec<i32> {
    wait_for(Duration::from_secs(10), "the step to print its pids", || async {
        let pids = pids_in(&sink.text_of("1"));
        (pids.len() >= n).then_some(pids)
    })
    .await
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_grandchildren_included() {
    // The second case ignores SIGTERM: only the SIGKILL after the grace period stops it.
    for ignore_term in [false, true] {
        let mut exec = execution(vec![spawner(ignore_term), Step::exec("echo never")], false);
        exec.timeout = Some(Duration::from_millis(700));
        let (outcome, sink) = run(&exec).await;
        assert_eq!(outcome.status, Status::TimedOut, "ignore_term={ignore_term}");
        assert_eq!(outcome.steps.len(), 1);
        assert_eq!(outcome.steps[0].status, Status::TimedOut);
        let pids = pids_in(&sink.text_of("1"));
        assert_eq!(pids.len(), 2, "{:?}", sink.texts());
        for pid in pids {
            wait_for(Duration::from_secs(5), &format!("process {pid} to be gone"), || async move {
                (!alive(pid)).then_some(())
            })
            .await;
        }
        let note = sink.entries().into_iter().find(|e| e.log.starts_with("Execution timed out")).expect("a note");
        assert_eq!((note.level, note.step_ctx), (LogLevel::Error, None), "an execution-level message has no step");
    }
}

#[tokio::test]
async fn abort_kills_the_process_group_and_runs_nothing_more() {
    let exec = execution(vec![spawner(false), Step::exec("echo never")], true);
    let (handle, signal) = abort_pair();
    let sink = Arc::new(Collect::default());
    let task = {
        let sink = sink.clone();
        tokio::spawn(async move { executor().run(&exec, &*sink, signal).await })
    };
    let pids = wait_for_pids(&sink, 2).await;
    handle.abort(AbortKind::Abort);
    let outcome = task.await.unwrap();
    assert_eq!(outcome.status, Status::Aborted);
    assert_eq!(outcome.steps.len(), 1);
    assert!(!sink.texts().contains(&"never".to_string()));
    for pid in pids {
        wait_for(
            Duration::from_secs(5),
            "the aborted processes to be gone",
            || async move { (!alive(pid)).then_some(()) },
        )
        .await;
    }
}

#[tokio::test]
async fn force_incomplete_kills_at_once_even_during_an_aborts_grace_period() {
    for abort_first in [false, true] {
        let exec = execution(vec![spawner(true)], false);
        let (handle, signal) = abort_pair();
        let sink = Arc::new(Collect::default());
        // A grace period far longer than the test may take: only SIGKILL at once ends it.
        let ex = executor().with_kill_grace(Duration::from_secs(60));
        let task = {
            let sink = sink.clone();
            tokio::spawn(async move { ex.run(&exec, &*sink, signal).await })
        };
        let pids = wait_for_pids(&sink, 2).await;
        let started = Instant::now();
        if abort_first {
            handle.abort(AbortKind::Abort);
            tokio::time::sleep(Duration::from_millis(100)).await; // let the SIGTERM be ignored
        }
        handle.abort(AbortKind::ForceIncomplete);
        let outcome = tokio::time::timeout(Duration::from_secs(10), task).await.expect("ends promptly").unwrap();
        assert_eq!(outcome.status, Status::Incomplete, "abort_first={abort_first}");
        assert!(started.elapsed() < Duration::from_secs(10));
        for pid in pids {
            wait_for(Duration::from_secs(5), "the processes to be gone", || async move { (!alive(pid)).then_some(()) })
                .await;
        }
    }
}

#[tokio::test]
async fn a_step_that_leaves_a_daemon_holding_its_output_still_ends() {
    let exec = execution(vec![Step::exec("sleep 1000 & echo \"pid $!\"")], false);
    let started = Instant::now();
    let (outcome, sink) = run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Rundeck leaves such a daemon alone; the test cleans it up.
    for pid in pids_in(&sink.text_of("1")) {
        assert!(alive(pid));
        // SAFETY: plain kill of the sleep this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Runs a referenced job as two steps of this execution.
struct TwoStepJobs;

impl JobRefRunner for TwoStepJobs {
    fn run_job_ref<'a>(&'a self, call: JobRefCall<'a>) -> BoxFuture<'a, StepOutcome> {
        async move {
            let code = if call.job.name.as_deref() == Some("broken") { 5 } else { 0 };
            let seq = Sequence {
                steps: vec![Step::exec("echo inner"), Step::exec(format!("exit {code}"))],
                keepgoing: false,
            };
            let prefix = format!("{}/", call.step_ctx);
            let r = call.executor.run_sequence(&seq, &prefix, call.context, call.sink, call.control).await;
            if r.failed {
                StepOutcome::Failed(FailureReason::JobRef(format!(
                    "{} failed",
                    call.job.name.clone().unwrap_or_default()
                )))
            } else {
                StepOutcome::Succeeded
            }
        }
        .boxed()
    }
}

#[tokio::test]
async fn job_references_run_through_the_callers_runner_with_nested_step_contexts() {
    let job = |name: &str| Step::new(StepKind::JobRef(JobRef { name: Some(name.into()), ..Default::default() }));
    let exec = execution(vec![Step::exec("echo outer"), job("fine"), job("broken")], false);
    let sink = Collect::default();
    let outcome = executor().with_job_refs(Arc::new(TwoStepJobs)).run(&exec, &sink, AbortSignal::never()).await;
    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(sink.text_of("2/1"), vec!["inner"]);
    assert_eq!(sink.text_of("3/1"), vec!["inner"]);
    assert_eq!(outcome.failed_step().unwrap().step_ctx, "3");
    assert_eq!(outcome.failed_step().unwrap().reason, Some(FailureReason::JobRef("broken failed".into())));

    // Without a runner a job reference fails rather than being skipped.
    let (outcome, _) = run(&execution(vec![job("fine")], false)).await;
    assert_eq!(outcome.status, Status::Failed);
}

#[tokio::test]
async fn through_the_step_guard_a_step_ends_as_it_would_without_it() {
    use std::os::unix::process::ExitStatusExt;
    for guarded in [false, true] {
        let ex = if guarded { executor() } else { Executor::new() };
        let run = |steps| {
            let ex = ex.clone();
            async move {
                let sink = Collect::default();
                let outcome = ex.run(&execution(steps, false), &sink, AbortSignal::never()).await;
                (outcome, sink)
            }
        };
        // The exit code, and the output.
        let (outcome, sink) = run(vec![Step::exec("echo out; echo err >&2; exit 7")]).await;
        assert_eq!(outcome.steps[0].reason, Some(FailureReason::ExitCode(7)), "guarded={guarded}");
        assert_eq!(sink.text_of("1")[..2], ["out".to_string(), "err".to_string()], "guarded={guarded}");
        // Death by a signal.
        let (outcome, _) = run(vec![Step::exec("kill -KILL $$")]).await;
        assert_eq!(outcome.steps[0].reason, Some(FailureReason::Signal(libc::SIGKILL)), "guarded={guarded}");
        let (outcome, _) = run(vec![Step::exec("kill -TERM $$")]).await;
        assert_eq!(outcome.steps[0].reason, Some(FailureReason::Signal(libc::SIGTERM)), "guarded={guarded}");
        // A program that does not exist: not started, with the system's reason.
        let missing = Step::new(StepKind::Script {
            body: "true".into(),
            args: vec![],
            interpreter: Some("/nonexistent/steward-interpreter".into()),
        });
        let (outcome, _) = run(vec![missing]).await;
        let expected = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        match &outcome.steps[0].reason {
            Some(FailureReason::NotStarted(m)) => assert_eq!(m, &expected, "guarded={guarded}"),
            other => panic!("guarded={guarded}: {other:?}"),
        }
        // Only the step's own variables, and stdin is empty.
        let (outcome, sink) = run(vec![Step::exec("env | grep -c '^STEWARD_' ; wc -c")]).await;
        assert_eq!(outcome.status, Status::Succeeded, "guarded={guarded}");
        assert_eq!(sink.text_of("1"), vec!["0".to_string(), "0".to_string()], "guarded={guarded}");
    }
    // The guard mirrors a signal by dying of it itself: the status is a real signal status.
    // `steward` itself is a guard too (when the small program is missing).
    for guard in [env!("CARGO_BIN_EXE_steward-step-guard"), env!("CARGO_BIN_EXE_steward")] {
        let status = std::process::Command::new(guard)
            .args([steward::exec::guard::ARG, &std::process::id().to_string(), "/bin/sh", "-c", "kill -TERM $$"])
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{guard}");
    }
}

#[tokio::test]
async fn the_step_guard_reaps_what_a_long_step_leaves_behind() {
    // The guard is a child subreaper, so a step's processes whose parents end become its
    // children; those that end must not stay zombies while the step runs on (a long step
    // that keeps starting them would fill the process table). Inside the step, $PPID is the
    // guard.
    let script = "for i in 1 2 3 4 5 6 7 8; do (sh -c 'sleep 0.05' &); done; sleep 0.5; n=0; \
                  for p in $(cat /proc/$PPID/task/$PPID/children); do \
                  grep -q '^State:.Z' /proc/$p/status 2>/dev/null && n=$((n+1)); done; echo $n";
    let sink = Collect::default();
    let outcome = executor().run(&execution(vec![Step::exec(script)], false), &sink, AbortSignal::never()).await;
    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(sink.text_of("1"), vec!["0".to_string()], "zombies left under the guard");
}

#[tokio::test]
async fn the_step_guard_kills_the_step_and_all_its_descendants_when_its_parent_dies() {
    // A stand-in for a member: a shell that starts the guard and is then SIGKILLed. (The
    // guard leads a process group of its own even when not started as one.)
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The step, a grandchild in its group, and one that left the group for a session of its
    // own (out of reach of a group kill).
    let step = format!(
        "echo $$ >> {p}; (sleep 1000 & echo $! >> {p}; wait) & setsid sleep 1000 & echo $! >> {p}; wait",
        p = pids.display()
    );
    let mut member = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{guard} {arg} $$ /bin/sh -c '{step}' < /dev/null & wait",
            guard = env!("CARGO_BIN_EXE_steward-step-guard"),
            arg = steward::exec::guard::ARG,
        ))
        // Not this test's output: a step left running by a failure would hold it open.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // If the guard fails, they are killed when the test ends.
    let step = KillOnDrop::listed_in(&pids, 3, Duration::from_secs(10)).await;
    member.kill().unwrap();
    member.wait().unwrap();
    step.wait_gone(Duration::from_secs(10), "the step and all its descendants to die with the member").await;
}
