//! Replica arithmetic of a canary rollout: how many pods the stable, canary and older ReplicaSets get
//! in one reconcile, bounded by maxSurge and maxUnavailable. Plain integers in and out — no Kubernetes
//! types, no clock — so every rule here is a table test or a property test.
//!
//! The rules are written out in docs/replica-arithmetic.md ("Replica counts without a traffic router");
//! the doc comment of each function says which choice it makes where there was one, and why.

use std::fmt;

/// A Kubernetes int-or-string quantity such as `maxSurge: 3` or `maxSurge: "25%"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    Int(i32),
    Percent(i32),
}

impl IntOrPercent {
    /// Argo Rollouts' default for `maxSurge` when the Rollout leaves it out.
    pub const DEFAULT_MAX_SURGE: IntOrPercent = IntOrPercent::Percent(25);
    /// Argo Rollouts' default for `maxUnavailable` when the Rollout leaves it out.
    pub const DEFAULT_MAX_UNAVAILABLE: IntOrPercent = IntOrPercent::Percent(25);

    /// Parses `"3"` or `"25%"`. Only plain non-negative digits are accepted (no sign, no spaces, no
    /// fraction), because anything else in a Rollout spec is a typo worth reporting, not guessing at.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (digits, is_percent) = match text.strip_suffix('%') {
            Some(digits) => (digits, true),
            None => (text, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid value {text:?}: expected a non-negative whole number such as \"3\" or a percentage such as \"25%\""
            ));
        }
        let value: i32 = digits
            .parse()
            .map_err(|_| format!("invalid value {text:?}: number too large"))?;
        Ok(if is_percent {
            Self::Percent(value)
        } else {
            Self::Int(value)
        })
    }

    /// The absolute count: an `Int` as is, a `Percent` of `total` rounded up or down. A negative
    /// `total` counts as zero.
    pub fn resolve(self, total: i32, round_up: bool) -> i32 {
        match self {
            Self::Int(count) => count,
            Self::Percent(percent) => {
                let scaled = i64::from(total.max(0)) * i64::from(percent);
                saturate(if round_up {
                    ceil_div(scaled, 100)
                } else {
                    scaled.div_euclid(100)
                })
            }
        }
    }

    fn is_negative(self) -> bool {
        matches!(self, Self::Int(v) | Self::Percent(v) if v < 0)
    }

    fn is_literally_zero(self) -> bool {
        matches!(self, Self::Int(0) | Self::Percent(0))
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(count) => write!(f, "{count}"),
            Self::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// maxSurge and maxUnavailable resolved to pod counts for a given `spec.replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleLimits {
    pub max_surge: i32,
    pub max_unavailable: i32,
}

impl ScaleLimits {
    /// maxSurge rounds up and maxUnavailable rounds down, so small rollouts still get a surge pod
    /// and never lose more pods than the percentage promises.
    ///
    /// Both resolving to zero is an error: no pod could ever be added or removed, so the rollout
    /// would never move. The one exception is `replicas == 0` with percentages (both resolve to 0
    /// there by arithmetic): a scaled-to-zero Rollout needs no room, and calling it invalid would
    /// break scaling to zero. Two literal zeros are rejected whatever the replica count.
    pub fn resolve(replicas: i32, max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> Result<Self, String> {
        if max_surge.is_negative() {
            return Err(format!("maxSurge must not be negative, got {max_surge}"));
        }
        if max_unavailable.is_negative() {
            return Err(format!("maxUnavailable must not be negative, got {max_unavailable}"));
        }
        if let IntOrPercent::Percent(percent) = max_unavailable
            && percent > 100
        {
            return Err(format!("maxUnavailable must not exceed 100%, got {max_unavailable}"));
        }
        let limits = Self {
            max_surge: max_surge.resolve(replicas, true),
            max_unavailable: max_unavailable.resolve(replicas, false),
        };
        let both_literal_zero = max_surge.is_literally_zero() && max_unavailable.is_literally_zero();
        if limits.max_surge == 0 && limits.max_unavailable == 0 && (replicas > 0 || both_literal_zero) {
            return Err(format!(
                "maxSurge ({max_surge}) and maxUnavailable ({max_unavailable}) both resolve to 0 for {replicas} replicas: \
                 the rollout could never add or remove a pod"
            ));
        }
        Ok(limits)
    }

    /// [`ScaleLimits::resolve`] from the spec's strings, with parse errors naming the field.
    pub fn parse(replicas: i32, max_surge: &str, max_unavailable: &str) -> Result<Self, String> {
        let surge = IntOrPercent::parse(max_surge).map_err(|e| format!("maxSurge: {e}"))?;
        let unavailable = IntOrPercent::parse(max_unavailable).map_err(|e| format!("maxUnavailable: {e}"))?;
        Self::resolve(replicas, surge, unavailable)
    }
}

/// The whole number nearest to `replicas × weight / 100`, a tie rounding up — the formula of
/// docs/replica-arithmetic.md ("The nearest count")
/// on its own. The basic-canary planner adds the at-least-one-pod minimums on top of this, see
/// [`basic_canary_targets`]. `weight` is clamped to 0..=100 and negative `replicas` count as zero.
pub fn desired_canary_replicas(replicas: i32, weight: i32) -> i32 {
    let scaled = i64::from(replicas.max(0)) * i64::from(weight.clamp(0, 100));
    saturate((scaled + 50).div_euclid(100))
}

/// Pod counts a canary step aims at: what the ReplicaSets hold once the step is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaTargets {
    pub canary: i32,
    pub stable: i32,
}

