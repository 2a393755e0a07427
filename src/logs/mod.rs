//! The execution log store: every execution's output, in an object store that every member
//! reaches (the local filesystem under the data dir by default, any S3-compatible service when
//! configured). Output never goes through Raft; the replicated execution record only says
//! where an execution runs and how it ended.
//!
//! # Layout
//! - [`entry`]: one log entry, the [`LogSink`] the executor writes to, the stored line format.
//! - [`writer`]: [`LogWriter`], which checkpoints a running execution's output as segments.
//! - [`reader`]: reading with the output API's `offset` / `lastlines` / `maxlines`.
//! - [`output`]: the output API's JSON shape ([`OutputResponse`]).
//!
//! # Objects
//!
//! ```text
//! <prefix>/executions/<id>/00000000.v1.jsonl   segment 0: entry lines, immutable
//! <prefix>/executions/<id>/00000001.v1.jsonl   segment 1, ...
//! <prefix>/executions/<id>/complete.v1.json    written once, after the last segment
//! ```
//!
//! Object stores have no append, so a running execution's output is cut into segments, each
//! written once with `PutMode::Create` (never overwritten: a segment a reader has seen never
//! changes under it). A segment holds whole lines only. The log is the concatenation of the
//! segments `0, 1, 2, …` up to the first missing number, and the output API's `offset` is a
//! byte offset into that concatenation: because segments are immutable, written in order and
//! never skipped, an offset handed out once stays valid forever. The format version is in each
//! object's name, so a reader knows how to parse a segment before it reads a byte of it.
//!
//! The `complete` marker says the writer finished and how many segments it wrote. Until it is
//! there, a reader on any member serves whatever segments exist: the output of a running
//! execution lags it by at most the checkpoint interval (1 s by default). A writer that
//! crashes leaves its segments readable; [`LogStore::seal`] marks such a log complete.

pub mod entry;
pub mod output;
pub mod reader;
pub mod writer;

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

pub use entry::{LogEntry, LogLevel, LogSink};
pub use output::{ExecInfo, OutputEntry, OutputResponse};
pub use reader::{OutputChunk, OutputQuery};
pub use writer::{LogSummary, LogWriter};

/// Format version of segments and of the completion marker; it is part of their names.
pub const FORMAT_VERSION: u32 = 1;

/// Default checkpoint interval: a running execution's output reaches the store at least this
/// often, which bounds how far a reader on another member lags behind.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A segment is cut early once this much output is buffered.
pub const DEFAULT_SEGMENT_BYTES: usize = 1 << 20;
/// Output buffered while the store is unreachable, per execution, before lines are dropped
/// (and the drop is logged once the store is back).
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 << 20;
/// Default S3 region.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// Where the log store keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogBackend {
    /// A directory on this member's filesystem (by default `<data-dir>/logs`). Other members
    /// can serve its logs only if it is shared storage mounted at the same path.
    Local { dir: PathBuf },
    /// An S3-compatible bucket that every member reaches.
    S3(S3Config),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// Endpoint URL for S3-compatible services (MinIO, Ceph, ...); `None` means AWS.
    pub endpoint: Option<String>,
    /// Region (signing region for S3-compatible services).
    pub region: String,
    /// Access key id. When it and the secret are unset, the standard `AWS_*` environment
    /// variables and the instance's credentials are used.
    pub access_key_id: Option<String>,
    /// Secret access key; never printed.
    pub secret_access_key: Option<crate::secret::SecretText>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Address the bucket as `bucket.endpoint` instead of `endpoint/bucket`.
    pub virtual_hosted_style: bool,
}

/// The log store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreConfig {
    pub backend: LogBackend,
    /// Path prefix of every object (e.g. `steward/prod`), so one bucket can hold several
    /// clusters. Empty: the root.
    pub prefix: String,
    /// How often a running execution's buffered output is written out.
    pub checkpoint_interval: Duration,
    /// Cut a segment early once this many bytes are buffered.
    pub segment_bytes: usize,
    /// Most bytes buffered per execution while the store fails, before lines are dropped.
    pub max_pending_bytes: usize,
}

