import Foundation

/// What the engine remembers from one cycle to the next: counter baselines,
/// smoothed rates, hysteresis state and swap history. A value: the same
/// state, policy, observation and `now` always give the same plan and state.
public struct EngineState: Sendable {
  var tracks: [VMTrack] = []
  var index: [String: Int] = [:]
  var policy: Policy?
  var rules: [ClassRule] = []
  var scratch = EngineScratch()
  /// Per pool (the policy's order): managed VMs on one of its VFs with no
  /// measured rate in the last cycle.
  var unmeasured: [Int] = []
  /// Refusals a restarted agent read from the domains (`restoreRefusal`),
  /// for VMs it has no track of yet.
  var restoredRefusals: [String: (times: Int, until: Instant)] = [:]

  public init() {}

  /// VMs on a VF of each pool that the last cycle could not measure (held
  /// as "not measured"): for the metric, read on a scrape.
  public var unmeasuredOnVF: [(pool: String, vms: Int)] {
    guard let policy else { return [] }
    return policy.pools.indices.map { (policy.pools[$0].name, $0 < unmeasured.count ? unmeasured[$0] : 0) }
  }

  /// What became of an action, told by whoever carried it out. A failed
  /// forced move backs off before it is tried again (see `ForcedBackoff`);
  /// a success clears the count. The engine assumes success when not told.
  public mutating func swapFinished(uuid: String, succeeded: Bool, now: Instant) {
    guard let i = index[uuid] else { return }
    if succeeded {
      tracks[i].failures = 0
      tracks[i].retryAt = nil
      tracks[i].refusals = 0
      tracks[i].refusedUntil = nil
    } else {
      tracks[i].failures += 1
      tracks[i].retryAt = now + ForcedBackoff.delay(afterFailures: tracks[i].failures)
    }
  }

  /// Every VM the engine tracks, in its own order, without hashing or class
  /// matching: for metrics rendered on a scrape, not every cycle.
  /// `classIndex` is -1 for a VM no class manages.
  public func forEachVM(_ body: (_ vm: VMIdentity, _ classIndex: Int, _ bytesPerSecond: Double?,
                                 _ packetsPerSecond: Double?, _ intensive: Bool, _ onVF: Bool) -> Void) {
    for t in tracks { body(t.identity, t.classIndex, t.smoothedBytes, t.smoothedPackets, t.intensive, t.vfSince != nil) }
  }

  /// The names of the classes `forEachVM`'s indexes mean: the policy of the
  /// last cycle, so the two always agree (a reload takes effect in both at
  /// the same cycle).
  public var classNames: [String] { policy?.classes.map(\.name) ?? [] }

  /// Per-VM view for status output and tests.
  public func rate(of uuid: String) -> (bytesPerSecond: Double?, packetsPerSecond: Double?, intensive: Bool)? {
    guard let i = index[uuid] else { return nil }
    let t = tracks[i]
    return (t.smoothedBytes, t.smoothedPackets, t.intensive)
  }
}

/// Buffers a cycle fills and the next one empties, kept so a steady-state
/// cycle allocates nothing. Not state: no decision depends on what they held.
struct EngineScratch: Sendable {
  /// Per VM of the observation, its track's index.
  var slots: [Int] = []
  /// Per pool (the policy's order), who sits on, leaves or wants its VFs.
  var contenders: [PoolContenders] = []
}

/// A class's numbers without its strings: what the per-VM hot path reads,
/// so a cycle over 1,000 VMs copies no strings and retains nothing.
struct ClassRule: Sendable, Equatable {
  var vf: VFEligibility
  var pool: Int
  var priority: Int
  var promote: RateThreshold
  var demote: RateThreshold
  var contentionWeight: Double
  /// The lowered promote threshold, and the contention above which it applies
  /// (infinity: never).
  var contendedPromote: RateThreshold
  var contendedAbove: Double

  init(_ c: QoSClass, _ policy: Policy) {
    vf = c.vf; priority = c.priority; promote = c.promote; demote = c.demote; contentionWeight = c.contentionWeight
    contendedPromote = c.promoteUnderContention?.lowered(c.promote) ?? c.promote
    contendedAbove = c.promoteUnderContention?.above ?? .infinity
    pool = c.pool.flatMap(policy.poolIndex(named:)) ?? -1
  }
}

struct SmoothingWeight: Sendable, Equatable {
  var dt: Double
  var halfLife: Double
  var alpha: Double
}

