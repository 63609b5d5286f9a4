//! When the poller describes what is in flight next: rarely early in a creation, every second
//! once it is due, and never more, per resource, than a fixed poll at the base interval would
//! cost on average.
//!
//! Each watched resource has a [`Track`]: when its work started, its class (what kind of work,
//! on what: deployment type, storage type and size for a file system) and a call budget. The
//! class is due from the last durations this controller observed for it, each the middle of
//! the last poll that saw the work busy and the one that saw it done, so known to half their
//! gap: the shortest of the most precise ones (a first one, seen by the early cadence, is
//! replaced by the next, seen by polls seconds apart), else a prior of what FSx usually takes
//! ([`prior`]). Until then the next poll is
//! three quarters of the remaining time away (at most twice the base interval); from then on every
//! [`FAST`] (every [`ALONE`] for a resource alone in flight, whose calls nobody shares). A
//! resource earns one call per base interval of its work (plus [`INITIAL_CREDIT`]) and pays
//! for the calls it asked for, a batch's call shared by the resources that were due; without
//! credit it falls back to the base interval, which is what a fixed poll costs. With `k` of
//! a kind in flight each call is shared `k` ways, so the early cadence is also at most
//! `2 x base / k` (never under [`EARLY_FLOOR`]): many creations are watched closely even when
//! the estimate is wrong, at a cost per resource that still falls with their number. Past 50,
//! each batch is a call: the cadences stretch so that all of them together make at most one
//! call per [`SPACING`].
//!
//! `--poll-interval` set: [`Cadence::Fixed`], every resource every interval, as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::fsx::FileSystem;
use crate::metrics::InFlight;

/// The cadence once a resource is due.
pub const FAST: Duration = Duration::from_secs(1);
/// The cadence once due, for a resource alone in flight (it pays each call in full).
pub const ALONE: Duration = Duration::from_secs(2);
/// The shortest early cadence, however many share the calls.
pub const EARLY_FLOOR: Duration = Duration::from_secs(3);
/// The least time between two describe calls of one kind on average, however many are in
/// flight (a thousand creations are 20 batches: each described every 5 s, not every second).
pub const SPACING: Duration = Duration::from_millis(250);
/// The base interval of the adaptive cadence: the budget is one call per this much work.
pub const BASE: Duration = Duration::from_secs(15);
/// Calls a resource may spend before it has earned them (the first polls of a short wait).
pub const INITIAL_CREDIT: f64 = 2.0;
/// The most credit a resource saves up.
const MAX_CREDIT: f64 = 30.0;
/// Observed durations kept per class.
const KEPT: usize = 5;

/// One observed duration: the middle of when the work was last seen busy and first seen done,
/// and that gap.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    took: Duration,
    gap: Duration,
}

/// What a resource is, for its expected duration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Class {
    pub kind: InFlight,
    /// Deployment type, storage type and size band (empty where it does not matter).
    pub detail: String,
}

impl Class {
    /// A class with no detail (associations, backups).
    pub fn of(kind: InFlight) -> Self {
        Self { kind, detail: String::new() }
    }

    /// The class of work `kind` on file system `fs`: sizes are banded by powers of two of
    /// 1200 GiB, since FSx's time grows with size but not linearly.
    pub fn file_system(kind: InFlight, fs: &FileSystem) -> Self {
        let band = (fs.capacity_gib.max(1) as f64 / 1200.0).log2().max(0.0).floor() as u32;
        let deployment = fs.lustre.deployment_type.as_ref().map_or("SCRATCH_1", |d| d.as_str());
        let storage = fs.storage_type.as_ref().map_or("SSD", |s| s.as_str());
        Self { kind, detail: format!("{deployment}/{storage}/{band}") }
    }
}

/// What FSx usually takes, before this controller has seen any: FSx documents creations of
/// "several minutes" for scratch file systems and longer for persistent ones; storage
/// capacity changes take minutes before the optimization that follows in the background.
pub fn prior(class: &Class) -> Duration {
    let min = |m: u64| Duration::from_secs(m * 60);
    match class.kind {
        InFlight::Creating => {
            if class.detail.starts_with("PERSISTENT") {
                min(10)
            } else {
                min(6)
            }
        }
        InFlight::Growing => min(10),
        InFlight::Modifying => min(3),
        InFlight::Associating => min(1),
        InFlight::BackingUp => min(5),
    }
}