impl LogStoreConfig {
    /// The default: the local filesystem under `dir`.
    pub fn local(dir: impl Into<PathBuf>) -> LogStoreConfig {
        LogStoreConfig {
            backend: LogBackend::Local { dir: dir.into() },
            prefix: String::new(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
        }
    }

    /// Checks the settings; the error names the setting as `steward.example.toml` spells it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.checkpoint_interval < Duration::from_millis(10) {
            return Err(("logs.checkpoint-interval-ms", "must be at least 10".into()));
        }
        if self.segment_bytes == 0 || self.max_pending_bytes < self.segment_bytes {
            return Err(("logs", "the pending-output bound must be at least one segment".into()));
        }
        prefix_path(&self.prefix).map_err(|e| ("logs.prefix", e))?;
        if let LogBackend::S3(s3) = &self.backend {
            if s3.bucket.is_empty() {
                return Err(("logs.s3.bucket", "is required when logs.store is \"s3\"".into()));
            }
            if s3.region.is_empty() {
                return Err(("logs.s3.region", "must not be empty".into()));
            }
            if let Some(e) = &s3.endpoint {
                if e.starts_with("http://") {
                    if !s3.allow_http {
                        return Err(("logs.s3.allow-http", format!("must be true to use the http endpoint '{e}'")));
                    }
                } else if !e.starts_with("https://") {
                    return Err(("logs.s3.endpoint", format!("'{e}' is not an http:// or https:// URL")));
                }
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                return Err((
                    "logs.s3.secret-access-key",
                    "access-key-id and secret-access-key are set together or not at all".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A log store failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log store: {0}")]
    Store(#[from] object_store::Error),
    #[error("log store directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("log store configuration: {0}")]
    Config(String),
    #[error("log object {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
    #[error("the log of execution {0} is already complete")]
    AlreadyComplete(u64),
    #[error("the log writer of execution {0} stopped before finishing")]
    WriterGone(u64),
}

/// The completion marker's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub version: u32,
    /// Segments `0..segments` make up the whole log.
    pub segments: u64,
    /// Bytes in those segments.
    pub size: u64,
    /// When the log was completed, ms since the epoch.
    pub finished: i64,
}

/// One segment as listed.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub path: Path,
    /// Offset of the segment's first byte in the log.
    pub start: u64,
    pub len: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// An execution's objects as listed.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments `0, 1, …` up to the first missing number.
    pub segments: Vec<Segment>,
    /// The highest segment number present, contiguous or not.
    pub max_seq: Option<u64>,
    pub marker: Option<Path>,
}

impl Listing {
    pub fn size(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.start + s.len)
    }
}

fn prefix_path(prefix: &str) -> Result<Path, String> {
    let trimmed = prefix.trim_matches('/');
    Path::parse(trimmed).map_err(|e| format!("'{prefix}' is not a valid object path prefix: {e}"))
}

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:08}.v{FORMAT_VERSION}.jsonl")
}

const MARKER_NAME: &str = "complete.v1.json";

/// Parses `<seq>.v<version>.jsonl`; `Err` for a segment of another format version.
fn parse_segment_name(name: &str) -> Option<Result<u64, u32>> {
    let rest = name.strip_suffix(".jsonl")?;
    let (seq, version) = rest.split_once(".v")?;
    let seq = seq.parse::<u64>().ok()?;
    let version = version.parse::<u32>().ok()?;
    Some(if version == FORMAT_VERSION { Ok(seq) } else { Err(version) })
}

/// The log store. Cheap to clone; every clone uses the same connection pool.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    root: Path,
    checkpoint_interval: Duration,
    segment_bytes: usize,
    max_pending_bytes: usize,
    describe: String,
    /// The store is this member's own directory.
    local: bool,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").field("store", &self.inner.describe).field("root", &self.inner.root).finish()
    }
}