struct VMTrack: Sendable, Equatable {
  var identity: VMIdentity
  var resolution: ClassResolution = .unmanaged
  /// The managing class, -1 for none: read off `resolution`, so the two never disagree.
  var classIndex: Int { if case .managed(let c) = resolution { c } else { -1 } }
  /// The device the baseline counters came from; meaningful only while
  /// `lastCounters` is set (a plain String: an Optional one is compared
  /// through the generic witness, every VM, every cycle).
  var lastSource = ""
  var lastCounters: VMCounters?
  var lastAt: Instant?
  /// Rate over the last interval: thresholds are judged on it, so "sustained
  /// for N s" means exactly that, not "the average crept past".
  var intervalBytes: Double?
  var intervalPackets: Double?
  /// Start of the interval those rates cover: a rate over (start, at] is
  /// evidence for the whole interval, so sustain time counts from its start.
  var intervalStart: Instant?
  /// Smoothed rates: used to rank VMs against each other.
  var smoothedBytes: Double?
  var smoothedPackets: Double?
  var intensive = false
  /// Made intensive on the lowered threshold (`promoteUnderContention`)
  /// at rates under the class's own: the promote reason says so.
  var contendedAt: Double?
  /// This cycle's CPU contention as the ranking takes it (`rankedContention`).
  var contention = 0.0
  var aboveSince: Instant?
  var belowSince: Instant?
  var vfSince: Instant?
  var swaps: [Instant] = []
  var seen = true
  /// Not yet through a cycle: a track found on a VF is an incumbent whose
  /// release has to be shown, not assumed (a restart, a VM that came back).
  var fresh = true
  /// Failed swaps in a row, as the agent reported them, and when a forced
  /// move may be tried again.
  var failures = 0
  var retryAt: Instant?
  /// Swaps in a row whose guest did not use the NIC it was given, and until
  /// when the VM is left alone for it (`GuestRefusal`).
  var refusals = 0
  var refusedUntil: Instant?
  /// The smoothing weight for the last interval length and half-life.
  var smoothing: SmoothingWeight?

  init(identity: VMIdentity) { self.identity = identity }

  /// A rate over the last interval: the only evidence a move is made on.
  var measured: Bool { intervalBytes != nil || intervalPackets != nil }
}

/// The agent's report that a swap was rolled back because the guest never
/// used the new NIC (no driver, no DHCP on it): every move of the VM, forced
/// or not, waits `GuestRefusal.holdSeconds`, since each try holds the loop up
/// to the confirmation deadline and would most likely fail the same way.
extension EngineState {
  public mutating func guestRefused(uuid: String, now: Instant) {
    guard let i = index[uuid] else { return }
    tracks[i].refusals += 1
    tracks[i].refusedUntil = now + GuestRefusal.holdSeconds(afterRefusals: tracks[i].refusals)
  }

  /// The refusals in a row and the end of the hold, for the agent to keep
  /// where a restart finds them; nil when the guest has not refused.
  public func refusal(of uuid: String) -> (times: Int, until: Instant)? {
    guard let i = index[uuid], tracks[i].refusals > 0, let until = tracks[i].refusedUntil else { return nil }
    return (tracks[i].refusals, until)
  }

  /// What an earlier process recorded of a guest's refusals: held as it
  /// held them, from the VM's first cycle on (before its track exists). A
  /// record's end comes from the wall clock, which may have been set back
  /// since: never more than the longest hold from `now`.
  public mutating func restoreRefusal(uuid: String, times: Int, until recorded: Instant, now: Instant) {
    let until = min(recorded, now + GuestRefusal.capSeconds)
    if let i = index[uuid] {
      tracks[i].refusals = times; tracks[i].refusedUntil = until
    } else {
      restoredRefusals[uuid] = (times, until)
    }
  }
}

/// 30 s after the first refusal, doubling while the guest keeps refusing, at most 10 min.
public enum GuestRefusal {
  public static let baseSeconds = 30.0
  public static let capSeconds = 600.0

  public static func holdSeconds(afterRefusals n: Int) -> Double { doubling(after: n, base: baseSeconds, cap: capSeconds) }
}

/// How long a forced move (class `never`, wrong pool, over the cap) waits
/// after failures: doubling from `base`, at most `cap`; from `hourlyAfter`
/// failures in a row on, it also keeps to the VM's hourly swap budget.
public enum ForcedBackoff {
  public static let baseSeconds = 10.0
  public static let capSeconds = 600.0
  public static let hourlyAfter = 3

  public static func delay(afterFailures n: Int) -> Double { doubling(after: n, base: baseSeconds, cap: capSeconds) }
}

/// `base` after the first of `n` in a row, doubling with each, at most `cap`; 0 before any.
private func doubling(after n: Int, base: Double, cap: Double) -> Double {
  guard n > 0 else { return 0 }
  return min(cap, base * exp2(Double(min(n - 1, 30))))
}

