//! Callbacks used by Storage API

use std::io;

use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::async_runtime::AsyncOneshotSendExt;
use crate::core::notify::Notify;
use crate::raft_state::io_state::log_io_id::LogIOId;
use crate::type_config::alias::OneshotSenderOf;
use crate::AnyError;
use crate::LogId;
use crate::RaftTypeConfig;
use crate::StorageIOError;
use crate::Vote;

/// A oneshot callback for completion of log io operation.
pub struct LogFlushed<C>
where
    C: RaftTypeConfig,
{
    log_io_id: LogIOId<C::NodeId>,
    /// Taken when the completion is reported; still here when the callback is dropped unused.
    to: Option<FlushTarget<C>>,
}

/// Who hears of a log flush.
enum FlushTarget<C>
where
    C: RaftTypeConfig,
{
    Oneshot(OneshotSenderOf<C, Result<LogIOId<C::NodeId>, io::Error>>),
    /// steward patch (vendor/README.md): the leader's own append, reported straight to
    /// `RaftCore` as `Notify::LocalLogFlushed`, without a task that waits for a oneshot.
    Leader {
        tx: mpsc::UnboundedSender<Notify<C>>,
        vote: Vote<C::NodeId>,
        last_log_id: LogId<C::NodeId>,
    },
}

impl<C> LogFlushed<C>
where
    C: RaftTypeConfig,
{
    pub(crate) fn new(
        log_io_id: LogIOId<C::NodeId>,
        tx: OneshotSenderOf<C, Result<LogIOId<C::NodeId>, io::Error>>,
    ) -> Self {
        Self {
            log_io_id,
            to: Some(FlushTarget::Oneshot(tx)),
        }
    }

    /// steward patch: a callback for the leader's own append of entries up to `last_log_id`
    /// under `vote`, reported to `RaftCore` through `tx` as `Notify::LocalLogFlushed`.
    pub(crate) fn for_leader(
        vote: Vote<C::NodeId>,
        last_log_id: LogId<C::NodeId>,
        tx: mpsc::UnboundedSender<Notify<C>>,
    ) -> Self {
        Self {
            log_io_id: LogIOId::new(vote.clone(), Some(last_log_id.clone())),
            to: Some(FlushTarget::Leader { tx, vote, last_log_id }),
        }
    }

    /// Report log io completion event.
    ///
    /// It will be called when the log is successfully appended to the storage or an error occurs.
    pub fn log_io_completed(mut self, result: Result<(), io::Error>) {
        if let Err(e) = &result {
            tracing::error!("LogFlush error: {}, while flushing upto {}", e, self.log_io_id);
        }
        match self.to.take() {
            Some(FlushTarget::Oneshot(tx)) => {
                let res = match result {
                    Err(e) => tx.send(Err(e)),
                    Ok(()) => tx.send(Ok(self.log_io_id.clone())),
                };
                if let Err(e) = res {
                    tracing::error!("failed to send log io completion event: {:?}", e);
                }
            }
            Some(leader @ FlushTarget::Leader { .. }) => leader.notify_leader(result),
            None => {}
        }
    }
}

impl<C> FlushTarget<C>
where
    C: RaftTypeConfig,
{
    /// Tells `RaftCore` how its own append's flush went (a `Leader` target only).
    fn notify_leader(self, result: Result<(), io::Error>) {
        if let FlushTarget::Leader { tx, vote, last_log_id } = self {
            let result = result.map_err(|e| StorageIOError::write_logs(AnyError::error(e)).into());
            // A closed channel means the core is gone: nobody is left to tell.
            let _ = tx.send(Notify::LocalLogFlushed {
                vote,
                last_log_id,
                result,
            });
        }
    }
}

impl<C> Drop for LogFlushed<C>
where
    C: RaftTypeConfig,
{
    /// A leader's callback dropped unused is a failed flush, as a dropped oneshot is for the
    /// other appends: the leader must not wait for its own flush in silence.
    fn drop(&mut self) {
        if let Some(target) = self.to.take() {
            target.notify_leader(Err(io::Error::other("the log store dropped the flush callback")));
        }
    }
}

/// A oneshot callback for completion of applying logs to state machine.
pub struct LogApplied<C>
where
    C: RaftTypeConfig,
{
    last_log_id: LogId<C::NodeId>,
    tx: oneshot::Sender<Result<(LogId<C::NodeId>, Vec<C::R>), StorageIOError<C::NodeId>>>,
}

impl<C> LogApplied<C>
where
    C: RaftTypeConfig,
{
    #[allow(dead_code)]
    pub(crate) fn new(
        last_log_id: LogId<C::NodeId>,
        tx: oneshot::Sender<Result<(LogId<C::NodeId>, Vec<C::R>), StorageIOError<C::NodeId>>>,
    ) -> Self {
        Self { last_log_id, tx }
    }

    /// Report apply io completion event.
    ///
    /// It will be called when the log is successfully applied to the state machine or an error
    /// occurs.
    pub fn completed(self, result: Result<Vec<C::R>, StorageIOError<C::NodeId>>) {
        let res = match result {
            Ok(x) => {
                tracing::debug!("LogApplied upto {}", self.last_log_id);
                let resp = (self.last_log_id.clone(), x);
                self.tx.send(Ok(resp))
            }
            Err(e) => {
                tracing::error!("LogApplied error: {}, while applying upto {}", e, self.last_log_id);
                self.tx.send(Err(e))
            }
        };

        if let Err(_e) = res {
            tracing::error!("failed to send apply complete event, last_log_id: {}", self.last_log_id);
        }
    }
}
