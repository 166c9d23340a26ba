//! The threads the drives run on: each a single-threaded runtime, each task's drive always on the
//! same one (chosen by its id). On the multi-threaded runtime a drive that waited for a commit
//! went on on whichever worker was free, so about half of what it allocated was freed by the
//! other worker (which costs the allocating thread a walk over those blocks) and its order's
//! data moved between the cores' caches at every wave; pinned, it does neither
//! (docs/performance.md: +9% orders/s at the median in the 16-sender rows).

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Threads that each run a single-threaded runtime until this is dropped.
pub(crate) struct DriveThreads {
    handles: Vec<Handle>,
    /// Dropped with this: each thread's runtime then stops, dropping the drives left on it.
    _stops: Vec<oneshot::Sender<()>>,
}

impl DriveThreads {
    /// Starts `count` threads (at least one).
    pub(crate) fn start(count: usize) -> std::io::Result<DriveThreads> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("whenever-drive-{index}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(DriveThreads { handles, _stops: stops })
    }

    /// The drive thread task `id`'s drives run on: its index and its runtime.
    pub(crate) fn for_task(&self, id: &str) -> (usize, &Handle) {
        // FNV-1a over the whole id: ids made together share their time prefix, but their last
        // digits are hashed (a key-derived id is hashed throughout), so the tasks spread evenly.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let index = (hash % self.handles.len() as u64) as usize;
        (index, &self.handles[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_s_drives_run_on_one_thread_and_the_threads_stop_with_the_pool() {
        let threads = DriveThreads::start(2).expect("started");
        let name = |id: &'static str| {
            threads.for_task(id).1.spawn(async move {
                tokio::task::yield_now().await;
                std::thread::current().name().map(str::to_owned)
            })
        };
        let first = name("t_0123456789abcdef").await.expect("ran");
        let again = name("t_0123456789abcdef").await.expect("ran");
        assert_eq!(first, again);
        assert!(first.is_some_and(|n| n.starts_with("whenever-drive-")));
        let handle = threads.for_task("t_0").1.clone();
        drop(threads);
        // The runtime stops once its thread sees the pool gone: a task spawned then never runs.
        let mut stopped = false;
        for _ in 0..200 {
            if handle.spawn(async {}).await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(stopped, "the drive thread's runtime stopped");
    }
}