/// Desired canary and stable counts of a basic canary (no traffic router), where pods *are* the
/// traffic split:
///
/// 1. weight 0 → (canary 0, stable replicas); weight 100 → (replicas, 0); 0 replicas → (0, 0).
/// 2. Otherwise canary = [`desired_canary_replicas`] (nearest, tie up) and stable = replicas − canary,
///    except that a weight strictly between 0 and 100 keeps **at least one pod on each side**: with
///    2+ replicas the canary is clamped to 1..=replicas−1 (10 replicas at 4% → 1 canary, 9 stable; at
///    96% → 9 and 1), so a step that promises some traffic to each version delivers some.
/// 3. With 1 replica both sides cannot fit in `replicas`. If maxSurge ≥ 1 the step runs one pod of
///    each (total 2 — within the surge, so it is reachable); with maxSurge 0 there is no room for a
///    second pod and the nearest count wins (5% → stable only, 95% → canary only).
///
/// This is what makes the six vectors of docs/replica-arithmetic.md hold: 1 replica at 5% or 95% with maxSurge 1 gives
/// (1, 1) by rule 3, and 10 replicas at 5% gives (1, 9) by rule 2 (0.5 rounds up, stable is the rest).
/// Argo Rollouts' `approximateWeightedCanaryStableReplicaCounts` differs in one way: when surging it
/// also weighs totals of replicas + 1 (10 at 5% → (1, 10)), which contradicts the (10, 5 → 1, 9) vector;
/// we follow the vectors.
pub fn basic_canary_targets(replicas: i32, weight: i32, max_surge: i32) -> ReplicaTargets {
    let replicas = replicas.max(0);
    let targets = |canary: i32, stable: i32| ReplicaTargets { canary, stable };
    if replicas == 0 {
        return targets(0, 0);
    }
    if weight <= 0 {
        return targets(0, replicas);
    }
    if weight >= 100 {
        return targets(replicas, 0);
    }
    let nearest = desired_canary_replicas(replicas, weight);
    if replicas >= 2 {
        let canary = nearest.clamp(1, replicas - 1);
        return targets(canary, replicas - canary);
    }
    if max_surge >= 1 {
        targets(1, 1)
    } else {
        targets(nearest, replicas - nearest)
    }
}

/// Canary pods for a traffic-routed canary: ceil(replicas × weight / 100). Rounding up (unlike the basic
/// canary) because the router, not the pod count, splits traffic; the canary only needs enough pods to
/// carry its share. `weight` is not capped at 100: `setCanaryScale.weight` may ask for more pods than
/// `replicas` (200% of 4 → 8).
pub fn routed_canary_replicas(replicas: i32, weight: i32) -> i32 {
    saturate(ceil_div(i64::from(replicas.max(0)) * i64::from(weight.max(0)), 100))
}

/// The `setCanaryScale` step of a traffic-routed canary; a Rollout without one behaves as
/// `MatchTrafficWeight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryScale {
    /// `setCanaryScale.replicas`: exactly this many canary pods, whatever the traffic weight.
    Replicas(i32),
    /// `setCanaryScale.weight`: this percentage of `spec.replicas`, whatever the traffic weight.
    Weight(i32),
    /// `setCanaryScale.matchTrafficWeight: true`: as many pods as the canary's traffic weight.
    MatchTrafficWeight,
}

/// Canary pods of a traffic-routed canary under a [`CanaryScale`]; `traffic_weight` is the canary's
/// current setWeight.
pub fn set_canary_scale_replicas(replicas: i32, traffic_weight: i32, scale: CanaryScale) -> i32 {
    match scale {
        CanaryScale::Replicas(count) => count.max(0),
        CanaryScale::Weight(weight) => routed_canary_replicas(replicas, weight),
        CanaryScale::MatchTrafficWeight => routed_canary_replicas(replicas, traffic_weight),
    }
}

/// Stable pods of a traffic-routed canary: all of `replicas`, unless `dynamicStableScale`, where the
/// stable keeps ceil(replicas × stable_weight / 100). The caller passes the larger of the desired and
/// the currently routed stable weight, so the stable never shrinks before its traffic has moved away.
pub fn routed_stable_replicas(replicas: i32, stable_weight: i32, dynamic_stable_scale: bool) -> i32 {
    if dynamic_stable_scale {
        routed_canary_replicas(replicas, stable_weight)
    } else {
        replicas.max(0)
    }
}

/// What one ReplicaSet has: `spec.replicas` and `status.availableReplicas`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSetCounts {
    pub spec: i32,
    pub available: i32,
}

impl ReplicaSetCounts {
    pub fn new(spec: i32, available: i32) -> Self {
        Self { spec, available }
    }

    /// Available pods that will stay: when `available > spec` the ReplicaSet is already deleting the
    /// surplus, and counting it would spend availability that is about to disappear.
    fn lasting_available(self) -> i64 {
        i64::from(self.available.min(self.spec).max(0))
    }
}

/// The ReplicaSets of one Rollout. `older` are those of neither the stable nor the canary revision
/// (e.g. a canary superseded by a newer template). Before the first rollout there is no stable: the
/// caller passes a zero stable and weight 100.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutReplicaSets {
    pub stable: ReplicaSetCounts,
    pub canary: ReplicaSetCounts,
    pub older: Vec<ReplicaSetCounts>,
}

impl RolloutReplicaSets {
    /// Stable fully up and available, no canary yet: where every rollout starts.
    pub fn steady(replicas: i32) -> Self {
        Self {
            stable: ReplicaSetCounts::new(replicas, replicas),
            ..Self::default()
        }
    }

    /// The state right after `plan` is written, before any pod changes: new pods are not available yet,
    /// and a scale-down removes not-available pods first (the ReplicaSet controller deletes not-ready
    /// pods before ready ones), so available = min(available, new spec).
    pub fn apply(&self, plan: &ScalePlan) -> Self {
        let scaled = |rs: ReplicaSetCounts, spec: i32| ReplicaSetCounts::new(spec, rs.available.min(spec));
        Self {
            stable: scaled(self.stable, plan.stable),
            canary: scaled(self.canary, plan.canary),
            older: self
                .older
                .iter()
                .zip(&plan.older)
                .map(|(rs, &spec)| scaled(*rs, spec))
                .collect(),
        }
    }

