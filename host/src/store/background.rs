//! Background reads: reads the service makes on its own behalf, in bulk, which may wait so that
//! the reads people and scripts make (a task, a listing, `/metrics`) are answered meanwhile.
//!
//! A restarted server with thousands of unfinished tasks loads each of them before driving it.
//! Those loads would take every pooled reader of the SQLite store in turn, and an operator's read
//! would wait behind the whole backlog's (a count took 60–135 ms at the median while 10,000 orders
//! drained; `cargo bench -p whenever --bench restart`). Work run through [`in_background`] marks
//! its reads, and a store with few connections keeps one for the other reads.

use std::future::Future;

tokio::task_local! {
    static BACKGROUND: ();
}

/// Runs `work` with its store reads marked as background reads.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// Whether the caller runs inside [`in_background`].
pub fn is_background() -> bool {
    BACKGROUND.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_work_run_in_the_background_is_marked() {
        assert!(!is_background());
        assert!(in_background(async { is_background() }).await);
        // A task spawned from background work is not background work itself.
        let spawned = in_background(async { tokio::spawn(async { is_background() }).await }).await;
        assert!(!spawned.expect("joined"));
    }
}
