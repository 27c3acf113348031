// Allocate: per pool, the contenders into actions and holds under the
// caps and the anti-flap rules.

func allocate(pool p: Int, contenders: inout PoolContenders, policy: Policy, observation: Observation,
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
  for (i, challenger) in contenders.challengers.enumerated() {
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
      let reason = challenger.naming(promotionReason(state.tracks.span[challenger.slot], policy),
                                     if: tookTheRoom(contenders.challengers, i, free: usable - inUse))
      promote(&state, challenger.slot, pool: poolName, reason: reason, now: now, budget: &budget, plan: &plan)
      inUse += 1
      continue
    }
    guard let m = incumbentToDisplace(by: challenger, contenders.incumbents, state.tracks, flap, now: now,
                                      inUse: inUse, usable: usable, budget: budget, plan: &plan) else { continue }
    let loser = contenders.incumbents.remove(at: m)
    let decided = !challenger.beats(loser, margin: flap.challengerMargin, byTraffic: true)
    demote(&state, loser.slot, pool: poolName,
           reason: challenger.naming(.displacedBy(challenger: challenger.name, challengerIntensity: challenger.rank,
                                                  intensity: loser.rank, margin: flap.challengerMargin), if: decided),
           now: now, budget: &budget, plan: &plan)
    // The promote waits for the demote to be done: if it fails the VF was
    // never free. Next cycle the freed VF goes to the best challenger then.
    plan.holds.append(Hold(vm: state.tracks[challenger.slot].identity, wants: .promote,
                           reason: challenger.naming(.displaces(incumbent: loser.name, intensity: challenger.rank,
                                                                incumbentIntensity: loser.rank,
                                                                margin: flap.challengerMargin), if: decided)))
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
    var reason: Reason = incumbents.last.map {
      .incumbentsHold(weakest: $0.name, weakestIntensity: $0.rank, intensity: challenger.rank,
                      margin: flap.challengerMargin)
    } ?? .poolFull(inUse: inUse, capacity: usable)
    // Beaten on traffic, the incumbent holds on its contention.
    if let m = movable, challenger.beats(incumbents[m], margin: flap.challengerMargin, byTraffic: true) {
      reason = incumbents[m].naming(reason, if: true)
    }
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

/// Did contention win the `i`th challenger its free VF? Only if a later one,
/// ahead of it on traffic alone, is left without a VF: `free` VFs remain,
/// the `i`th's included, for the challengers from `i` on.
private func tookTheRoom(_ challengers: [Contender], _ i: Int, free: Int) -> Bool {
  let x = challengers[i]
  guard x.lifted, challengers.count - i > free else { return false }
  return challengers[(i + 1)...].contains { $0.outranks(x, byTraffic: true) }
}

private func promotionReason(_ track: VMTrack, _ policy: Policy) -> Reason {
  guard track.classIndex >= 0, case let c = policy.classes[track.classIndex], c.vf == .eligible else { return .pinnedAlways }
  guard let relief = c.promoteUnderContention, let contention = track.contendedAt else {
    return .sustainedAbove(bytesPerSecond: track.intervalBytes, packetsPerSecond: track.intervalPackets, threshold: c.promote)
  }
  return .underContention(.sustainedAbove(bytesPerSecond: track.intervalBytes, packetsPerSecond: track.intervalPackets,
                                          threshold: relief.lowered(c.promote)),
                          contention: contention, above: relief.above, scale: relief.promoteScale)
}

/// Dwell, cooldown and the hourly budget: the anti-flap rules, in one place.
private func antiFlapBlock(_ track: VMTrack, _ flap: AntiFlap, now: Instant, needsDwell: Bool) -> Reason? {
  if let refused = refusalBlock(track, now: now) { return refused }
  if needsDwell, let since = track.vfSince, now - since < flap.minDwellSeconds {
    return .dwellNotOver(remainingSeconds: flap.minDwellSeconds - (now - since))
  }
  if let last = track.swaps.last, now - last < flap.cooldownSeconds {
    return .cooldown(remainingSeconds: flap.cooldownSeconds - (now - last))
  }
  return hourlyBlock(track, flap, now: now)
}

/// A guest that did not take the NIC it was given is not asked again yet (`GuestRefusal`).
private func refusalBlock(_ track: VMTrack, now: Instant) -> Reason? {
  guard let until = track.refusedUntil, now < until else { return nil }
  return .guestRefused(times: track.refusals, remainingSeconds: until - now)
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
  if let refused = refusalBlock(track, now: now) { return refused }
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
  move(&state, slot, .promote, pool: pool, reason: reason, now: now, budget: &budget, plan: &plan)
}

private func demote(_ state: inout EngineState, _ slot: Int, pool: String, reason: Reason, now: Instant,
                    budget: inout Int, plan: inout Plan) {
  move(&state, slot, .demote, pool: pool, reason: reason, now: now, budget: &budget, plan: &plan)
}

/// A swap decided: it counts against anti-flap and the cycle's budget at once,
/// whether or not the actuator later manages it.
private func move(_ state: inout EngineState, _ slot: Int, _ verb: Verb, pool: String, reason: Reason, now: Instant,
                  budget: inout Int, plan: inout Plan) {
  recordSwap(&state.tracks[slot], now: now)
  state.tracks[slot].vfSince = verb == .promote ? now : nil
  budget -= 1
  let vm = state.tracks[slot].identity
  plan.actions.append(verb == .promote ? .promote(vm: vm, pool: pool, reason: reason) : .demote(vm: vm, pool: pool, reason: reason))
}