    /// Every pod the specs ask for is running and available.
    pub fn all_available(&self) -> Self {
        let ready = |rs: ReplicaSetCounts| ReplicaSetCounts::new(rs.spec, rs.spec);
        Self {
            stable: ready(self.stable),
            canary: ready(self.canary),
            older: self.older.iter().map(|rs| ready(*rs)).collect(),
        }
    }

    /// Sum of `spec.replicas` over every ReplicaSet.
    pub fn total_spec(&self) -> i64 {
        self.all().map(|rs| i64::from(rs.spec)).sum()
    }

    /// Available pods that will stay (see `available ≤ spec` above), over every ReplicaSet.
    pub fn total_available(&self) -> i64 {
        self.all().map(ReplicaSetCounts::lasting_available).sum()
    }

    fn all(&self) -> impl Iterator<Item = ReplicaSetCounts> + '_ {
        [self.stable, self.canary].into_iter().chain(self.older.iter().copied())
    }
}

/// New `spec.replicas` for each ReplicaSet after one reconcile; `older` in the input's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    pub stable: i32,
    pub canary: i32,
    pub older: Vec<i32>,
}

impl ScalePlan {
    pub fn total(&self) -> i64 {
        i64::from(self.stable) + i64::from(self.canary) + self.older.iter().map(|&n| i64::from(n)).sum::<i64>()
    }

    /// True when the plan changes nothing, so the caller can skip the writes.
    pub fn is_noop(&self, current: &RolloutReplicaSets) -> bool {
        self.stable == current.stable.spec
            && self.canary == current.canary.spec
            && self.older.iter().zip(&current.older).all(|(&n, rs)| n == rs.spec)
    }
}

/// One reconcile of a basic canary (no traffic router) at `weight`, towards [`basic_canary_targets`].
///
/// 1. Scale up. Room = replicas + maxSurge − Σ spec.replicas (older included). The stable is scaled
///    up to its target first, then the canary, each only as far as the room left allows — the stable
///    first because it is the version known to work.
/// 2. Scale down, in the same reconcile. Room = available pods − (replicas − maxUnavailable). Older
///    ReplicaSets go first (down to 0), then the canary, then the stable, each only down to its target.
///    Scale-up never adds available pods (new pods start unavailable), so this room is the same as
///    before step 1.
///
/// Both steps only move a ReplicaSet towards its target, never past it, so the total never grows
/// beyond replicas + maxSurge (or beyond where it already was) and available pods never fall below
/// replicas − maxUnavailable (or below where they already were).
///
/// A refinement (docs/replica-arithmetic.md, "Unavailable pods cost no availability"): pods that are not available cost no availability to
/// remove (the ReplicaSet controller deletes them first), so a ReplicaSet above its target may shed
/// them beyond the room above. That needs a second bound, as in the Kubernetes Deployment controller,
/// or crash-looping pods would all be deleted and leave nothing to become available: Σ spec of the
/// ReplicaSets being scaled down + available pods of the others stays ≥ replicas − maxUnavailable.
/// Without the refinement a stable with crash-looping pods would block the canary forever.
pub fn plan_basic_canary(replicas: i32, weight: i32, limits: ScaleLimits, current: &RolloutReplicaSets) -> ScalePlan {
    let targets = basic_canary_targets(replicas, weight, limits.max_surge);
    scale_towards(targets, replicas, limits, current)
}

/// The step is reached when the canary and the stable are at their targets with every one of those
/// pods available, and no older ReplicaSet has a pod left (in a basic canary they would still serve
/// traffic).
pub fn step_reached(replicas: i32, weight: i32, limits: ScaleLimits, current: &RolloutReplicaSets) -> bool {
    let targets = basic_canary_targets(replicas, weight, limits.max_surge);
    let settled = |rs: ReplicaSetCounts, target: i32| rs.spec == target && rs.available == target;
    settled(current.canary, targets.canary)
        && settled(current.stable, targets.stable)
        && current.older.iter().all(|rs| settled(*rs, 0))
}

/// One reconcile of an aborted traffic-routed canary: the stable back to `replicas` within the surge
/// room (and the availability room if it is above), older ReplicaSets down within the availability
/// room, and the canary either left alone or — once `scale_down_canary`, i.e. the caller saw
/// abortScaleDownDelaySeconds pass — set to 0 at once: the router already sends it no traffic, so
/// maxUnavailable does not protect anything there.
///
/// A basic canary's pods do serve traffic, so its abort is [`plan_basic_canary`] at weight 0 instead.
pub fn abort_scale(
    replicas: i32,
    limits: ScaleLimits,
    current: &RolloutReplicaSets,
    scale_down_canary: bool,
) -> ScalePlan {
    // The canary is kept out of the budgets (its target is where it is): it is either untouched or
    // dropped outright, and its pods still count towards the surge room until they are gone.
    let targets = ReplicaTargets {
        canary: current.canary.spec,
        stable: replicas.max(0),
    };
    let mut plan = scale_towards(targets, replicas, limits, current);
    if scale_down_canary {
        plan.canary = 0;
    }
    plan
}

/// The end of [`simulate_basic_canary_step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSimulation {
    /// Reconciles it took (0 if the step was already reached).
    pub reconciles: u32,
    pub state: RolloutReplicaSets,
}

