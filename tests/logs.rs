//! The execution log store, as the output API uses it, on the local filesystem and on a real
//! S3-compatible server (moto): one member writes, another reads.
//!
//! Every scenario runs on both backends. On each, the writer and the reader are two separate
//! `LogStore`s on the same directory or bucket, as two members would be.

use std::time::Duration;

use steward::exec::{AbortSignal, Context, Execution, Executor, Sequence, Status, Step};
use steward::logs::{
    LogBackend, LogEntry, LogError, LogLevel, LogSink, LogStore, LogStoreConfig, OutputChunk, OutputQuery, S3Config,
};

use crate::fixture::moto::{Moto, BUCKET};
use crate::fixture::wait_for;

struct Stores {
    /// The member running the execution, checkpointing every second (the default).
    writer: LogStore,
    /// The same, checkpointing every 100 ms, to keep the other scenarios quick.
    quick_writer: LogStore,
    /// Another member serving the output API.
    reader: LogStore,
}

impl Stores {
    fn open(config: &LogStoreConfig) -> Stores {
        assert_eq!(config.checkpoint_interval, Duration::from_secs(1));
        let quick = LogStoreConfig { checkpoint_interval: Duration::from_millis(100), ..config.clone() };
        Stores {
            writer: LogStore::open(config).expect("open the writer's store"),
            quick_writer: LogStore::open(&quick).expect("open the quick writer's store"),
            reader: LogStore::open(config).expect("open the reader's store"),
        }
    }
}

fn s3_config(moto: &Moto, bucket: &str) -> LogStoreConfig {
    let mut c = LogStoreConfig::local("/unused");
    c.backend = LogBackend::S3(S3Config {
        bucket: bucket.into(),
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(steward::secret::SecretText("testing".into())),
        allow_http: true,
        virtual_hosted_style: false,
    });
    c.prefix = "steward/test".into();
    c
}

fn line(i: usize) -> LogEntry {
    let mut e =
        LogEntry::now(if i.is_multiple_of(2) { LogLevel::Normal } else { LogLevel::Error }, format!("line {i}"));
    e.step_ctx = Some(if i.is_multiple_of(3) { "2".into() } else { "1".into() });
    e.node = Some(if i.is_multiple_of(5) { "other".into() } else { "m1".into() });
    e
}

fn texts(chunk: &OutputChunk) -> Vec<String> {
    chunk.entries.iter().map(|e| e.log.clone()).collect()
}

async fn read(store: &LogStore, id: u64, q: OutputQuery) -> OutputChunk {
    store.read(id, &q).await.unwrap_or_else(|e| panic!("reading execution {id}: {e}"))
}

/// Waits until the reader sees at least `n` entries from offset 0.
async fn wait_visible(store: &LogStore, id: u64, n: usize) -> OutputChunk {
    wait_for(Duration::from_secs(5), &format!("{n} entries of execution {id} to be readable"), || async {
        let c = read(store, id, OutputQuery::default()).await;
        (c.entries.len() >= n).then_some(c)
    })
    .await
}

/// The output of a running execution is readable on another member within the checkpoint
/// interval (1 s), and the next poll from the returned offset gets exactly the rest.
async fn a_running_executions_output_is_readable_elsewhere_before_it_ends(s: &Stores, id: u64) {
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("go-on");
    let exec = Execution {
        sequence: Sequence {
            steps: vec![Step::exec(format!(
                "echo first; while [ ! -e '{}' ]; do sleep 0.05; done; echo second",
                flag.display()
            ))],
            keepgoing: false,
        },
        context: Context { node: Some("m1".into()), user: Some("alice".into()), ..Default::default() },
        timeout: Some(Duration::from_secs(20)),
    };
    let writer = s.writer.writer(id);
    let executor = Executor::new();
    let started = std::time::Instant::now();
    let run = executor.run(&exec, &writer, AbortSignal::never());
    let watch = async {
        let chunk = wait_visible(&s.reader, id, 1).await;
        // One checkpoint interval, plus the time to start the step and to write and list.
        assert!(started.elapsed() < Duration::from_millis(2500), "seen after {:?}", started.elapsed());
        assert_eq!(texts(&chunk), vec!["first"]);
        assert!(!chunk.finished && !chunk.completed(), "the execution is still running");
        assert_eq!(chunk.entries[0].step_ctx.as_deref(), Some("1"));
        assert_eq!(chunk.entries[0].user.as_deref(), Some("alice"));
        std::fs::write(&flag, b"").unwrap();
        chunk.offset
    };
    let (outcome, offset) = tokio::join!(run, watch);
    assert_eq!(outcome.status, Status::Succeeded);
    let summary = writer.finish().await.expect("finish");
    let rest = read(&s.reader, id, OutputQuery { offset, ..Default::default() }).await;
    assert_eq!(texts(&rest), vec!["second"]);
    assert!(rest.finished && rest.completed());
    assert_eq!(rest.offset, summary.size);
    assert_eq!(rest.total_size, summary.size);
}

