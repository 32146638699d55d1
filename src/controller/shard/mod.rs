//! Sharding for `sluice controller --leader-elect --shard-count N`: namespaces hash to N shards, each
//! guarded by a Lease (`<lease-name>-shard-K`), and every replica reconciles only the namespaces of the
//! shards it holds. This module is the pure part — the hash, the per-namespace filter the watches
//! apply, and the fair-share decision; [`leases`] does the Lease I/O and [`run`] restarts the
//! controllers when the held set changes.
pub mod leases;
pub mod run;

use std::collections::BTreeSet;
use std::sync::Arc;

/// The most shards `--shard-count` takes: each is a Lease renewed every retry period, and a
/// replica reads them all on each pass.
pub const MAX_SHARDS: u16 = 256;

/// The shard of a namespace: FNV-1a 64-bit of its UTF-8 bytes, modulo `shard_count` (0 counts as 1).
/// Part of the contract (README, Sharding): changing it would move namespaces between shards on upgrade.
pub fn shard_of(namespace: &str, shard_count: u16) -> u16 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = namespace
        .as_bytes()
        .iter()
        .fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME));
    // The remainder is below shard_count, so it fits a u16.
    (hash % u64::from(shard_count.max(1))) as u16
}

/// The namespaces one generation of controllers may see: those whose shard is held. Watch events of
/// other namespaces are dropped before they reach a cache, so memory follows the held shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFilter {
    shard_count: u16,
    held: Arc<BTreeSet<u16>>,
}

impl ShardFilter {
    pub fn new(shard_count: u16, held: BTreeSet<u16>) -> Self {
        ShardFilter {
            shard_count: shard_count.max(1),
            held: Arc::new(held),
        }
    }

    pub fn holds(&self, namespace: &str) -> bool {
        self.held.contains(&shard_of(namespace, self.shard_count))
    }

    pub fn held(&self) -> &BTreeSet<u16> {
        &self.held
    }
}

/// One shard Lease as a replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Missing, released (no holder) or expired: anyone may take it.
    Free,
    /// Held by this replica.
    Mine,
    /// Held, and renewed within the lease duration, by another replica.
    Other(String),
}

/// What a replica does next about its shards: one Lease change per pass, so shares move gradually
/// and every change is confirmed against the API server before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Acquire(u16),
    Release(u16),
    Nothing,
}

/// The most shards one replica should hold: ceil(shards / live replicas). Each live replica taking up
/// to its share covers every shard (share × replicas ≥ shards).
pub fn fair_share(shard_count: u16, live_replicas: usize) -> usize {
    let replicas = live_replicas.max(1);
    usize::from(shard_count).div_ceil(replicas)
}

/// The fair-share decision. `leases[K]` is shard K's Lease as seen now; `live_replicas` counts the
/// replicas with a current membership Lease, this one included. Above its share a replica releases
/// its highest-numbered shard; under it, it takes the lowest-numbered free one; a shard another replica
/// holds is never taken (it changes hands only once free: released or expired).
pub fn plan(leases: &[LeaseState], live_replicas: usize) -> Step {
    let shard_count = u16::try_from(leases.len()).unwrap_or(u16::MAX);
    let share = fair_share(shard_count, live_replicas);
    let mine: Vec<u16> = (0..shard_count)
        .filter(|k| leases[usize::from(*k)] == LeaseState::Mine)
        .collect();
    if mine.len() > share {
        return mine.last().map_or(Step::Nothing, |k| Step::Release(*k));
    }
    if mine.len() < share
        && let Some(free) = (0..shard_count).find(|k| leases[usize::from(*k)] == LeaseState::Free)
    {
        return Step::Acquire(free);
    }
    Step::Nothing
}

/// A Lease name that Kubernetes accepts (a DNS-1123 subdomain of at most 253 characters) for the
/// membership Lease of `identity`, which may hold characters names may not (`_` from the identity
/// suffix, upper case from a host name).
pub fn member_lease_name(lease_name: &str, identity: &str) -> String {
    let mut cleaned: String = identity
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    // The identity ends in a random suffix: keep the end when it is too long.
    let room = 253usize.saturating_sub(lease_name.len() + "-member-".len()).max(1);
    if cleaned.len() > room {
        cleaned = cleaned[cleaned.len() - room..].to_string();
    }
    let cleaned = cleaned.trim_matches(|c: char| c == '-' || c == '.');
    let cleaned = if cleaned.is_empty() { "replica" } else { cleaned };
    format!("{lease_name}-member-{cleaned}")
}

