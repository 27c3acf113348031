// Classify: rates against the class thresholds with hysteresis, then who
// sits on, leaves or wants each pool's VFs, ranked on one scale.

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
    let contention = track.contention, contended = contention > c.contendedAbove
    if reaches(b, p, contended ? c.contendedPromote : c.promote) {
      let since = track.aboveSince ?? start
      track.aboveSince = since
      if now - since >= c.promote.sustainSeconds {
        track.intensive = true; track.belowSince = nil
        track.contendedAt = contended && !reaches(b, p, c.promote) ? contention : nil
      }
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
  /// Traffic against the class's promote threshold.
  var intensity: Double
  var name: String
  /// On a VF with no rate this cycle: held, never displaced, ranked at 0.
  var unmeasured = false
  /// The VM's CPU contention (0 when not measured) and its class's weight.
  var contention = 0.0
  var weight = 0.0

  /// What the pool ranks by: intensity × (1 + weight × contention).
  var rank: Double { intensity * (1 + weight * contention) }
  /// Did contention lift this VM at all? Only then can it turn a decision.
  var lifted: Bool { weight * contention > 0 && intensity > 0 }

  /// Pinned first, then priority, then rank (or, `byTraffic`, intensity
  /// alone: what the decision would have been without contention); the name
  /// breaks ties so the order never depends on the inventory's.
  func outranks(_ o: Contender, byTraffic: Bool = false) -> Bool {
    if pinned != o.pinned { return pinned }
    if priority != o.priority { return priority > o.priority }
    let (a, b) = byTraffic ? (intensity, o.intensity) : (rank, o.rank)
    if a != b { return a > b }
    return name < o.name
  }

  /// A challenger must win on pinning or priority outright, or on rank by
  /// the margin.
  func beats(_ incumbent: Contender, margin: Double, byTraffic: Bool = false) -> Bool {
    // A pinned incumbent is pinned: no one, pinned or not, takes its VF.
    if incumbent.pinned { return false }
    if pinned { return true }
    if priority != incumbent.priority { return priority > incumbent.priority }
    return byTraffic ? intensity > incumbent.intensity * (1 + margin) : rank > incumbent.rank * (1 + margin)
  }

  /// `reason`, naming this VM's contention when it decided the outcome.
  func naming(_ reason: Reason, if decided: Bool) -> Reason {
    decided ? .byContention(reason, vm: name, contention: contention, weight: weight) : reason
  }
}

/// An observation's contention as the ranking takes it: not measured is 0
/// (traffic alone), and a figure out of 0…1 is clamped so the sort stays a
/// total order.
func rankedContention(_ c: Double?) -> Double {
  guard let c, c.isFinite else { return 0 }
  return min(max(c, 0), 1)
}

/// Who sits on, leaves, or wants each pool's VFs: one pass over the VMs.
struct PoolContenders: Sendable {
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

func gather(policy: Policy, observation: Observation, slots: [Int], state: inout EngineState) -> [PoolContenders] {
  var byPool = state.scratch.contenders
  state.scratch.contenders = []
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
                                              intensity: intensity(tracks[slot], rule), name: tracks[slot].identity.name,
                                              contention: tracks[slot].contention, weight: rule.contentionWeight))
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
                                                     intensity: intensity(tracks[slot], rule), name: tracks[slot].identity.name,
                                                     contention: tracks[slot].contention, weight: rule.contentionWeight))
    case .none:
      continue
    }
  }
  return byPool
}