impl LogStore {
    /// Opens the store `config` names (creating the local directory if needed). Nothing is
    /// sent to a remote store yet; [`LogStore::check`] does that.
    pub fn open(config: &LogStoreConfig) -> Result<LogStore, LogError> {
        config.validate().map_err(|(setting, message)| LogError::Config(format!("{setting}: {message}")))?;
        let (store, describe): (Arc<dyn ObjectStore>, String) = match &config.backend {
            LogBackend::Local { dir } => {
                // Job output can be sensitive: only the member's user may read it.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| LogError::Dir { path: dir.clone(), source })?;
                // fsync: a segment a reader has seen must survive a crash of this member.
                // Automatic cleanup: a deleted execution's log leaves no empty directory.
                let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true).with_automatic_cleanup(true);
                (Arc::new(fs), format!("local:{}", dir.display()))
            }
            LogBackend::S3(s3) => {
                let mut b = if s3.access_key_id.is_none() {
                    object_store::aws::AmazonS3Builder::from_env()
                } else {
                    object_store::aws::AmazonS3Builder::new()
                };
                b = b
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                    // The writer retries on its own schedule and must not sit in one call for
                    // minutes while output piles up; a reader should fail fast, too.
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(10),
                        ..Default::default()
                    });
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let (Some(k), Some(s)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(&s.0);
                }
                let describe =
                    format!("s3:{}{}", s3.endpoint.as_deref().map(|e| format!("{e}/")).unwrap_or_default(), s3.bucket);
                (Arc::new(b.build()?), describe)
            }
        };
        Ok(Self::with_object_store(store, config, describe))
    }

    /// A log store on any object store (tests, embedding).
    pub fn with_object_store(store: Arc<dyn ObjectStore>, config: &LogStoreConfig, describe: String) -> LogStore {
        let root = prefix_path(&config.prefix).unwrap_or_default();
        LogStore {
            inner: Arc::new(Inner {
                store,
                root,
                checkpoint_interval: config.checkpoint_interval,
                segment_bytes: config.segment_bytes,
                max_pending_bytes: config.max_pending_bytes,
                local: matches!(config.backend, LogBackend::Local { .. }),
                describe,
            }),
        }
    }

    /// Lists the store's root: fails when the bucket is missing or the credentials are wrong,
    /// so a member can say so at start-up rather than at the first execution.
    /// Where the logs are, for messages (`local directory …` / `S3 bucket …`).
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// True when every member reads the same logs (an object store rather than a member's own
    /// directory), so any member can serve any execution's output itself.
    pub fn is_shared(&self) -> bool {
        !self.inner.local
    }

    pub async fn check(&self) -> Result<(), LogError> {
        let dir = self.inner.root.clone().join("executions");
        self.inner.store.list_with_delimiter(Some(&dir)).await?;
        Ok(())
    }

    /// Starts writing the log of a new execution, from segment 0. It asks nothing of the
    /// store, so an execution starts even while the store is unreachable (its output is
    /// buffered meanwhile). Must be called within a tokio runtime.
    pub fn writer(&self, exec_id: u64) -> LogWriter {
        LogWriter::start(self.clone(), exec_id, 0, 0)
    }

    /// Starts writing execution `exec_id`'s log after the segments already there (written
    /// before this member restarted, say); fails if the log is complete.
    pub async fn resume_writer(&self, exec_id: u64) -> Result<LogWriter, LogError> {
        let listing = self.list(exec_id).await?;
        if listing.marker.is_some() {
            return Err(LogError::AlreadyComplete(exec_id));
        }
        let next = listing.max_seq.map_or(0, |m| m + 1);
        Ok(LogWriter::start(self.clone(), exec_id, next, listing.size()))
    }

    /// Reads execution `exec_id`'s log as the output API asks.
    pub async fn read(&self, exec_id: u64, query: &OutputQuery) -> Result<OutputChunk, LogError> {
        reader::read(self, exec_id, query).await
    }

    /// Marks the log of an execution whose writer is gone (its member crashed) complete, with
    /// the segments that exist now. Does nothing if the log is complete already.
    pub async fn seal(&self, exec_id: u64) -> Result<(), LogError> {
        let listing = self.list(exec_id).await?;
        if listing.marker.is_some() {
            return Ok(());
        }
        self.put_marker(exec_id, listing.segments.len() as u64, listing.size()).await
    }

    /// Removes every object of execution `exec_id` (when the execution is deleted).
    pub async fn delete(&self, exec_id: u64) -> Result<(), LogError> {
        let dir = self.exec_dir(exec_id);
        let objects: Vec<_> = self.inner.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await?;
        for path in objects {
            match self.inner.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    pub(crate) fn checkpoint_interval(&self) -> Duration {
        self.inner.checkpoint_interval
    }

    pub(crate) fn segment_bytes(&self) -> usize {
        self.inner.segment_bytes
    }

    pub(crate) fn max_pending_bytes(&self) -> usize {
        self.inner.max_pending_bytes
    }

    /// The ids of the executions this store holds a log of.
    pub async fn stored_ids(&self) -> Result<Vec<u64>, LogError> {
        let root = self.inner.root.clone().join("executions");
        let listing = self.inner.store.list_with_delimiter(Some(&root)).await?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename()?.parse().ok()).collect())
    }

    pub(crate) fn exec_dir(&self, exec_id: u64) -> Path {
        self.inner.root.clone().join("executions").join(exec_id.to_string().as_str())
    }

    pub(crate) fn segment_path(&self, exec_id: u64, seq: u64) -> Path {
        self.exec_dir(exec_id).join(segment_name(seq).as_str())
    }

    /// Writes the completion marker once; an existing marker is left as it is.
    pub(crate) async fn put_marker(&self, exec_id: u64, segments: u64, size: u64) -> Result<(), LogError> {
        let marker =
            Marker { version: FORMAT_VERSION, segments, size, finished: chrono::Utc::now().timestamp_millis() };
        let body = serde_json::to_vec(&marker).expect("a marker serialises");
        let path = self.exec_dir(exec_id).join(MARKER_NAME);
        match self.inner.store.put_opts(&path, PutPayload::from(body), PutMode::Create.into()).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists an execution's objects.
    pub(crate) async fn list(&self, exec_id: u64) -> Result<Listing, LogError> {
        let dir = self.exec_dir(exec_id);
        let mut found: Vec<(u64, object_store::ObjectMeta)> = Vec::new();
        let mut listing = Listing::default();
        let mut objects = self.inner.store.list(Some(&dir));
        while let Some(meta) = objects.try_next().await? {
            let Some(name) = meta.location.filename() else { continue };
            if name == MARKER_NAME {
                listing.marker = Some(meta.location.clone());
                continue;
            }
            match parse_segment_name(name) {
                Some(Ok(seq)) => found.push((seq, meta)),
                Some(Err(version)) => {
                    return Err(LogError::Corrupt {
                        path: meta.location.to_string(),
                        message: format!(
                            "log format version {version} is not supported (this build reads {FORMAT_VERSION})"
                        ),
                    })
                }
                // Anything else (a temporary file of the local store, say) is not ours.
                None => {}
            }
        }
        // Listing order is not guaranteed by every store.
        found.sort_by_key(|(seq, _)| *seq);
        listing.max_seq = found.last().map(|(seq, _)| *seq);
        let mut start = 0;
        for (i, (seq, meta)) in found.into_iter().enumerate() {
            if seq != i as u64 {
                // Only the contiguous prefix is the log: offsets past a hole could shift once
                // the hole fills, and offsets must never change.
                break;
            }
            listing.segments.push(Segment {
                path: meta.location,
                start,
                len: meta.size,
                last_modified: meta.last_modified,
            });
            start += meta.size;
        }
        Ok(listing)
    }

    /// Reads the marker, if any.
    pub(crate) async fn marker(&self, listing: &Listing) -> Result<Option<Marker>, LogError> {
        let Some(path) = &listing.marker else { return Ok(None) };
        let bytes = self.inner.store.get(path).await?.bytes().await?;
        let marker: Marker = serde_json::from_slice(&bytes)
            .map_err(|e| LogError::Corrupt { path: path.to_string(), message: e.to_string() })?;
        Ok(Some(marker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(7), "00000007.v1.jsonl");
        assert_eq!(parse_segment_name("00000007.v1.jsonl"), Some(Ok(7)));
        assert_eq!(parse_segment_name("123456789.v1.jsonl"), Some(Ok(123_456_789)));
        assert_eq!(parse_segment_name("00000007.v2.jsonl"), Some(Err(2)));
        assert_eq!(parse_segment_name("complete.v1.json"), None);
        assert_eq!(parse_segment_name("#00000007.v1.jsonl#tmp"), None);
    }

    #[test]
    fn s3_settings_are_checked_and_the_secret_is_never_printed() {
        let mut c = LogStoreConfig::local("/tmp/x");
        let s3 = S3Config {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: DEFAULT_S3_REGION.into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some(crate::secret::SecretText("very-secret".into())),
            allow_http: false,
            virtual_hosted_style: false,
        };
        c.backend = LogBackend::S3(s3.clone());
        assert_eq!(c.validate().unwrap_err().0, "logs.s3.allow-http");
        c.backend = LogBackend::S3(S3Config { allow_http: true, ..s3.clone() });
        c.validate().unwrap();
        c.backend = LogBackend::S3(S3Config { bucket: String::new(), allow_http: true, ..s3.clone() });
        assert_eq!(c.validate().unwrap_err().0, "logs.s3.bucket");
        c.backend = LogBackend::S3(S3Config { secret_access_key: None, allow_http: true, ..s3.clone() });
        assert_eq!(c.validate().unwrap_err().0, "logs.s3.secret-access-key");
        assert!(!format!("{s3:?}").contains("very-secret"));
        c.backend = LogBackend::Local { dir: "/tmp/x".into() };
        c.prefix = "a/../b".into();
        assert_eq!(c.validate().unwrap_err().0, "logs.prefix");
    }
}