/// The name of shard `shard`'s Lease.
pub fn shard_lease_name(lease_name: &str, shard: u16) -> String {
    format!("{lease_name}-shard-{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a 64 of "" is the offset basis; these values are the contract (README, Sharding).
        assert_eq!(shard_of("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as u16);
        assert_eq!(shard_of("a", u16::MAX), (0xaf63_dc4c_8601_ec8cu64 % 65535) as u16);
        assert_eq!(shard_of("foobar", 1000), (0x8594_4171_f739_67e8u64 % 1000) as u16);
        assert_eq!(shard_of("default", 1), 0);
        assert_eq!(shard_of("default", 0), 0);
    }

    #[test]
    fn the_filter_holds_the_namespaces_of_its_shards() {
        let filter = ShardFilter::new(4, BTreeSet::from([shard_of("team-a", 4)]));
        assert!(filter.holds("team-a"));
        let other = (0..100)
            .map(|i| format!("ns-{i}"))
            .find(|ns| shard_of(ns, 4) != shard_of("team-a", 4))
            .expect("some namespace hashes elsewhere");
        assert!(!filter.holds(&other));
    }

    #[test]
    fn a_replica_above_its_share_releases_its_highest_shard() {
        use LeaseState::*;
        assert_eq!(plan(&[Mine, Mine], 2), Step::Release(1));
        assert_eq!(plan(&[Mine, Free], 2), Step::Nothing);
        assert_eq!(plan(&[Other("b".into()), Free], 1), Step::Acquire(1));
        assert_eq!(plan(&[Other("b".into()), Other("b".into())], 2), Step::Nothing);
        assert_eq!(plan(&[], 3), Step::Nothing);
    }

    #[test]
    fn member_lease_names_are_valid() {
        assert_eq!(
            member_lease_name("sluice-controller", "Pod-7f_abcdef"),
            "sluice-controller-member-pod-7f-abcdef"
        );
        assert_eq!(member_lease_name("l", "__"), "l-member-replica");
        let long = member_lease_name("l", &"x".repeat(400));
        assert!(long.len() <= 253);
    }

    /// A model cluster: shard Leases as a table, replicas that run `plan` one at a time, die, and whose
    /// Leases free up when they die (expiry).
    #[derive(Debug, Clone)]
    enum Event {
        Pass(usize),
        Die(usize),
    }

    fn view(holders: &[Option<usize>], me: usize) -> Vec<LeaseState> {
        holders
            .iter()
            .map(|h| match h {
                None => LeaseState::Free,
                Some(r) if *r == me => LeaseState::Mine,
                Some(r) => LeaseState::Other(r.to_string()),
            })
            .collect()
    }

    /// Applies one pass of replica `me`: an acquire succeeds only on a free Lease (the API server's
    /// resourceVersion check), so two holders would show as a plan acquiring a held shard.
    fn pass(holders: &mut [Option<usize>], me: usize, live: usize) {
        match plan(&view(holders, me), live) {
            Step::Acquire(k) => {
                assert_eq!(holders[usize::from(k)], None, "the plan took a held shard");
                holders[usize::from(k)] = Some(me);
            }
            Step::Release(k) => {
                assert_eq!(
                    holders[usize::from(k)],
                    Some(me),
                    "the plan released a shard it does not hold"
                );
                holders[usize::from(k)] = None;
            }
            Step::Nothing => {}
        }
    }

    proptest! {
        /// Any namespace text (names are checked by the API server, not here) lands in a shard that
        /// exists, and always the same one.
        #[test]
        fn every_namespace_has_one_stable_shard_below_the_count(
            namespace in any::<String>(),
            shard_count in 1u16..=MAX_SHARDS,
        ) {
            let shard = shard_of(&namespace, shard_count);
            prop_assert!(shard < shard_count, "shard {} of {}", shard, shard_count);
            prop_assert_eq!(shard, shard_of(&namespace.clone(), shard_count));
            prop_assert!(ShardFilter::new(shard_count, BTreeSet::from([shard])).holds(&namespace));
        }

        #[test]
        fn shares_converge_and_every_shard_is_held(
            shard_count in 1u16..24,
            replicas in 1usize..6,
            events in proptest::collection::vec(
                prop_oneof![4 => (0usize..6).prop_map(Event::Pass), 1 => (0usize..6).prop_map(Event::Die)],
                0..80,
            ),
        ) {
            let mut holders: Vec<Option<usize>> = vec![None; usize::from(shard_count)];
            let mut alive: Vec<bool> = vec![true; replicas];
            for event in events {
                let live = alive.iter().filter(|a| **a).count();
                match event {
                    Event::Pass(r) if r < replicas && alive[r] => pass(&mut holders, r, live),
                    // The last replica never dies: the property is about one that lives.
                    Event::Die(r) if r < replicas && alive[r] && live > 1 => {
                        alive[r] = false;
                        for holder in holders.iter_mut().filter(|h| **h == Some(r)) {
                            *holder = None;
                        }
                    }
                    _ => {}
                }
            }
            // Then every live replica runs passes in turn: within a bounded number of rounds, no
            // replica is above its share and every shard is held.
            let live: Vec<usize> = (0..replicas).filter(|r| alive[*r]).collect();
            let share = fair_share(shard_count, live.len());
            for _round in 0..(2 * usize::from(shard_count) + 2) {
                for r in &live {
                    pass(&mut holders, *r, live.len());
                }
            }
            for r in &live {
                let held = holders.iter().filter(|h| **h == Some(*r)).count();
                prop_assert!(held <= share, "replica {} holds {} > share {}", r, held, share);
            }
            prop_assert!(holders.iter().all(|h| h.is_some_and(|r| alive[r])), "{:?}", holders);
            // Converged: another round changes nothing.
            let before = holders.clone();
            for r in &live {
                pass(&mut holders, *r, live.len());
            }
            prop_assert_eq!(before, holders);
        }
    }
}
