import Foundation

/// What the engine remembers from one cycle to the next: counter baselines,
/// smoothed rates, hysteresis state and swap history. A value: the same
/// state, policy, observation and `now` always give the same plan and state.
public struct EngineState: Sendable, Equatable {
  var tracks: [VMTrack] = []
  var index: [String: Int] = [:]
  var policy: Policy?
  var rules: [ClassRule] = []
  /// Reused each cycle so a steady-state cycle allocates nothing.
  var slots: [Int] = []
  var contenders: [PoolContenders] = []
  /// Per pool (the policy's order): managed VMs on one of its VFs with no
  /// measured rate in the last cycle.
  var unmeasured: [Int] = []

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

/// A class's numbers without its strings: what the per-VM hot path reads,
/// so a cycle over 1,000 VMs copies no strings and retains nothing.
struct ClassRule: Sendable, Equatable {
  var vf: VFEligibility
  var pool: Int
  var priority: Int
  var promote: RateThreshold
  var demote: RateThreshold

  init(_ c: QoSClass, _ policy: Policy) {
    vf = c.vf; priority = c.priority; promote = c.promote; demote = c.demote
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
  var resolution: ClassResolution = .unmanaged {
    didSet { if case .managed(let c) = resolution { classIndex = c } else { classIndex = -1 } }
  }
  var classIndex = -1
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
  /// The smoothing weight for the last interval length and half-life.
  var smoothing: SmoothingWeight?

  init(identity: VMIdentity) { self.identity = identity }

  /// A rate over the last interval: the only evidence a move is made on.
  var measured: Bool { intervalBytes != nil || intervalPackets != nil }
}

/// How long a forced move (class `never`, wrong pool, over the cap) waits
/// after failures: doubling from `base`, at most `cap`; from `hourlyAfter`
/// failures in a row on, it also keeps to the VM's hourly swap budget.
public enum ForcedBackoff {
  public static let baseSeconds = 10.0
  public static let capSeconds = 600.0
  public static let hourlyAfter = 3