/// Drives one basic-canary step the way the cluster would if every pod started fine: reconcile, write
/// the plan, let all pods become available, repeat until [`step_reached`]. `Err` carries the state after
/// `max_reconciles` reconciles without reaching the step.
///
/// Convergence: after the first reconcile all pods are available; then a reconcile that changes
/// nothing needs both rooms ≤ 0 while something is off target, which cannot happen — if some
/// ReplicaSet is below target and another above, the rooms sum to maxSurge + maxUnavailable ≥ 1; if
/// only below, Σ spec < Σ targets ≤ replicas + maxSurge; if only above, Σ spec > replicas. So every
/// reconcile moves at least one pod, and Σ |spec − target| + 1 reconciles always suffice.
pub fn simulate_basic_canary_step(
    replicas: i32,
    weight: i32,
    limits: ScaleLimits,
    start: RolloutReplicaSets,
    max_reconciles: u32,
) -> Result<StepSimulation, StepSimulation> {
    let mut state = start;
    for reconciles in 0..=max_reconciles {
        if step_reached(replicas, weight, limits, &state) {
            return Ok(StepSimulation { reconciles, state });
        }
        if reconciles < max_reconciles {
            let plan = plan_basic_canary(replicas, weight, limits, &state);
            state = state.apply(&plan).all_available();
        }
    }
    Err(StepSimulation {
        reconciles: max_reconciles,
        state,
    })
}

/// The shared two-phase reconcile (scale up within the surge room, then down within the availability
/// room) towards `targets`; older ReplicaSets always aim at 0. See [`plan_basic_canary`].
fn scale_towards(
    targets: ReplicaTargets,
    replicas: i32,
    limits: ScaleLimits,
    current: &RolloutReplicaSets,
) -> ScalePlan {
    let replicas = i64::from(replicas.max(0));

    let mut surge_room = replicas + i64::from(limits.max_surge) - current.total_spec();
    let stable = scale_up(current.stable.spec, targets.stable, &mut surge_room);
    let canary = scale_up(current.canary.spec, targets.canary, &mut surge_room);

    // Scale-down order is older, canary, stable: older pods are the least wanted, and the stable is the
    // fallback we keep longest.
    let min_available = replicas - i64::from(limits.max_unavailable);
    let mut ordered: Vec<(ReplicaSetCounts, i32)> = current.older.iter().map(|rs| (*rs, 0)).collect();
    ordered.push((ReplicaSetCounts::new(canary, current.canary.available), targets.canary));
    ordered.push((ReplicaSetCounts::new(stable, current.stable.available), targets.stable));

    // Both rooms are measured on the observed ReplicaSets: pods added by the scale-up above are not
    // available yet, and a ReplicaSet above its target was not touched by it.
    let observed = current
        .older
        .iter()
        .map(|rs| (*rs, 0))
        .chain([(current.canary, targets.canary), (current.stable, targets.stable)]);
    let mut rooms = ScaleDownRooms {
        availability: current.total_available() - min_available,
        capacity: observed
            .map(|(rs, target)| {
                if rs.spec > target {
                    i64::from(rs.spec)
                } else {
                    rs.lasting_available()
                }
            })
            .sum::<i64>()
            - min_available,
    };
    let mut scaled: Vec<i32> = ordered
        .iter()
        .map(|&(rs, target)| rooms.scale_down(rs, target))
        .collect();

    let stable = scaled.pop().expect("stable was pushed last");
    let canary = scaled.pop().expect("canary was pushed before stable");
    ScalePlan {
        stable,
        canary,
        older: scaled,
    }
}

fn scale_up(spec: i32, target: i32, room: &mut i64) -> i32 {
    let wanted = i64::from(target) - i64::from(spec);
    if wanted <= 0 || *room <= 0 {
        return spec;
    }
    let added = wanted.min(*room);
    *room -= added;
    saturate(i64::from(spec) + added)
}

/// The two budgets of a scale-down (see [`plan_basic_canary`]): `availability` = available pods we may
/// still lose; `capacity` = pods of any kind we may still remove.
struct ScaleDownRooms {
    availability: i64,
    capacity: i64,
}

impl ScaleDownRooms {
    fn scale_down(&mut self, rs: ReplicaSetCounts, target: i32) -> i32 {
        let excess = i64::from(rs.spec) - i64::from(target.max(0));
        if excess <= 0 {
            return rs.spec;
        }
        let not_available = i64::from(rs.spec) - rs.lasting_available();
        let shed_not_available = excess.min(not_available).min(self.capacity).max(0);
        self.capacity -= shed_not_available;
        let shed_available = (excess - shed_not_available)
            .min(self.availability)
            .min(self.capacity)
            .max(0);
        self.capacity -= shed_available;
        self.availability -= shed_available;
        saturate(i64::from(rs.spec) - shed_not_available - shed_available)
    }
}