/// Tailing with `maxlines` from each returned offset yields every line once, in order, across
/// segments; an offset inside an entry moves on to the next entry.
async fn offsets_resume_exactly(s: &Stores, id: u64) {
    let writer = s.quick_writer.writer(id);
    for batch in 0..3 {
        for i in batch * 10..(batch + 1) * 10 {
            writer.emit(line(i));
        }
        // Each batch is checkpointed before the next one starts: several segments.
        wait_visible(&s.reader, id, (batch + 1) * 10).await;
    }
    let summary = writer.finish().await.unwrap();
    assert!(summary.segments >= 3, "{summary:?}");
    assert_eq!(summary.lines, 30);

    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let c = read(&s.reader, id, OutputQuery { offset, maxlines: Some(7), ..Default::default() }).await;
        assert!(c.entries.len() <= 7);
        assert!(c.offset >= offset);
        seen.extend(texts(&c));
        offset = c.offset;
        if c.completed() {
            break;
        }
        assert!(!c.entries.is_empty(), "no progress at offset {offset}");
    }
    assert_eq!(seen, (0..30).map(|i| format!("line {i}")).collect::<Vec<_>>());

    let first = read(&s.reader, id, OutputQuery { maxlines: Some(1), ..Default::default() }).await;
    let inside =
        read(&s.reader, id, OutputQuery { offset: first.offset - 3, maxlines: Some(1), ..Default::default() }).await;
    assert_eq!(texts(&inside), vec!["line 1"], "an offset inside entry 0 moves to entry 1");
    let past = read(&s.reader, id, OutputQuery { offset: u64::MAX, ..Default::default() }).await;
    assert!(past.entries.is_empty() && past.offset == past.total_size && past.completed());
}