/// One watched resource's schedule.
#[derive(Debug, Clone)]
pub struct Track {
    pub class: Class,
    /// When its work started (a file system's creation time, when known).
    pub started: Instant,
    /// The last time it was seen still in flight.
    pub last_busy: Option<Instant>,
    /// When it should be described next.
    pub next: Instant,
    credit: f64,
    earned_at: Instant,
}

impl Track {
    /// A resource whose work started at `started`, first described right away.
    pub fn new(class: Class, started: Instant, now: Instant) -> Self {
        Self { class, started, last_busy: None, next: now, credit: INITIAL_CREDIT, earned_at: now }
    }

    /// The credit left, in calls.
    pub fn credit(&self) -> f64 {
        self.credit
    }
}

/// How often in-flight resources are described.
pub enum Cadence {
    /// Every resource every interval (`--poll-interval`).
    Fixed(Duration),
    /// As the module docs say, with what was observed per class.
    Adaptive(Mutex<HashMap<Class, VecDeque<Observed>>>),
}

impl std::fmt::Debug for Cadence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cadence::Fixed(d) => write!(f, "Fixed({d:?})"),
            Cadence::Adaptive(_) => write!(f, "Adaptive"),
        }
    }
}

impl Cadence {
    /// `--poll-interval`: fixed when set, adaptive when not.
    pub fn new(fixed: Option<Duration>) -> Self {
        match fixed {
            Some(d) => Cadence::Fixed(d),
            None => Cadence::Adaptive(Mutex::default()),
        }
    }

