//! Reading a log as Rundeck's output API asks: from a byte `offset` (the `offset` of the
//! previous answer, for tailing), or the `lastlines`; at most `maxlines` entries.
//!
//! Each read lists the execution's objects, so it sees every segment written so far, from any
//! member. Only the segments it needs are fetched: from the one holding `offset` onwards (a
//! range request), or backwards from the end for `lastlines`. One answer carries at most
//! [`READ_BUDGET`] bytes of log; the caller polls again from the returned offset.

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;

use super::entry::{decode, LogEntry};
use super::{LogError, LogStore, Segment};

/// Most bytes of log read for one answer.
pub const READ_BUDGET: u64 = 4 << 20;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct OutputQuery {
    /// Byte offset to read from: 0, or an `offset` this API returned. An offset inside an
    /// entry is moved forward to the next entry.
    pub offset: u64,
    /// Return the last N entries instead (overrides `offset`).
    pub lastlines: Option<usize>,
    /// Return at most N entries.
    pub maxlines: Option<usize>,
    /// Rundeck's `lastmod` (ms): when the log has not changed since then and there is nothing
    /// past `offset`, the answer is `unmodified` and empty.
    pub lastmod: Option<i64>,
    /// Only entries of this node.
    pub node: Option<String>,
    /// Only entries of this step context or of the steps under it (`"2"` matches `"2"`,
    /// `"2e"` and `"2/1"`).
    pub step_ctx: Option<String>,
}

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputChunk {
    pub entries: Vec<LogEntry>,
    /// Where the next read should start (Rundeck's `offset`).
    pub offset: u64,
    /// Bytes in the log so far (Rundeck's `totalSize`).
    pub total_size: u64,
    /// The writer finished: the log will not grow any more.
    pub finished: bool,
    /// When the newest segment was written.
    pub last_modified: Option<DateTime<Utc>>,
    /// Nothing changed since the query's `lastmod`.
    pub unmodified: bool,
}

impl OutputChunk {
    /// Rundeck's `completed`: the log is finished and this answer reaches its end, so a client
    /// tailing it can stop.
    pub fn completed(&self) -> bool {
        self.finished && self.offset >= self.total_size
    }
}

fn step_matches(filter: &str, ctx: Option<&str>) -> bool {
    let Some(ctx) = ctx else { return false };
    match ctx.strip_prefix(filter) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest == "e" || rest.starts_with("e/"),
        None => false,
    }
}

fn wanted(q: &OutputQuery, e: &LogEntry) -> bool {
    q.node.as_deref().is_none_or(|n| e.node.as_deref() == Some(n))
        && q.step_ctx.as_deref().is_none_or(|s| step_matches(s, e.step_ctx.as_deref()))
}

fn corrupt(seg: &Segment, message: impl Into<String>) -> LogError {
    LogError::Corrupt { path: seg.path.to_string(), message: message.into() }
}

pub(crate) async fn read(store: &LogStore, exec_id: u64, q: &OutputQuery) -> Result<OutputChunk, LogError> {
    let listing = store.list(exec_id).await?;
    let total = listing.size();
    let finished = match store.marker(&listing).await? {
        // The marker counts the segments of the whole log; until a store that lists lazily
        // shows them all, the log is not finished for this reader.
        Some(m) => listing.segments.len() as u64 >= m.segments,
        None => false,
    };
    let last_modified = listing.segments.iter().map(|s| s.last_modified).max();
    let mut chunk = OutputChunk {
        entries: Vec::new(),
        offset: q.offset.min(total),
        total_size: total,
        finished,
        last_modified,
        unmodified: false,
    };

    if let Some(n) = q.lastlines {
        // Backwards from the end, whole segments, until n entries are found.
        chunk.offset = total;
        let mut budget = READ_BUDGET;
        let mut found: Vec<LogEntry> = Vec::new();
        for seg in listing.segments.iter().rev() {
            if found.len() >= n || budget == 0 {
                break;
            }
            let bytes = store.store().get_range(&seg.path, 0..seg.len).await?;
            budget = budget.saturating_sub(seg.len);
            let mut here = Vec::new();
            for line in split_lines(&bytes).map_err(|m| corrupt(seg, m))? {
                let e = decode(line).map_err(|m| corrupt(seg, m))?;
                if wanted(q, &e) {
                    here.push(e);
                }
            }
            here.append(&mut found);
            found = here;
        }
        let skip = found.len().saturating_sub(n);
        chunk.entries = found.split_off(skip);
        return Ok(chunk);
    }

    if let (Some(lastmod), Some(lm)) = (q.lastmod, last_modified) {
        if lm.timestamp_millis() <= lastmod && chunk.offset >= total {
            chunk.unmodified = true;
            return Ok(chunk);
        }
    }

    let maxlines = q.maxlines.unwrap_or(usize::MAX);
    let mut pos = chunk.offset;
    let mut budget = READ_BUDGET;
    for seg in &listing.segments {
        if seg.start + seg.len <= pos {
            continue;
        }
        if chunk.entries.len() >= maxlines || budget == 0 {
            break;
        }
        let local = pos - seg.start;
        // Fetch one byte before `pos` to learn whether `pos` is at an entry boundary.
        let from = local.saturating_sub(1);
        let bytes = store.store().get_range(&seg.path, from..seg.len).await?;
        let mut body: &[u8] = &bytes;
        if local > 0 {
            let prev_is_newline = body.first() == Some(&b'\n');
            body = &body[1..];
            if !prev_is_newline {
                // Inside an entry: resume at the next one.
                match body.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        body = &body[i + 1..];
                        pos += i as u64 + 1;
                    }
                    None => return Err(corrupt(seg, "the segment does not end with a newline")),
                }
            }
        }
        for line in split_lines(body).map_err(|m| corrupt(seg, m))? {
            if chunk.entries.len() >= maxlines || budget == 0 {
                break;
            }
            let e = decode(line).map_err(|m| corrupt(seg, m))?;
            let len = line.len() as u64 + 1;
            pos += len;
            budget = budget.saturating_sub(len);
            if wanted(q, &e) {
                chunk.entries.push(e);
            }
        }
    }
    chunk.offset = pos;
    Ok(chunk)
}

/// The `\n`-terminated lines of `bytes`. Segments hold whole lines only, so trailing bytes
/// without a newline mean the object is damaged.
fn split_lines(bytes: &[u8]) -> Result<impl Iterator<Item = &[u8]>, String> {
    if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
        return Err("the segment does not end with a newline".into());
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    Ok(body.split(|b| *b == b'\n').filter(move |_| !empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_filters_match_the_step_its_handler_and_its_children() {
        assert!(step_matches("2", Some("2")));
        assert!(step_matches("2", Some("2e")));
        assert!(step_matches("2", Some("2/1")));
        assert!(!step_matches("2", Some("21")));
        assert!(!step_matches("2", None));
    }

    #[test]
    fn lines_are_split_only_when_whole() {
        assert_eq!(split_lines(b"a\nb\n").unwrap().collect::<Vec<_>>(), vec![&b"a"[..], b"b"]);
        assert_eq!(split_lines(b"").unwrap().count(), 0);
        assert!(split_lines(b"a\nb").is_err());
    }
}