/// One cycle of the engine: estimate (Estimate.swift), classify (Classify.swift),
/// allocate (Allocate.swift). Pure.
public func decide(_ state: inout EngineState, policy: Policy, observation: Observation, now: Instant) -> Plan {
  if !isSame(state.policy, policy) {
    // Classes may have changed: match again, keep rates and history.
    for i in state.tracks.indices { state.tracks[i].resolution = policy.resolveClass(of: state.tracks[i].identity) }
    state.policy = policy
    state.rules = policy.classes.map { ClassRule($0, policy) }
  }
  var slots = state.scratch.slots
  state.scratch.slots = []
  slots.removeAll(keepingCapacity: true)
  slots.append(contentsOf: repeatElement(0, count: observation.vms.count))
  defer { state.scratch.slots = slots }
  for i in state.tracks.indices { state.tracks[i].seen = false }
  // Read in place: copying a VMObservation retains every string in it, and
  // that was most of a small cycle's cost.
  let vms = observation.vms.span
  let halfLife = policy.smoothingHalfLifeSeconds
  for o in vms.indices {
    // Inventories arrive in the same order cycle after cycle: the track at
    // the same position, compared whole and in place, before any lookup.
    if o < state.tracks.count, state.tracks[o].identity == vms[o].identity {
      state.tracks[o].seen = true
      slots[o] = o
    } else if let slot = state.index[vms[o].identity.uuid], state.tracks[slot].identity == vms[o].identity {
      // Moved in the inventory, otherwise the same: found by hash, still
      // compared in place.
      state.tracks[slot].seen = true
      slots[o] = slot
    } else {
      slots[o] = trackSlot(&state, for: vms[o].identity, at: o, policy: policy)
    }
  }
  if forgetVanished(&state) {
    slots = observation.vms.map { state.index[$0.identity.uuid]! }
  }
  // One uniqueness check for the lot, rather than one per field written.
  let rules = state.rules
  var tracks = state.tracks.mutableSpan
  for o in vms.indices {
    let slot = slots[o]
    estimate(&tracks[slot], vms[o].reading, halfLife: halfLife)
    let c = tracks[slot].classIndex
    tracks[slot].contention = rankedContention(vms[o].contention)
    if c >= 0 { classify(&tracks[slot], rules[c], now: now) }
    switch vms[o].placement {
    case .vf: if tracks[slot].vfSince == nil { tracks[slot].vfSince = vms[o].vfSince ?? now }
    case .virtio: tracks[slot].vfSince = nil
    case .transitioning, .none: break
    }
    if tracks[slot].fresh {
      // Found holding a VF by a track that never saw it promoted: it got
      // there on evidence this process no longer has, so it keeps it until
      // measured traffic says otherwise (a full demote sustain).
      tracks[slot].fresh = false
      switch vms[o].placement {
      case .vf, .transitioning: tracks[slot].intensive = true
      case .virtio, .none: break
      }
    }
  }

  var plan = Plan()
  var budget = policy.antiFlap.maxSwapsPerCycle
  var contenders = gather(policy: policy, observation: observation, slots: slots, state: &state)
  if state.unmeasured.count != contenders.count { state.unmeasured = Array(repeating: 0, count: contenders.count) }
  for p in contenders.indices where state.unmeasured[p] != contenders[p].unmeasuredOnVF {
    state.unmeasured[p] = contenders[p].unmeasuredOnVF
  }
  for p in policy.pools.indices where !contenders[p].isEmpty {
    allocate(pool: p, contenders: &contenders[p], policy: policy, observation: observation, state: &state,
             now: now, budget: &budget, plan: &plan)
  }
  state.scratch.contenders = contenders
  // Demotions first, so promotions find the VFs they free.
  if plan.actions.count > 1 {
    plan.actions = plan.actions.filter { if case .demote = $0 { true } else { false } }
      + plan.actions.filter { if case .promote = $0 { true } else { false } }
  }
  return plan
}

/// Compares without wrapping `policy` in an Optional (a copy of the whole
/// policy, every cycle).
private func isSame(_ known: Policy?, _ policy: Policy) -> Bool {
  guard let known else { return false }
  return known == policy
}

private func trackSlot(_ state: inout EngineState, for id: VMIdentity, at position: Int, policy: Policy) -> Int {
  if position < state.tracks.count, state.tracks[position].identity.uuid == id.uuid {
    refresh(&state.tracks[position], id, policy)
    return position
  }
  if let slot = state.index[id.uuid] {
    refresh(&state.tracks[slot], id, policy)
    return slot
  }
  var track = VMTrack(identity: id)
  track.resolution = policy.resolveClass(of: id)
  if !state.restoredRefusals.isEmpty, let r = state.restoredRefusals.removeValue(forKey: id.uuid) {
    track.refusals = r.times; track.refusedUntil = r.until
  }
  state.tracks.append(track)
  state.index[id.uuid] = state.tracks.count - 1
  return state.tracks.count - 1
}

private func refresh(_ track: inout VMTrack, _ id: VMIdentity, _ policy: Policy) {
  track.seen = true
  if track.identity != id {
    track.identity = id
    track.resolution = policy.resolveClass(of: id)
  }
}

/// Drops VMs that left; true when slots moved.
private func forgetVanished(_ state: inout EngineState) -> Bool {
  guard state.tracks.contains(where: { !$0.seen }) else { return false }
  state.tracks.removeAll { !$0.seen }
  state.index = Dictionary(uniqueKeysWithValues: state.tracks.enumerated().map { ($1.identity.uuid, $0) })
  for i in state.tracks.indices { state.tracks[i].seen = true }
  return true
}