/// `lastlines` gives the last N (across segments), `maxlines` the first N, and the node and
/// step filters keep only their entries.
async fn lastlines_maxlines_and_filters(s: &Stores, id: u64) {
    let writer = s.quick_writer.writer(id);
    for i in 0..12 {
        writer.emit(line(i));
    }
    wait_visible(&s.reader, id, 12).await;
    for i in 12..20 {
        writer.emit(line(i));
    }
    writer.finish().await.unwrap();

    let last = read(&s.reader, id, OutputQuery { lastlines: Some(10), ..Default::default() }).await;
    assert_eq!(texts(&last), (10..20).map(|i| format!("line {i}")).collect::<Vec<_>>());
    assert_eq!(last.offset, last.total_size, "lastlines answers with the end as the next offset");
    let all = read(&s.reader, id, OutputQuery { lastlines: Some(100), ..Default::default() }).await;
    assert_eq!(all.entries.len(), 20);
    let first = read(&s.reader, id, OutputQuery { maxlines: Some(3), ..Default::default() }).await;
    assert_eq!(texts(&first), vec!["line 0", "line 1", "line 2"]);
    assert!(!first.completed(), "more is left to read");

    let step2 = read(&s.reader, id, OutputQuery { step_ctx: Some("2".into()), ..Default::default() }).await;
    assert_eq!(
        texts(&step2),
        (0..20usize).filter(|i| i.is_multiple_of(3)).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(step2.offset, step2.total_size, "filtered-out entries are read past");
    let other =
        read(&s.reader, id, OutputQuery { node: Some("other".into()), lastlines: Some(2), ..Default::default() }).await;
    assert_eq!(texts(&other), vec!["line 10", "line 15"]);
}

/// A writer that goes away without finishing (its member crashed) leaves what it wrote
/// readable, and the log incomplete until it is sealed or a new writer finishes it.
async fn a_crashed_writer_leaves_readable_segments(s: &Stores, id: u64) {
    let writer = s.quick_writer.writer(id);
    writer.emit(line(0));
    writer.emit(line(1));
    wait_visible(&s.reader, id, 2).await;
    drop(writer);
    let c = read(&s.reader, id, OutputQuery::default()).await;
    assert_eq!(texts(&c), vec!["line 0", "line 1"]);
    assert!(!c.finished && !c.completed());

    // The member comes back: a new writer continues after the existing segments.
    let writer = s.quick_writer.resume_writer(id).await.unwrap();
    writer.emit(line(2));
    let summary = writer.finish().await.unwrap();
    let c = read(&s.reader, id, OutputQuery::default()).await;
    assert_eq!(texts(&c), vec!["line 0", "line 1", "line 2"]);
    assert!(c.completed());
    assert_eq!(c.total_size, summary.size);
    assert!(matches!(s.quick_writer.resume_writer(id).await, Err(LogError::AlreadyComplete(x)) if x == id));

    // The member never comes back: the log is sealed with what there is.
    let other = id + 1;
    let writer = s.quick_writer.writer(other);
    writer.emit(line(7));
    wait_visible(&s.reader, other, 1).await;
    drop(writer);
    s.reader.seal(other).await.unwrap();
    let c = read(&s.reader, other, OutputQuery::default()).await;
    assert_eq!(texts(&c), vec!["line 7"]);
    assert!(c.completed());

    // Deleting the execution removes its log.
    s.quick_writer.delete(other).await.unwrap();
    let c = read(&s.reader, other, OutputQuery::default()).await;
    assert!(c.entries.is_empty() && c.total_size == 0 && !c.finished);
}

/// Two writers of one execution (a member presumed dead comes back while another writes)
/// never overwrite each other's segments: the second to write a number moves to the next.
async fn two_writers_never_overwrite_each_other(s: &Stores, id: u64) {
    let a = s.quick_writer.writer(id);
    let b = s.quick_writer.writer(id);
    a.emit(line(1));
    wait_visible(&s.reader, id, 1).await;
    b.emit(line(2));
    wait_visible(&s.reader, id, 2).await;
    a.emit(line(3));
    a.finish().await.unwrap();
    b.finish().await.unwrap();
    let c = read(&s.reader, id, OutputQuery::default()).await;
    assert_eq!(texts(&c), vec!["line 1", "line 2", "line 3"]);
    assert!(c.completed());
}

/// An execution nobody wrote yet reads as empty, not as an error.
async fn an_unknown_execution_reads_as_empty(s: &Stores, id: u64) {
    let c = read(&s.reader, id, OutputQuery::default()).await;
    assert!(c.entries.is_empty() && c.total_size == 0 && c.offset == 0 && !c.finished);
}

async fn every_scenario(s: &Stores) {
    an_unknown_execution_reads_as_empty(s, 1).await;
    a_running_executions_output_is_readable_elsewhere_before_it_ends(s, 10).await;
    offsets_resume_exactly(s, 20).await;
    lastlines_maxlines_and_filters(s, 30).await;
    a_crashed_writer_leaves_readable_segments(s, 40).await;
    two_writers_never_overwrite_each_other(s, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_on_the_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogStoreConfig::local(dir.path().join("logs"));
    let stores = Stores::open(&config);
    stores.quick_writer.check().await.expect("the local store answers");
    every_scenario(&stores).await;
    // The objects are where the module doc says.
    assert!(dir.path().join("logs/executions/20/00000000.v1.jsonl").is_file());
    assert!(dir.path().join("logs/executions/20/complete.v1.json").is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("logs")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "job output is readable by the member's user only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_on_an_s3_compatible_server() {
    let moto = Moto::start().await;
    let stores = Stores::open(&s3_config(&moto, BUCKET));
    stores.quick_writer.check().await.expect("the bucket answers");
    every_scenario(&stores).await;

    // A bucket that does not exist is reported by the start-up check, not at the first run.
    let missing = LogStore::open(&s3_config(&moto, "no-such-bucket")).unwrap();
    assert!(missing.check().await.is_err());
    drop(moto);
}

/// Output written while the store is unreachable is kept and written once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_survives_a_store_that_is_down_for_a_while() {
    let addr = crate::fixture::process::free_addr();
    let mut config = LogStoreConfig::local("/unused");
    config.backend = LogBackend::S3(S3Config {
        bucket: BUCKET.into(),
        endpoint: Some(Moto::endpoint_at(addr)),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(steward::secret::SecretText("testing".into())),
        allow_http: true,
        virtual_hosted_style: false,
    });
    config.checkpoint_interval = Duration::from_millis(100);
    let store = LogStore::open(&config).unwrap();
    // Nothing listens yet, and a new execution's writer starts all the same...
    assert!(store.check().await.is_err());
    let writer = store.writer(60);
    writer.emit(line(0));
    writer.emit(line(1));
    // ...keeps the lines through a few failed checkpoints...
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moto = Moto::start_at(addr).await;
    writer.emit(line(2));
    // ...and writes them all once the store is back.
    let summary = writer.finish().await.expect("finish once the store is back");
    assert_eq!(summary.lines, 3);
    let c = read(&store, 60, OutputQuery::default()).await;
    assert_eq!(texts(&c), vec!["line 0", "line 1", "line 2"]);
    assert!(c.completed());
    drop(moto);
}
