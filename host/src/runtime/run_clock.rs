//! A run's own time, which its deadline counts: the wall time since its sandbox was made, less
//! the time in connector calls and the time it was ready to go on but waited for its thread.
//!
//! Neither of those is the step's doing. The connectors are the operator's, with timeouts and
//! retries of their own: a payment that takes three seconds must not fail a step whose deadline
//! is two. And a host's runs share its few threads: a run that computes yields at every epoch
//! tick and waits its turn, so under load its wall time is many times what it computed. Counting
//! either would fail sound steps whenever a connector or the host is slow. Time a run spends
//! waiting in the host for anything else (a WASI sleep, a poll) is its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

/// The clock of one run, shared by its store's data (which times connector calls), its epoch
/// callback and its deadline's timer (which read it), and the waker of its call
/// ([`Counted`], which times its waits for a thread).
#[derive(Debug)]
pub(crate) struct RunClock {
    origin: Instant,
    /// Nanoseconds spent in connector calls that ended.
    in_calls: AtomicU64,
    /// When the connector call under way began, in nanoseconds since `origin`; [`NONE`] between
    /// calls.
    call_began: AtomicU64,
    /// Nanoseconds spent ready to go on but not yet polled, in waits that ended.
    waited: AtomicU64,
    /// When the run was woken and not yet polled since, in nanoseconds since `origin`; [`NONE`]
    /// when it was polled since its last wake.
    woken_at: AtomicU64,
    /// When its last poll returned (pending), in nanoseconds since `origin`; [`NONE`] while a
    /// poll is under way and before the first. A wait begins no earlier: a wake that came
    /// during a poll (the guest went on computing) leaves it ready only once the poll returns.
    returned_at: AtomicU64,
}

/// [`RunClock::call_began`] between calls, [`RunClock::woken_at`] between a poll and a wake,
/// and [`RunClock::returned_at`] during a poll.
const NONE: u64 = u64::MAX;

impl RunClock {
    /// A clock starting now.
    pub(crate) fn new() -> Arc<RunClock> {
        Arc::new(RunClock {
            origin: Instant::now(),
            in_calls: AtomicU64::new(0),
            call_began: AtomicU64::new(NONE),
            waited: AtomicU64::new(0),
            woken_at: AtomicU64::new(NONE),
            returned_at: AtomicU64::new(NONE),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    /// Marks a connector call begun; the guard marks it ended when dropped (a run stopped
    /// mid-call too).
    pub(crate) fn connector_call(&self) -> CallUnderWay<'_> {
        self.call_began.store(self.now(), Ordering::Relaxed);
        CallUnderWay(self)
    }

    /// The time spent in connector calls so far, the one under way included.
    pub(crate) fn in_connectors(&self) -> Duration {
        let began = self.call_began.load(Ordering::Relaxed);
        let under_way = if began == NONE {
            0
        } else {
            self.now().saturating_sub(began)
        };
        Duration::from_nanos(self.in_calls.load(Ordering::Relaxed).saturating_add(under_way))
    }

    /// Notes that the run was woken: it is ready to go on from now (or from when the poll under
    /// way returns) until it is next polled.
    fn woken(&self) {
        // The first wake since the last poll is when it became ready.
        let _ = self
            .woken_at
            .compare_exchange(NONE, self.now(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Notes that a poll returned pending.
    fn returned(&self) {
        self.returned_at.store(self.now(), Ordering::Relaxed);
    }

    /// Notes that the run is being polled: a wait for its thread, if it was woken, ends.
    fn polled(&self) {
        let woken = self.woken_at.swap(NONE, Ordering::Relaxed);
        let returned = self.returned_at.swap(NONE, Ordering::Relaxed);
        self.waited
            .fetch_add(self.wait_since(woken, returned), Ordering::Relaxed);
    }

    /// The nanoseconds of the wait under way, of a run woken at `woken` whose last poll returned
    /// at `returned`: none unless both are set, and none during a connector call (its answer
    /// came: the call's time holds the wait, which is not counted twice).
    fn wait_since(&self, woken: u64, returned: u64) -> u64 {
        if woken == NONE || returned == NONE || self.call_began.load(Ordering::Relaxed) != NONE {
            return 0;
        }
        self.now().saturating_sub(woken.max(returned))
    }

    /// The time spent ready to go on but not polled so far, a wait under way included.
    pub(crate) fn waiting_for_a_thread(&self) -> Duration {
        let under_way = self.wait_since(
            self.woken_at.load(Ordering::Relaxed),
            self.returned_at.load(Ordering::Relaxed),
        );
        Duration::from_nanos(self.waited.load(Ordering::Relaxed).saturating_add(under_way))
    }

    /// The wall time since the clock started (the run's sandbox was made).
    pub(crate) fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The run's own time so far: what its deadline counts.
    pub(crate) fn own(&self) -> Duration {
        self.elapsed()
            .saturating_sub(self.in_connectors())
            .saturating_sub(self.waiting_for_a_thread())
    }
}

/// A connector call under way (see [`RunClock::connector_call`]).
pub(crate) struct CallUnderWay<'a>(&'a RunClock);

impl Drop for CallUnderWay<'_> {
    fn drop(&mut self) {
        let began = self.0.call_began.swap(NONE, Ordering::Relaxed);
        if began != NONE {
            self.0
                .in_calls
                .fetch_add(self.0.now().saturating_sub(began), Ordering::Relaxed);
        }
    }
}

/// A call into the guest whose waits for a thread its [`RunClock`] counts: it is polled with a
/// waker that notes when it was woken, and each poll notes that the wait ended.
pub(crate) struct Counted<'a, F> {
    call: Pin<&'a mut F>,
    clock: Arc<RunClock>,
    noting: Arc<NotingWaker>,
    waker: Waker,
}

impl<'a, F: Future> Counted<'a, F> {
    /// Counts `call`'s waits on `clock`.
    pub(crate) fn new(call: Pin<&'a mut F>, clock: Arc<RunClock>) -> Self {
        let noting = Arc::new(NotingWaker {
            clock: clock.clone(),
            outer: AtomicWaker::new(),
        });
        let waker = Waker::from(noting.clone());
        Counted {
            call,
            clock,
            noting,
            waker,
        }
    }
}

impl<F: Future> Future for Counted<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.noting.outer.register(cx.waker());
        this.clock.polled();
        let polled = this.call.as_mut().poll(&mut Context::from_waker(&this.waker));
        if polled.is_pending() {
            this.clock.returned();
        }
        polled
    }
}