/// ceil(a / b) for b > 0 and any sign of a.
fn ceil_div(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

fn saturate(value: i64) -> i32 {
    value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_surge: i32, max_unavailable: i32) -> ScaleLimits {
        ScaleLimits {
            max_surge,
            max_unavailable,
        }
    }

    fn rs(spec: i32, available: i32) -> ReplicaSetCounts {
        ReplicaSetCounts::new(spec, available)
    }

    fn state(canary: ReplicaSetCounts, stable: ReplicaSetCounts, older: &[ReplicaSetCounts]) -> RolloutReplicaSets {
        RolloutReplicaSets {
            stable,
            canary,
            older: older.to_vec(),
        }
    }

    #[test]
    fn parses_int_or_percent() {
        assert_eq!(IntOrPercent::parse("25%"), Ok(IntOrPercent::Percent(25)));
        assert_eq!(IntOrPercent::parse("3"), Ok(IntOrPercent::Int(3)));
        assert_eq!(IntOrPercent::parse("0"), Ok(IntOrPercent::Int(0)));
        assert_eq!(IntOrPercent::parse("0%"), Ok(IntOrPercent::Percent(0)));
        for bad in [
            "",
            "%",
            "-1",
            "-5%",
            "+3",
            "2.5%",
            "abc",
            " 3",
            "3 ",
            "25 %",
            "99999999999",
        ] {
            let err = IntOrPercent::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
        assert_eq!(IntOrPercent::Percent(25).to_string(), "25%");
        assert_eq!(IntOrPercent::Int(3).to_string(), "3");
    }

    #[test]
    fn resolves_percentages_with_the_requested_rounding() {
        assert_eq!(IntOrPercent::Percent(25).resolve(10, true), 3);
        assert_eq!(IntOrPercent::Percent(25).resolve(10, false), 2);
        assert_eq!(IntOrPercent::Percent(20).resolve(10, true), 2);
        assert_eq!(IntOrPercent::Percent(20).resolve(10, false), 2);
        assert_eq!(IntOrPercent::Percent(1).resolve(1, true), 1);
        assert_eq!(IntOrPercent::Percent(99).resolve(1, false), 0);
        assert_eq!(IntOrPercent::Percent(150).resolve(4, true), 6);
        assert_eq!(IntOrPercent::Int(3).resolve(10, false), 3);
        assert_eq!(IntOrPercent::Percent(50).resolve(-4, true), 0);
        assert_eq!(IntOrPercent::Percent(i32::MAX).resolve(i32::MAX, true), i32::MAX);
    }

    #[test]
    fn resolves_scale_limits_and_names_the_field_in_errors() {
        let defaults = ScaleLimits::resolve(
            10,
            IntOrPercent::DEFAULT_MAX_SURGE,
            IntOrPercent::DEFAULT_MAX_UNAVAILABLE,
        );
        assert_eq!(defaults, Ok(limits(3, 2)));
        assert_eq!(ScaleLimits::parse(1, "25%", "25%"), Ok(limits(1, 0)));
        assert_eq!(ScaleLimits::parse(10, "0", "1"), Ok(limits(0, 1)));
        // Scaled to zero, percentages resolve to zero by arithmetic; that must stay a valid spec.
        assert_eq!(ScaleLimits::parse(0, "25%", "25%"), Ok(limits(0, 0)));

        let both_zero = ScaleLimits::parse(5, "0%", "10%").unwrap_err();
        assert!(
            both_zero.contains("maxSurge") && both_zero.contains("maxUnavailable"),
            "{both_zero}"
        );
        assert!(
            ScaleLimits::parse(0, "0", "0%").is_err(),
            "literal zeros are invalid at any scale"
        );
        assert!(ScaleLimits::parse(10, "x", "1").unwrap_err().starts_with("maxSurge: "));
        assert!(
            ScaleLimits::parse(10, "1", "-1")
                .unwrap_err()
                .starts_with("maxUnavailable: ")
        );
        let negative = ScaleLimits::resolve(10, IntOrPercent::Int(-1), IntOrPercent::Int(1)).unwrap_err();
        assert!(negative.starts_with("maxSurge must not be negative"), "{negative}");
        let negative = ScaleLimits::resolve(10, IntOrPercent::Int(1), IntOrPercent::Percent(-1)).unwrap_err();
        assert!(
            negative.starts_with("maxUnavailable must not be negative"),
            "{negative}"
        );
        assert!(
            ScaleLimits::parse(10, "1", "101%")
                .unwrap_err()
                .contains("maxUnavailable")
        );
    }

    #[test]
    fn desired_canary_is_the_nearest_count_with_ties_up() {
        // (replicas, weight, canary)
        let table = [
            (10, 10, 1),
            (10, 5, 1), // 0.5 → 1
            (10, 4, 0),
            (10, 14, 1),
            (10, 15, 2), // 1.5 → 2
            (3, 50, 2),  // 1.5 → 2
            (3, 33, 1),
            (1, 5, 0),
            (1, 95, 1),
            (0, 50, 0),
            (10, 0, 0),
            (10, 100, 10),
            (10, 150, 10), // clamped weight
        ];
        for (replicas, weight, canary) in table {
            assert_eq!(
                desired_canary_replicas(replicas, weight),
                canary,
                "{replicas} replicas at {weight}%"
            );
        }
    }

    #[test]
    fn basic_canary_targets_keep_one_pod_on_each_side_of_a_partial_weight() {
        // (replicas, weight, maxSurge, canary, stable)
        let table = [
            (10, 10, 1, 1, 9),
            (10, 5, 1, 1, 9),
            (10, 4, 1, 1, 9),  // nearest is 0; a 4% step still gets one canary pod
            (10, 96, 0, 9, 1), // nearest is 10; the stable keeps one pod
            (3, 99, 0, 2, 1),
            (2, 50, 0, 1, 1),
            (1, 5, 1, 1, 1),  // one pod each side, the second within the surge
            (1, 95, 1, 1, 1), //
            (1, 5, 0, 0, 1),  // no surge room for a second pod: nearest wins
            (1, 95, 0, 1, 0), //
            (1, 0, 1, 0, 1),
            (1, 100, 1, 1, 0),
            (10, 0, 3, 0, 10),
            (10, 100, 3, 10, 0),
            (0, 50, 1, 0, 0),
        ];
        for (replicas, weight, max_surge, canary, stable) in table {
            assert_eq!(
                basic_canary_targets(replicas, weight, max_surge),
                ReplicaTargets { canary, stable },
                "{replicas} replicas at {weight}% with maxSurge {max_surge}"
            );
        }
    }

    /// The six vectors of docs/replica-arithmetic.md: one reconcile from a steady stable with every pod available.
    #[test]
    fn semantics_vectors_one_reconcile() {
        // (replicas, weight, canary now, stable now, maxUnavailable, maxSurge → canary, stable)
        let vectors = [
            (10, 10, 0, 10, 1, 1, 1, 9),
            (10, 30, 0, 10, 0, 3, 3, 10),
            (10, 30, 0, 10, 5, 0, 0, 7),
            (10, 5, 0, 10, 1, 1, 1, 9),
            (1, 5, 0, 1, 0, 1, 1, 1),
            (1, 95, 0, 1, 0, 1, 1, 1),
        ];
        for (replicas, weight, canary_now, stable_now, max_unavailable, max_surge, canary, stable) in vectors {
            let current = state(rs(canary_now, canary_now), rs(stable_now, stable_now), &[]);
            let plan = plan_basic_canary(replicas, weight, limits(max_surge, max_unavailable), &current);
            assert_eq!(
                (plan.canary, plan.stable),
                (canary, stable),
                "vector ({replicas}, {weight}, {canary_now}, {stable_now}, {max_unavailable}, {max_surge})"
            );
            assert!(plan.older.is_empty());
        }
    }

    #[test]
    fn reconciles_from_mid_rollout_states() {
        struct Case {
            name: &'static str,
            replicas: i32,
            weight: i32,
            limits: ScaleLimits,
            current: RolloutReplicaSets,
            expected: ScalePlan,
        }
        let plan = |canary, stable, older: &[i32]| ScalePlan {
            stable,
            canary,
            older: older.to_vec(),
        };
        let cases = [
            Case {
                name: "stable is scaled up before the canary, older RS waits for availability room",
                replicas: 10,
                weight: 30,
                limits: limits(1, 0),
                current: state(rs(0, 0), rs(1, 1), &[rs(3, 3)]),
                expected: plan(1, 7, &[3]),
            },
            Case {
                name: "older RS takes the availability room before the canary",
                replicas: 10,
                weight: 30,
                limits: limits(1, 0),
                current: state(rs(4, 4), rs(6, 6), &[rs(1, 1)]),
                expected: plan(4, 6, &[0]),
            },
            Case {
                name: "canary takes the availability room before the stable, which only sheds starting pods",
                replicas: 10,
                weight: 20,
                limits: limits(3, 1),
                current: state(rs(4, 4), rs(9, 6), &[]),
                expected: plan(3, 8, &[]),
            },
            Case {
                name: "second reconcile of the 5% vector: the stable gives way once the canary is up",
                replicas: 10,
                weight: 5,
                limits: limits(0, 1),
                current: state(rs(0, 0), rs(9, 9), &[]),
                expected: plan(1, 9, &[]),
            },
            Case {
                name: "surplus available pods that are being deleted do not count as room",
                replicas: 10,
                weight: 100,
                limits: limits(3, 0),
                current: state(rs(6, 3), rs(7, 8), &[]),
                expected: plan(6, 7, &[]),
            },
            Case {
                name: "canary is not scaled past the surge while the stable is unavailable",
                replicas: 4,
                weight: 100,
                limits: limits(1, 0),
                current: state(rs(0, 0), rs(4, 1), &[]),
                expected: plan(1, 4, &[]),
            },
            Case {
                name: "a stable with unavailable pods sheds them within the capacity room, not further",
                replicas: 4,
                weight: 100,
                limits: limits(1, 0),
                current: state(rs(1, 1), rs(4, 1), &[]),
                expected: plan(1, 3, &[]),
            },
            Case {
                name: "not-available pods go first, available ones only within the availability room",
                replicas: 10,
                weight: 30,
                limits: limits(0, 3),
                current: state(rs(4, 4), rs(8, 5), &[]),
                expected: plan(3, 7, &[]),
            },
            Case {
                name: "weight back to 0: the stable surges before the canary loses a pod",
                replicas: 4,
                weight: 0,
                limits: limits(1, 0),
                current: state(rs(4, 4), rs(0, 0), &[]),
                expected: plan(4, 1, &[]),
            },
            Case {
                name: "weight back to 0, stable pod still starting: nothing to do",
                replicas: 4,
                weight: 0,
                limits: limits(1, 0),
                current: state(rs(4, 4), rs(1, 0), &[]),
                expected: plan(4, 1, &[]),
            },
            Case {
                name: "a total above replicas + maxSurge comes down as far as availability allows",
                replicas: 10,
                weight: 50,
                limits: limits(1, 1),
                current: state(rs(8, 8), rs(10, 10), &[]),
                expected: plan(5, 5, &[]),
            },
        ];
        for case in cases {
            let plan = plan_basic_canary(case.replicas, case.weight, case.limits, &case.current);
            assert_eq!(plan, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn step_is_reached_only_at_target_with_every_pod_available_and_older_gone() {
        let at_step = state(rs(1, 1), rs(9, 9), &[]);
        assert!(step_reached(10, 10, limits(1, 1), &at_step));
        assert!(plan_basic_canary(10, 10, limits(1, 1), &at_step).is_noop(&at_step));
        assert!(!step_reached(10, 10, limits(1, 1), &state(rs(1, 0), rs(9, 9), &[])));
        assert!(!step_reached(10, 10, limits(1, 1), &state(rs(1, 1), rs(9, 10), &[])));
        assert!(!step_reached(
            10,
            10,
            limits(1, 1),
            &state(rs(1, 1), rs(9, 9), &[rs(0, 1)])
        ));
        assert!(step_reached(
            10,
            10,
            limits(1, 1),
            &state(rs(1, 1), rs(9, 9), &[rs(0, 0)])
        ));
        assert!(step_reached(1, 5, limits(1, 0), &state(rs(1, 1), rs(1, 1), &[])));
        assert!(step_reached(0, 50, limits(0, 0), &state(rs(0, 0), rs(0, 0), &[])));
    }

    #[test]
    fn routed_canary_counts_round_up() {
        assert_eq!(routed_canary_replicas(10, 5), 1);
        assert_eq!(routed_canary_replicas(10, 33), 4);
        assert_eq!(routed_canary_replicas(10, 0), 0);
        assert_eq!(routed_canary_replicas(10, 100), 10);
        assert_eq!(routed_canary_replicas(1, 1), 1);
        assert_eq!(set_canary_scale_replicas(1, 100, CanaryScale::Replicas(9)), 9);
        assert_eq!(set_canary_scale_replicas(4, 100, CanaryScale::Weight(200)), 8);
        assert_eq!(set_canary_scale_replicas(10, 20, CanaryScale::Weight(50)), 5);
        assert_eq!(set_canary_scale_replicas(10, 20, CanaryScale::MatchTrafficWeight), 2);
        assert_eq!(routed_stable_replicas(10, 20, false), 10);
        assert_eq!(routed_stable_replicas(10, 25, true), 3);
        assert_eq!(routed_stable_replicas(10, 0, true), 0);
    }

    #[test]
    fn abort_restores_the_stable_within_the_surge_and_drops_the_canary_when_told() {
        let current = state(rs(5, 5), rs(5, 5), &[]);
        // Before abortScaleDownDelaySeconds: canary untouched, the stable grows only by the surge.
        assert_eq!(
            abort_scale(10, limits(1, 0), &current, false),
            ScalePlan {
                stable: 6,
                canary: 5,
                older: vec![]
            }
        );
        // After: canary gone at once (it gets no traffic); the stable takes the freed room next time.
        let plan = abort_scale(10, limits(1, 0), &current, true);
        assert_eq!(
            plan,
            ScalePlan {
                stable: 6,
                canary: 0,
                older: vec![]
            }
        );
        let next = current.apply(&plan).all_available();
        assert_eq!(
            abort_scale(10, limits(1, 0), &next, true),
            ScalePlan {
                stable: 10,
                canary: 0,
                older: vec![]
            }
        );
    }

    #[test]
    fn a_whole_rollout_walks_every_step() {
        let limits = limits(1, 0);
        let mut current = RolloutReplicaSets::steady(10);
        for (weight, canary, stable) in [(10, 1, 9), (30, 3, 7), (50, 5, 5), (100, 10, 0)] {
            let done = simulate_basic_canary_step(10, weight, limits, current, 50).expect("step reached");
            assert_eq!(
                (done.state.canary.spec, done.state.stable.spec),
                (canary, stable),
                "at {weight}%"
            );
            // maxUnavailable 0 and maxSurge 1: one pod moves per reconcile, plus one for each pod of the
            // stable given back.
            assert!(
                done.reconciles >= 1 && done.reconciles <= 2 * 10,
                "{} reconciles at {weight}%",
                done.reconciles
            );
            current = done.state;
        }
    }

    // ---- property tests ----

    fn int_or_percent() -> impl Strategy<Value = IntOrPercent> {
        prop_oneof![
            (0..=5i32).prop_map(IntOrPercent::Int),
            (0..=100i32).prop_map(IntOrPercent::Percent)
        ]
    }

    #[derive(Clone, Debug)]
    enum Event {
        Reconcile {
            weight: i32,
        },
        /// This percentage of each ReplicaSet's missing pods becomes available.
        PodsBecomeAvailable {
            percent: i32,
        },
        /// A new template: the canary becomes an older ReplicaSet and a fresh canary starts at 0.
        NewRevision,
        Abort {
            scale_down_canary: bool,
        },
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            5 => (0..=100i32).prop_map(|weight| Event::Reconcile { weight }),
            4 => (0..=100i32).prop_map(|percent| Event::PodsBecomeAvailable { percent }),
            1 => Just(Event::NewRevision),
            1 => any::<bool>().prop_map(|scale_down_canary| Event::Abort { scale_down_canary }),
        ]
    }

    fn make_available(current: &RolloutReplicaSets, percent: i32) -> RolloutReplicaSets {
        let progress = |rs: ReplicaSetCounts| {
            let missing = (rs.spec - rs.available).max(0);
            let available = (rs.available + ceil_div(i64::from(missing) * i64::from(percent), 100) as i32).min(rs.spec);
            ReplicaSetCounts::new(rs.spec, available)
        };
        RolloutReplicaSets {
            stable: progress(current.stable),
            canary: progress(current.canary),
            older: current.older.iter().map(|rs| progress(*rs)).collect(),
        }
    }

    /// A state reachable by a rollout: start steady, then play the events. Every reconcile along the
    /// way is handed to `check` with the state it started from.
    fn play(
        replicas: i32,
        limits: ScaleLimits,
        events: &[Event],
        mut check: impl FnMut(&Event, &RolloutReplicaSets, &ScalePlan) -> Result<(), TestCaseError>,
    ) -> Result<RolloutReplicaSets, TestCaseError> {
        let mut current = RolloutReplicaSets::steady(replicas);
        for event in events {
            current = match *event {
                Event::Reconcile { weight } => {
                    let plan = plan_basic_canary(replicas, weight, limits, &current);
                    check(event, &current, &plan)?;
                    current.apply(&plan)
                }
                Event::Abort { scale_down_canary } => {
                    let plan = abort_scale(replicas, limits, &current, scale_down_canary);
                    check(event, &current, &plan)?;
                    current.apply(&plan)
                }
                Event::PodsBecomeAvailable { percent } => make_available(&current, percent),
                Event::NewRevision => {
                    let mut next = current.clone();
                    next.older.retain(|rs| rs.spec > 0 || rs.available > 0);
                    if next.older.len() < 3 {
                        next.older.push(next.canary);
                        next.canary = ReplicaSetCounts::default();
                    }
                    next
                }
            };
        }
        Ok(current)
    }

    /// Σ |spec − target| over every ReplicaSet: each reconcile after the first moves at least one pod,
    /// so this + 1 bounds the reconciles to a step.
    fn distance(targets: ReplicaTargets, current: &RolloutReplicaSets) -> u32 {
        let off = |spec: i32, target: i32| spec.abs_diff(target);
        off(current.canary.spec, targets.canary)
            + off(current.stable.spec, targets.stable)
            + current.older.iter().map(|rs| rs.spec.unsigned_abs()).sum::<u32>()
    }

    /// Worst-case available pods right after `plan` is written: each ReplicaSet keeps min(lasting
    /// available, new spec), since new pods start unavailable and not-available pods are deleted first.
    fn available_after(current: &RolloutReplicaSets, plan: &ScalePlan) -> i64 {
        current.apply(plan).total_available()
    }

    fn scenario() -> impl Strategy<Value = (i32, ScaleLimits, Vec<Event>, i32)> {
        (
            0..=50i32,
            int_or_percent(),
            int_or_percent(),
            prop::collection::vec(event(), 0..40),
            0..=100i32,
        )
            .prop_filter_map(
                "maxSurge and maxUnavailable both resolve to 0",
                |(replicas, surge, unavailable, events, weight)| {
                    let limits = ScaleLimits::resolve(replicas, surge, unavailable).ok()?;
                    Some((replicas, limits, events, weight))
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// (a) surge bound, (b) availability bound, capacity bound, targets never overshot, (e) determinism.
        #[test]
        fn every_reconcile_stays_within_the_budgets((replicas, limits, events, _) in scenario()) {
            let max_total = i64::from(replicas) + i64::from(limits.max_surge);
            let min_available = i64::from(replicas) - i64::from(limits.max_unavailable);
            play(replicas, limits, &events, |event, before, plan| {
                prop_assert_eq!(plan.older.len(), before.older.len());
                prop_assert!(
                    plan.total() <= max_total.max(before.total_spec()),
                    "{:?} grew the total from {} to {} past {}", event, before.total_spec(), plan.total(), max_total
                );
                if matches!(event, Event::Abort { scale_down_canary: true }) {
                    // A forced canary drop is the one place availability is given up on purpose.
                    return Ok(());
                }
                let available_before = before.total_available();
                prop_assert!(
                    available_after(before, plan) >= available_before.min(min_available),
                    "{:?} dropped availability from {} to {} below {}",
                    event, available_before, available_after(before, plan), min_available
                );
                for (old, &new) in before.older.iter().zip(&plan.older) {
                    prop_assert!(new <= old.spec && new >= 0, "older RS {} -> {}", old.spec, new);
                }
                if let Event::Reconcile { weight } = *event {
                    let targets = basic_canary_targets(replicas, weight, limits.max_surge);
                    // Capacity: pods kept by the ReplicaSets being scaled down + available pods of the rest.
                    let with_targets = before
                        .older
                        .iter()
                        .zip(&plan.older)
                        .map(|(rs, &new)| (*rs, new, 0))
                        .chain([(before.canary, plan.canary, targets.canary), (before.stable, plan.stable, targets.stable)]);
                    let (mut capacity_before, mut capacity_after) = (0i64, 0i64);
                    for (rs, new, target) in with_targets {
                        if rs.spec > target {
                            capacity_before += i64::from(rs.spec);
                            capacity_after += i64::from(new);
                        } else {
                            capacity_before += rs.lasting_available();
                            capacity_after += rs.lasting_available();
                        }
                    }
                    prop_assert!(
                        capacity_after >= capacity_before.min(min_available),
                        "capacity {} -> {} below {}", capacity_before, capacity_after, min_available
                    );
                    for (name, old, new, target) in [
                        ("canary", before.canary.spec, plan.canary, targets.canary),
                        ("stable", before.stable.spec, plan.stable, targets.stable),
                    ] {
                        prop_assert!(
                            new.abs_diff(target) <= old.abs_diff(target) && (new - target) * (old - target) >= 0,
                            "{} moved {} -> {} with target {}", name, old, new, target
                        );
                    }
                    prop_assert_eq!(plan, &plan_basic_canary(replicas, weight, limits, before));
                }
                Ok(())
            })?;
        }

        /// (c) convergence from any reachable state to the documented targets, (d) the 0% and 100% ends.
        #[test]
        fn every_step_is_reached_from_any_reachable_state((replicas, limits, events, weight) in scenario()) {
            let start = play(replicas, limits, &events, |_, _, _| Ok(()))?;
            let targets = basic_canary_targets(replicas, weight, limits.max_surge);
            let bound = distance(targets, &start) + 1;
            let done = simulate_basic_canary_step(replicas, weight, limits, start.clone(), bound);
            let done = match done {
                Ok(done) => done,
                Err(stuck) => return Err(TestCaseError::fail(format!("not reached in {bound} reconciles from {start:?}: {stuck:?}"))),
            };
            let end = &done.state;
            prop_assert_eq!((end.canary.spec, end.stable.spec), (targets.canary, targets.stable));
            prop_assert!(end.older.iter().all(|rs| rs.spec == 0));

            match weight {
                0 => prop_assert_eq!((end.canary.spec, end.stable.spec), (0, replicas)),
                100 => prop_assert_eq!((end.canary.spec, end.stable.spec), (replicas, 0)),
                _ if replicas >= 2 => {
                    let canary = desired_canary_replicas(replicas, weight).clamp(1, replicas - 1);
                    prop_assert_eq!((end.canary.spec, end.stable.spec), (canary, replicas - canary));
                }
                _ if replicas == 1 && limits.max_surge >= 1 => prop_assert_eq!((end.canary.spec, end.stable.spec), (1, 1)),
                _ => {
                    let canary = desired_canary_replicas(replicas, weight);
                    prop_assert_eq!((end.canary.spec, end.stable.spec), (canary, replicas - canary));
                }
            }
            prop_assert!(end.total_spec() <= i64::from(replicas) + i64::from(limits.max_surge));
        }

        /// Repeated aborts with the canary scale-down due end at stable == replicas, canary == 0.
        #[test]
        fn repeated_abort_converges_to_the_stable((replicas, limits, events, _) in scenario()) {
            let mut current = play(replicas, limits, &events, |_, _, _| Ok(()))?;
            let bound = distance(ReplicaTargets { canary: 0, stable: replicas }, &current) + 2;
            for _ in 0..bound {
                let plan = abort_scale(replicas, limits, &current, true);
                prop_assert_eq!(plan.canary, 0);
                current = current.apply(&plan).all_available();
            }
            prop_assert_eq!((current.stable.spec, current.canary.spec), (replicas, 0), "after {} aborts", bound);
            prop_assert!(current.older.iter().all(|rs| rs.spec == 0));
            prop_assert!(abort_scale(replicas, limits, &current, true).is_noop(&current));
        }
    }
}