    fn learned(&self) -> Option<std::sync::MutexGuard<'_, HashMap<Class, VecDeque<Observed>>>> {
        match self {
            Cadence::Fixed(_) => None,
            Cadence::Adaptive(m) => Some(m.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    /// How long work of `class` is expected to take at least: of the durations observed
    /// lately, those known as precisely as the best (within two seconds of its gap), the
    /// shortest (a single slow one does not make the next late); else the prior.
    pub fn expected(&self, class: &Class) -> Duration {
        let Some(learned) = self.learned() else { return prior(class) };
        let Some(seen) = learned.get(class).filter(|s| !s.is_empty()) else { return prior(class) };
        let best = seen.iter().map(|o| o.gap).min().unwrap_or_default() + 2 * FAST;
        seen.iter().filter(|o| o.gap <= best).map(|o| o.took).min().unwrap_or_else(|| prior(class))
    }

    /// True if this controller has seen work of `class` end.
    pub fn has_seen(&self, class: &Class) -> bool {
        self.learned().is_some_and(|l| l.get(class).is_some_and(|v| !v.is_empty()))
    }

    /// Records that work of `class` took `took`, give or take half of `gap`.
    pub fn observed(&self, class: &Class, took: Duration, gap: Duration) {
        if let Some(mut learned) = self.learned() {
            let seen = learned.entry(class.clone()).or_default();
            if seen.len() == KEPT {
                seen.pop_front();
            }
            seen.push_back(Observed { took, gap });
        }
    }

    /// After `track` was described at `now`, pays its `share` of the call (none: it rode
    /// along) and sets when it is described next, `peers` of its kind being in flight.
    pub fn described(&self, track: &mut Track, now: Instant, share: Option<f64>, peers: usize) {
        track.credit = (track.credit
            + now.saturating_duration_since(track.earned_at).as_secs_f64() / BASE.as_secs_f64())
        .min(MAX_CREDIT);
        track.earned_at = now;
        if let Some(share) = share {
            track.credit -= share;
        }
        track.next = now + self.interval(track, now, peers);
    }

    /// The wait before `track`'s next description, `peers` of its kind being in flight.
    fn interval(&self, track: &Track, now: Instant, peers: usize) -> Duration {
        if let Cadence::Fixed(d) = self {
            return *d;
        }
        let sharing = peers.clamp(1, crate::fsx::DESCRIBE_BATCH) as u32;
        // Past 50 in flight every batch is a call of its own: the spacing keeps their sum at
        // most one call per SPACING (4 a second: 200 in flight at the fast cadence).
        let batches = peers.div_ceil(crate::fsx::DESCRIBE_BATCH).max(1) as u32;
        let fast = (if sharing == 1 { ALONE } else { FAST }).max(SPACING * batches);
        let early_floor = EARLY_FLOOR.max(SPACING * batches);
        let due = track.started + self.expected(&track.class);
        let wanted = if due > now {
            let approach = ((due - now) * 3 / 4).clamp(fast, 2 * BASE);
            approach.min((2 * BASE / sharing).max(early_floor))
        } else {
            fast
        };
        // Out of credit: what a fixed poll at the base interval costs, no more.
        if track.credit < 1.0 / f64::from(sharing) && wanted < BASE { BASE } else { wanted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls a resource that settles after `took` (expected `expected`) alone, as the poller
    /// does; returns the calls made and the lag from done to noticed.
    fn alone(took: Duration, expected: Duration) -> (u32, Duration) {
        let cadence = Cadence::new(None);
        let class = Class::of(InFlight::BackingUp);
        cadence.observed(&class, expected, FAST);
        let t0 = Instant::now();
        let mut track = Track::new(class, t0, t0);
        let mut calls = 0;
        loop {
            let now = track.next;
            calls += 1;
            if now >= t0 + took {
                return (calls, now - (t0 + took));
            }
            cadence.described(&mut track, now, Some(1.0), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_duration_is_noticed_within_a_second_for_less_than_a_fixed_poll_costs() {
        for minutes in [3, 10] {
            let took = Duration::from_secs(minutes * 60);
            let (calls, lag) = alone(took, took);
            assert!(lag <= FAST, "{minutes} min: noticed {lag:?} late");
            let fixed = (took.as_secs() / BASE.as_secs()) as u32;
            assert!(calls <= fixed, "{minutes} min: {calls} calls, a 15 s poll makes {fixed}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_estimate_costs_no_more_than_the_base_interval_after_the_credit() {
        // Expected 3 min, takes 10: fast polls until the credit is spent, then every 15 s.
        let (calls, lag) = alone(Duration::from_secs(600), Duration::from_secs(180));
        assert!(lag <= BASE, "{lag:?}");
        assert!(calls <= 600 / 15 + INITIAL_CREDIT as u32 + 2, "{calls}");
        // Expected 10 min, takes 3: the early cadence is at most twice the base interval.
        let (_, lag) = alone(Duration::from_secs(180), Duration::from_secs(600));
        assert!(lag <= 2 * BASE, "{lag:?}");
    }

    #[test]
    fn the_estimate_is_the_shortest_of_the_most_precise_recent_observations_else_the_prior() {
        let cadence = Cadence::new(None);
        let class = Class { kind: InFlight::Creating, detail: "PERSISTENT_2/SSD/0".into() };
        assert_eq!(cadence.expected(&class), Duration::from_secs(600));
        for s in [100, 900, 200, 300, 250, 260] {
            cadence.observed(&class, Duration::from_secs(s), FAST);
        }
        // The first (100 s) fell out; the shortest of 900, 200, 300, 250, 260.
        assert_eq!(cadence.expected(&class), Duration::from_secs(200));
        // One seen 30 s after the poll before (early, while nothing was known) gives way to
        // the ones seen closely, though it is shorter.
        cadence.observed(&class, Duration::from_secs(150), Duration::from_secs(30));
        assert_eq!(cadence.expected(&class), Duration::from_secs(200));
        let fixed = Cadence::new(Some(Duration::from_secs(15)));
        fixed.observed(&class, Duration::from_secs(1), FAST);
        assert_eq!(fixed.expected(&class), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_interval_stays_fixed() {
        let cadence = Cadence::new(Some(Duration::from_secs(7)));
        let now = Instant::now();
        let mut track = Track::new(Class::of(InFlight::Associating), now, now);
        cadence.described(&mut track, now, Some(1.0), 1);
        assert_eq!(track.next, now + Duration::from_secs(7));
    }
}