  public static func delay(afterFailures n: Int) -> Double {
    guard n > 0 else { return 0 }
    return min(capSeconds, baseSeconds * exp2(Double(min(n - 1, 30))))
  }
}

/// One cycle of the engine: estimate, classify, allocate. Pure.
public func decide(_ state: inout EngineState, policy: Policy, observation: Observation, now: Instant) -> Plan {
  if !isSame(state.policy, policy) {
    // Classes may have changed: match again, keep rates and history.
    for i in state.tracks.indices { state.tracks[i].resolution = policy.resolveClass(of: state.tracks[i].identity) }
    state.policy = policy
    state.rules = policy.classes.map { ClassRule($0, policy) }
  }
  var slots = state.slots
  state.slots = []
  slots.removeAll(keepingCapacity: true)
  slots.append(contentsOf: repeatElement(0, count: observation.vms.count))
  defer { state.slots = slots }
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
  state.contenders = contenders
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


/// Counter deltas over real elapsed time. A counter that goes backwards, a
/// device that changed, or no reading at all is a gap: the previous rates
/// stand and nothing new is learnt — never a negative or a zero rate.
@inline(__always)
func estimate(_ track: inout VMTrack, _ reading: CounterReading, halfLife: Double) {
  // Only the counters come out of the reading; the source name is compared
  // where it lies and copied only when it changed, so a steady cycle neither
  // retains nor releases it.
  guard let (counters, at) = reading.counters else {
    // No evidence this cycle, and a gap: the next reading starts a fresh
    // baseline, so a rate never spans the gap and no sustain clock runs over it.
    track.intervalBytes = nil; track.intervalPackets = nil
    track.lastCounters = nil; track.lastAt = nil
    // Unknown is not "as before": a rate from another NIC (before the
    // promotion) would rank the VM on traffic nobody measured.
    if reading.isUnknown { track.smoothedBytes = nil; track.smoothedPackets = nil }
    return
  }
  let continuing = track.lastCounters != nil && reading.isFrom(track.lastSource)
  if !continuing { reading.copySource(to: &track.lastSource) }
  estimate(&track, counters, at: at, continuing: continuing, halfLife: halfLife)
}

private func estimate(_ track: inout VMTrack, _ counters: VMCounters, at: Instant, continuing: Bool, halfLife: Double) {
  let last = track.lastCounters, lastAt = track.lastAt
  track.lastCounters = counters; track.lastAt = at
  track.intervalBytes = nil; track.intervalPackets = nil
  guard continuing, let last, let lastAt else { return }
  let dt = at - lastAt
  guard dt > 0, counters.rxBytes >= last.rxBytes, counters.txBytes >= last.txBytes else { return }
  let bytes = Double((counters.rxBytes - last.rxBytes) + (counters.txBytes - last.txBytes)) / dt
  var packets: Double?
  if let rp = counters.rxPackets, let tp = counters.txPackets, let lrp = last.rxPackets, let ltp = last.txPackets,
     rp >= lrp, tp >= ltp {
    packets = Double((rp - lrp) + (tp - ltp)) / dt
  }
  track.intervalBytes = bytes
  track.intervalPackets = packets
  track.intervalStart = lastAt
  // Weight by elapsed time, so an irregular interval does not skew the mean.
  // Intervals repeat: the last one's weight is kept rather than recomputed
  // (exp2 was a tenth of a small cycle's arithmetic).
  let alpha: Double
  if let w = track.smoothing, w.dt == dt, w.halfLife == halfLife {
    alpha = w.alpha
  } else {
    alpha = halfLife <= 0 ? 1 : 1 - exp2(-dt / halfLife)
    track.smoothing = SmoothingWeight(dt: dt, halfLife: halfLife, alpha: alpha)
  }
  track.smoothedBytes = track.smoothedBytes.map { $0 + alpha * (bytes - $0) } ?? bytes
  if let p = packets { track.smoothedPackets = track.smoothedPackets.map { $0 + alpha * (p - $0) } ?? p }
}

/// Hysteresis: intensive once a promote threshold has been met for its
/// sustain time; released once every rate has been under its release
/// threshold for that threshold's sustain time. Between the two, nothing moves.
func classify(_ track: inout VMTrack, _ c: ClassRule, now: Instant) {
  guard c.vf == .eligible else { return }
  guard track.measured else {
    // A gap restarts both clocks.
    track.aboveSince = nil; track.belowSince = nil
    return
  }
  let b = track.intervalBytes, p = track.intervalPackets
  let start = min(track.intervalStart ?? now, now)
  if !track.intensive {
    if reaches(b, p, c.promote) {
      let since = track.aboveSince ?? start
      track.aboveSince = since
      if now - since >= c.promote.sustainSeconds { track.intensive = true; track.belowSince = nil }
    } else {
      track.aboveSince = nil
    }
  } else {
    if underAll(b, p, c.demote) {
      let since = track.belowSince ?? start
      track.belowSince = since
      if now - since >= c.demote.sustainSeconds { track.intensive = false; track.aboveSince = nil }
    } else {
      track.belowSince = nil
    }
  }
}

private func reaches(_ b: Double?, _ p: Double?, _ t: RateThreshold) -> Bool {
  if let tb = t.bytesPerSecond, let b, b >= tb { return true }
  if let tp = t.packetsPerSecond, let p, p >= tp { return true }
  return false
}

/// Unmeasured packets do not hold a VM up; unmeasured bytes do not either,
/// but at least one measured rate must be under its threshold.
private func underAll(_ b: Double?, _ p: Double?, _ t: RateThreshold) -> Bool {
  var measured = false
  if let tb = t.bytesPerSecond, let b { if b >= tb { return false }; measured = true }
  if let tp = t.packetsPerSecond, let p { if p >= tp { return false }; measured = true }
  return measured
}

/// How hard a VM pushes relative to its own class's promote threshold, so
/// VMs of different classes compare on one scale.
func intensity(_ track: VMTrack, _ c: ClassRule) -> Double {
  var x = 0.0
  if let tb = c.promote.bytesPerSecond, tb > 0, let b = track.smoothedBytes { x = max(x, b / tb) }
  if let tp = c.promote.packetsPerSecond, tp > 0, let p = track.smoothedPackets { x = max(x, p / tp) }
  if c.promote.bytesPerSecond == nil && c.promote.packetsPerSecond == nil, let b = track.smoothedBytes { x = b }
  return x
}

struct Contender: Sendable {
  var slot: Int
  var pinned: Bool
  var priority: Int
  var intensity: Double
  var name: String
  /// On a VF with no rate this cycle: held, never displaced, ranked at 0.
  var unmeasured = false

  /// Pinned first, then priority, then intensity; the name breaks ties so the
  /// order never depends on the inventory's.
  func outranks(_ o: Contender) -> Bool {
    if pinned != o.pinned { return pinned }
    if priority != o.priority { return priority > o.priority }
    if intensity != o.intensity { return intensity > o.intensity }
    return name < o.name
  }

  /// A challenger must win on pinning or priority outright, or on intensity
  /// by the margin.
  func beats(_ incumbent: Contender, margin: Double) -> Bool {
    // A pinned incumbent is pinned: no one, pinned or not, takes its VF.
    if incumbent.pinned { return false }
    if pinned { return true }
    if priority != incumbent.priority { return priority > incumbent.priority }
    return intensity > incumbent.intensity * (1 + margin)
  }
}

/// Who sits on, leaves, or wants each pool's VFs: one pass over the VMs.
struct PoolContenders: Sendable, Equatable {
  static func == (a: PoolContenders, b: PoolContenders) -> Bool { true }  // scratch space, not state
  var incumbents: [Contender] = []
  var challengers: [Contender] = []
  var leaving: [(slot: Int, reason: Reason, force: Bool)] = []
  /// VMs that would move if they had been measured: held as "not measured".
  var unmeasured: [(slot: Int, wants: Wish, why: NoRate)] = []
  /// Of those, the ones on a VF of this pool.
  var unmeasuredOnVF = 0
  /// Managed VMs mid-swap (or whose guest has not let go of a NIC): they hold
  /// a VF of this pool and nobody else may count on it.
  var transitioning = 0
  var isEmpty: Bool { incumbents.isEmpty && challengers.isEmpty && leaving.isEmpty && unmeasured.isEmpty }

  /// Emptied for the next cycle, capacity kept; an empty list is left alone
  /// (removeAll costs a replaceSubrange even then).
  mutating func clear() {
    if !incumbents.isEmpty { incumbents.removeAll(keepingCapacity: true) }
    if !challengers.isEmpty { challengers.removeAll(keepingCapacity: true) }
    if !leaving.isEmpty { leaving.removeAll(keepingCapacity: true) }
    if !unmeasured.isEmpty { unmeasured.removeAll(keepingCapacity: true) }
    transitioning = 0
    unmeasuredOnVF = 0
  }
}

private func gather(policy: Policy, observation: Observation, slots: [Int], state: inout EngineState) -> [PoolContenders] {
  var byPool = state.contenders
  state.contenders = []
  if byPool.count != policy.pools.count { byPool = Array(repeating: PoolContenders(), count: policy.pools.count) }
  for p in byPool.indices { byPool[p].clear() }
  // In place, as in decide: neither an observation nor a track is copied.
  let vms = observation.vms.span
  for o in vms.indices {
    let slot = slots[o]
    let c = state.tracks[slot].classIndex
    guard c >= 0 else { continue }
    let rule = state.rules[c]
    let pinned = rule.vf == .always
    switch vms[o].placement {
    case .vf(let held):
      // Usually the class's own pool: one comparison, no search.
      guard let p = rule.pool >= 0 && policy.pools[rule.pool].name == held ? rule.pool : policy.poolIndex(named: held)
      else { continue }
      let tracks = state.tracks.span
      if rule.vf == .never {
        byPool[p].leaving.append((slot, .classNever(className: policy.classes[c].name), true))
      } else if rule.pool != p {
        byPool[p].leaving.append((slot, .wrongPool(holds: held, classPool: policy.classes[c].pool), true))
      } else if !pinned && !tracks[slot].measured {
        // Neither released nor ranked on a rate nobody measured this cycle.
        byPool[p].unmeasured.append((slot, tracks[slot].intensive ? .keep : .demote, NoRate(vms[o].reading)))
        byPool[p].unmeasuredOnVF += 1
        byPool[p].incumbents.append(Contender(slot: slot, pinned: false, priority: rule.priority, intensity: 0,
                                              name: tracks[slot].identity.name, unmeasured: true))
      } else if !pinned && !tracks[slot].intensive {
        byPool[p].leaving.append((slot, .sustainedBelow(bytesPerSecond: tracks[slot].intervalBytes,
                                                        packetsPerSecond: tracks[slot].intervalPackets,
                                                        threshold: rule.demote), false))
      } else {
        byPool[p].incumbents.append(Contender(slot: slot, pinned: pinned, priority: rule.priority,
                                              intensity: intensity(tracks[slot], rule), name: tracks[slot].identity.name))
      }
    case .transitioning(let held):
      if let p = policy.poolIndex(named: held) { byPool[p].transitioning += 1 }
    case .virtio:
      let tracks = state.tracks.span
      guard rule.pool >= 0, pinned || (rule.vf == .eligible && tracks[slot].intensive) else { continue }
      if !pinned && !tracks[slot].measured {
        byPool[rule.pool].unmeasured.append((slot, .promote, NoRate(vms[o].reading)))
        continue
      }
      byPool[rule.pool].challengers.append(Contender(slot: slot, pinned: pinned, priority: rule.priority,
                                                     intensity: intensity(tracks[slot], rule), name: tracks[slot].identity.name))
    case .none:
      continue
    }
  }
  return byPool
}

private func allocate(pool p: Int, contenders: inout PoolContenders, policy: Policy, observation: Observation,
                      state: inout EngineState, now: Instant, budget: inout Int, plan: inout Plan) {
  let flap = policy.antiFlap
  let poolName = policy.pools[p].name
  let capacity = observation.capacity(of: poolName)
  let usable = max(0, min(policy.pools[p].maxInUse ?? capacity.total, capacity.total) - capacity.heldByOthers)

  var inUse = contenders.incumbents.count + contenders.leaving.count + contenders.transitioning
  // Whoever wants to move may be held: room for all of them at once (grown
  // one by one, the holds were a tenth of a busy cycle).
  if plan.holds.capacity == 0 {
    plan.holds.reserveCapacity(contenders.leaving.count + contenders.challengers.count + contenders.unmeasured.count)
  }
  // No evidence, no move.
  for u in contenders.unmeasured {
    plan.holds.append(Hold(vm: state.tracks[u.slot].identity, wants: u.wants, reason: .notMeasured(u.why)))
  }
  // Leavers that may go now go; the rest stay counted as in use.
  for leaver in contenders.leaving {
    let blocked = leaver.force ? forcedBlock(state.tracks.span[leaver.slot], flap, now: now)
      : antiFlapBlock(state.tracks.span[leaver.slot], flap, now: now, needsDwell: true)
    if let blocked {
      plan.holds.append(Hold(vm: state.tracks[leaver.slot].identity, wants: .demote, reason: blocked))
      continue
    }
    guard budget > 0 else {
      plan.holds.append(Hold(vm: state.tracks[leaver.slot].identity, wants: .demote,
                             reason: .cycleBudgetSpent(limit: flap.maxSwapsPerCycle)))
      continue
    }
    demote(&state, leaver.slot, pool: poolName, reason: leaver.reason, now: now, budget: &budget, plan: &plan)
    inUse -= 1
  }

  // The steady state: nobody wants in, nobody over the cap — nothing to rank.
  if contenders.challengers.isEmpty && inUse <= usable { return }
  // Sorted where they lie: the contenders are this cycle's scratch space.
  contenders.incumbents.sort { $0.outranks($1) }
  // A cap lowered under the running system: shed the weakest incumbents
  // (those backing off after failed sheds are passed over, and held).
  var w = contenders.incumbents.count - 1
  while inUse > usable, w >= 0, budget > 0 {
    let weakest = contenders.incumbents[w]
    if let blocked = forcedBlock(state.tracks.span[weakest.slot], flap, now: now) {
      plan.holds.append(Hold(vm: state.tracks[weakest.slot].identity, wants: .demote, reason: blocked))
      w -= 1
      continue
    }
    contenders.incumbents.remove(at: w)
    w -= 1
    demote(&state, weakest.slot, pool: poolName, reason: .overCap(inUse: inUse, cap: usable), now: now,
           budget: &budget, plan: &plan)
    inUse -= 1
  }

  contenders.challengers.sort { $0.outranks($1) }
  for challenger in contenders.challengers {
    if let blocked = antiFlapBlock(state.tracks.span[challenger.slot], flap, now: now, needsDwell: false) {
      plan.holds.append(Hold(vm: state.tracks[challenger.slot].identity, wants: .promote, reason: blocked))
      continue
    }
    if inUse < usable {
      guard budget > 0 else {
        plan.holds.append(Hold(vm: state.tracks[challenger.slot].identity, wants: .promote,
                               reason: .cycleBudgetSpent(limit: flap.maxSwapsPerCycle)))
        continue
      }
      promote(&state, challenger.slot, pool: poolName, reason: promotionReason(state.tracks.span[challenger.slot], policy),
              now: now, budget: &budget, plan: &plan)
      inUse += 1
      continue
    }
    guard let m = incumbentToDisplace(by: challenger, contenders.incumbents, state.tracks, flap, now: now,
                                      inUse: inUse, usable: usable, budget: budget, plan: &plan) else { continue }
    let loser = contenders.incumbents.remove(at: m)
    demote(&state, loser.slot, pool: poolName,
           reason: .displacedBy(challenger: challenger.name, challengerIntensity: challenger.intensity,
                                intensity: loser.intensity, margin: flap.challengerMargin),
           now: now, budget: &budget, plan: &plan)
    // The promote waits for the demote to be done: if it fails the VF was
    // never free. Next cycle the freed VF goes to the best challenger then.
    plan.holds.append(Hold(vm: state.tracks[challenger.slot].identity, wants: .promote,
                           reason: .displaces(incumbent: loser.name, intensity: challenger.intensity,
                                              incumbentIntensity: loser.intensity, margin: flap.challengerMargin)))
  }
}

/// Full: the weakest incumbent that may leave is the one to beat. `nil`,
/// with the hold that says why, when none is.
private func incumbentToDisplace(by challenger: Contender, _ incumbents: [Contender], _ tracks: [VMTrack],
                                 _ flap: AntiFlap, now: Instant, inUse: Int, usable: Int, budget: Int,
                                 plan: inout Plan) -> Int? {
  // The tracks as an array, not a Span: with the unmeasured test the
  // release compiler's ownership verifier trips on the Span (Swift 6.2).
  let movable = incumbents.lastIndex {
    !$0.unmeasured && antiFlapBlock(tracks[$0.slot], flap, now: now, needsDwell: true) == nil
  }
  guard let m = movable, challenger.beats(incumbents[m], margin: flap.challengerMargin) else {
    let reason: Reason = incumbents.last.map {
      .incumbentsHold(weakest: $0.name, weakestIntensity: $0.intensity, intensity: challenger.intensity,
                      margin: flap.challengerMargin)
    } ?? .poolFull(inUse: inUse, capacity: usable)
    plan.holds.append(Hold(vm: tracks[challenger.slot].identity, wants: .promote, reason: reason))
    return nil
  }
  guard budget >= 1 else {
    plan.holds.append(Hold(vm: tracks[challenger.slot].identity, wants: .promote,
                           reason: .cycleBudgetSpent(limit: flap.maxSwapsPerCycle)))
    return nil
  }
  return m
}

private func promotionReason(_ track: VMTrack, _ policy: Policy) -> Reason {
  guard track.classIndex >= 0, case let c = policy.classes[track.classIndex], c.vf == .eligible else { return .pinnedAlways }
  return .sustainedAbove(bytesPerSecond: track.intervalBytes, packetsPerSecond: track.intervalPackets, threshold: c.promote)
}

/// Dwell, cooldown and the hourly budget: the anti-flap rules, in one place.
private func antiFlapBlock(_ track: VMTrack, _ flap: AntiFlap, now: Instant, needsDwell: Bool) -> Reason? {
  if needsDwell, let since = track.vfSince, now - since < flap.minDwellSeconds {
    return .dwellNotOver(remainingSeconds: flap.minDwellSeconds - (now - since))
  }
  if let last = track.swaps.last, now - last < flap.cooldownSeconds {
    return .cooldown(remainingSeconds: flap.cooldownSeconds - (now - last))
  }
  return hourlyBlock(track, flap, now: now)
}

private func hourlyBlock(_ track: VMTrack, _ flap: AntiFlap, now: Instant) -> Reason? {
  let recent = track.swaps.reduce(0) { $0 + (now - $1 < 3600 ? 1 : 0) }
  if recent >= flap.maxSwapsPerVMPerHour {
    return .hourlyBudgetSpent(swapsInLastHour: recent, limit: flap.maxSwapsPerVMPerHour)
  }
  return nil
}

/// Forced moves skip dwell and cooldown, but not failure: after one they
/// back off, and after a few in a row they keep to the hourly budget too.
private func forcedBlock(_ track: VMTrack, _ flap: AntiFlap, now: Instant) -> Reason? {
  guard track.failures > 0 else { return nil }
  if let retry = track.retryAt, now < retry {
    return .backingOff(failures: track.failures, remainingSeconds: retry - now)
  }
  return track.failures >= ForcedBackoff.hourlyAfter ? hourlyBlock(track, flap, now: now) : nil
}

private func recordSwap(_ track: inout VMTrack, now: Instant) {
  track.swaps.removeAll { now - $0 >= 3600 }
  track.swaps.append(now)
  // The counters will come from another device: start the baseline afresh.
  // The live agent has no rate for the interval after a swap (its counter
  // source changed); dropping the baseline here makes a replay see the same.
  track.aboveSince = nil
  track.belowSince = nil
  track.lastCounters = nil
  track.lastAt = nil
  track.intervalBytes = nil
  track.intervalPackets = nil
}

private func promote(_ state: inout EngineState, _ slot: Int, pool: String, reason: Reason, now: Instant,
                     budget: inout Int, plan: inout Plan) {
  recordSwap(&state.tracks[slot], now: now)
  state.tracks[slot].vfSince = now
  budget -= 1
  plan.actions.append(.promote(vm: state.tracks[slot].identity, pool: pool, reason: reason))
}

private func demote(_ state: inout EngineState, _ slot: Int, pool: String, reason: Reason, now: Instant,
                    budget: inout Int, plan: inout Plan) {
  recordSwap(&state.tracks[slot], now: now)
  state.tracks[slot].vfSince = nil
  budget -= 1
  plan.actions.append(.demote(vm: state.tracks[slot].identity, pool: pool, reason: reason))
}
