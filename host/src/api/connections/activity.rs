//! The requests an HTTP/2 connection is answering, so that one left idle is closed.
//!
//! An HTTP/1.1 connection is closed when no request's headers arrive within the header timeout
//! (hyper's own timer). HTTP/2 has no such timer: a client may keep a connection open without a
//! stream for as long as it likes, holding one of `max_connections`, and a stream whose headers
//! never complete is not a request yet. So each HTTP/2 connection counts the requests it is
//! answering, and once it has answered none for the header timeout it is shut down gracefully
//! (GOAWAY: streams already started finish). An answer that takes long (a long poll) keeps its
//! connection open, as over HTTP/1.1.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How many requests a connection is answering now.
#[derive(Debug, Clone)]
pub(super) struct Activity(Arc<watch::Sender<usize>>);

/// A request being answered, counted until dropped.
#[derive(Debug)]
pub(super) struct Answering(Arc<watch::Sender<usize>>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.send_modify(|answering| *answering = answering.saturating_sub(1));
    }
}

impl Activity {
    /// A connection answering nothing yet.
    pub(super) fn new() -> Activity {
        Activity(Arc::new(watch::Sender::new(0)))
    }

    /// Counts a request from now until the returned guard is dropped (its answer given).
    pub(super) fn answering(&self) -> Answering {
        self.0.send_modify(|answering| *answering += 1);
        Answering(self.0.clone())
    }

    /// Resolves once the connection has answered nothing for `idle` on end.
    pub(super) fn idle_for(&self, idle: Duration) -> impl Future<Output = ()> + use<> {
        let mut changes = self.0.subscribe();
        async move {
            loop {
                // The sender lives in `self`'s clones, which the connection holds while it waits.
                if changes.wait_for(|answering| *answering == 0).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(idle) => return,
                    // A request came (and maybe went): the idle time starts again once it is done.
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_once_it_answered_nothing_for_the_whole_time() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        activity.idle_for(IDLE).await;
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_answer_keeps_it_and_the_idle_time_starts_when_the_answer_is_given() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        let long_poll = activity.answering();
        let answered = activity.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(50)).await;
            drop(long_poll);
            tokio::time::sleep(Duration::from_secs(20)).await;
            // A quick request 20 s after: the 30 s start again after it.
            drop(answered.answering());
        });
        activity.idle_for(IDLE).await;
        assert_eq!(started.elapsed(), Duration::from_secs(50 + 20 + 30));
    }
}