/// Awaits `future` with its waits for a thread counted on `clock` (see [`Counted`]), without a
/// deadline: instantiating a run's sandbox.
pub(crate) async fn counting_waits<F: Future>(clock: Arc<RunClock>, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    Counted::new(future.as_mut(), clock).await
}

/// The waker a [`Counted`] call is polled with: notes the wake on the clock and passes it on.
struct NotingWaker {
    clock: Arc<RunClock>,
    outer: AtomicWaker,
}

impl Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.clock.woken();
        self.outer.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(30);

    #[test]
    fn a_wait_for_a_thread_counts_from_the_wake_to_the_poll() {
        let clock = RunClock::new();
        clock.woken();
        assert_eq!(
            clock.waiting_for_a_thread(),
            Duration::ZERO,
            "never polled: no wait yet"
        );
        clock.polled();
        clock.returned();
        clock.woken();
        std::thread::sleep(WAIT);
        assert!(clock.waiting_for_a_thread() >= WAIT, "a wait under way counts");
        // A second wake before the poll does not move the wait's start.
        clock.woken();
        clock.polled();
        let waited = clock.waiting_for_a_thread();
        assert!(waited >= WAIT, "{waited:?}");
        // Polled, and not woken since: no more wait accrues.
        std::thread::sleep(WAIT);
        assert_eq!(clock.waiting_for_a_thread(), waited);
        assert!(clock.own() >= WAIT, "the time it was polled, or not woken, is its own");
        assert!(clock.own() + waited <= clock.origin.elapsed());
    }

    #[test]
    fn a_wake_during_a_connector_call_counts_once_as_the_calls() {
        let clock = RunClock::new();
        clock.returned();
        let call = clock.connector_call();
        clock.woken();
        std::thread::sleep(WAIT);
        assert_eq!(clock.waiting_for_a_thread(), Duration::ZERO);
        clock.polled();
        drop(call);
        assert_eq!(clock.waiting_for_a_thread(), Duration::ZERO);
        assert!(clock.in_connectors() >= WAIT);
        assert!(clock.own() < WAIT, "{:?}", clock.own());
    }

    #[test]
    fn a_counted_future_notes_its_wakes_and_polls() {
        let clock = RunClock::new();
        let mut yielded = false;
        let mut call = std::pin::pin!(std::future::poll_fn(move |cx| {
            if yielded {
                Poll::Ready(())
            } else {
                // As wasmtime yields at an epoch tick: wake itself, then return.
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
        let mut counted = std::pin::pin!(Counted::new(call.as_mut(), clock.clone()));
        let outer = Arc::new(CountingWaker::default());
        let waker = Waker::from(outer.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(counted.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            outer.0.load(Ordering::Relaxed),
            1,
            "the wake reaches the caller's waker"
        );
        std::thread::sleep(WAIT);
        assert!(counted.as_mut().poll(&mut cx).is_ready());
        assert!(clock.waiting_for_a_thread() >= WAIT);
    }

    #[test]
    fn a_wake_during_a_poll_leaves_the_run_waiting_only_once_the_poll_returns() {
        let clock = RunClock::new();
        let mut polls = 0;
        let mut call = std::pin::pin!(std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 2 {
                return Poll::Ready(());
            }
            // Woken at once (a host call ready at once), then computing on for a while.
            cx.waker().wake_by_ref();
            std::thread::sleep(WAIT);
            Poll::Pending
        }));
        let mut counted = std::pin::pin!(Counted::new(call.as_mut(), clock.clone()));
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&waker);
        assert!(counted.as_mut().poll(&mut cx).is_pending());
        assert!(counted.as_mut().poll(&mut cx).is_ready());
        let waited = clock.waiting_for_a_thread();
        assert!(waited < WAIT, "the time it computed is its own: {waited:?}");
        assert!(clock.own() >= WAIT);
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct CountingWaker(AtomicU64);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}
