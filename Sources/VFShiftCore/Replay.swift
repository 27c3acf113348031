public struct ReplayOptions: Sendable {
  /// VFs per pool where the trace does not say; `nil` = the trace's, else 8.
  public var vfsPerPool: Int?
  /// Called now and then with the share of cycles done.
  public var progress: (@Sendable (Double) -> Void)?
  /// Record a `ReplayTimeline` with traffic in at most this many time columns;
  /// nil (the default) records none.
  public var timelineColumns: Int?
  public init(vfsPerPool: Int? = nil, progress: (@Sendable (Double) -> Void)? = nil, timelineColumns: Int? = nil) {
    self.vfsPerPool = vfsPerPool; self.progress = progress; self.timelineColumns = timelineColumns
  }
}

/// Replays `trace` through `policy` with the same `decide` the agent runs:
/// each cycle the simulator takes in who is present and their samples, the
/// scorecard and the oracle read the same samples, and the plan goes back to
/// the simulator's actuator. Placement starts all on virtio.
public func replay(_ trace: Trace, policy: Policy, options: ReplayOptions = ReplayOptions()) -> ReplayReport {
  let vmCount = trace.vms.count
  var score = ReplayScorecard(policy: policy, vmCount: vmCount)
  var state = EngineState()

  // Classes are fixed for the run: resolve once.
  var classOfVM = [Int](repeating: -1, count: vmCount)
  for (v, id) in trace.vms.enumerated() {
    switch policy.resolveClass(of: id) {
    case .managed(let c): classOfVM[v] = c
    case .ambiguous(let names): score.report.ambiguousVMs[id.name] = names
    case .unmanaged: break
    }
  }
  score.report.managedVMs = classOfVM.filter { $0 >= 0 }.count
  score.report.classes = policy.classes.enumerated().map { c, qc in
    ReplayReport.ClassShare(name: qc.name, vms: classOfVM.filter { $0 == c }.count)
  }
  let poolSizes = policy.pools.map { pool in
    trace.poolSizes[pool.name] ?? options.vfsPerPool ?? (trace.poolSizes.count == 1 ? trace.poolSizes.first!.value : 8)
  }
  let usable = zip(policy.pools, poolSizes).map { pool, size in min(pool.maxInUse ?? size, size) }
  score.report.usableVFs = usable.reduce(0, +)
  let pools = Dictionary(uniqueKeysWithValues: zip(policy.pools.map(\.name), poolSizes.map { PoolCapacity(total: $0) }))
  var sim = ReplaySimulator(trace.vms, pools: pools)
  var oracle = ReplayOracle(usable: usable, vmCount: vmCount)
  // Managed VMs present in the cycle's interval, for the per-VM swap rate.
  var managedPresent = 0
  // Per-class numbers looked up once, not per sample.
  let classPool = policy.classes.map { c in c.vf == .never ? -1 : (c.pool.flatMap(policy.poolIndex(named:)) ?? -1) }
  let classPinned = policy.classes.map { $0.vf == .always }
  let classEligible = policy.classes.map { $0.vf == .eligible }
  let classPromote = policy.classes.map(\.promote)

  let progressEvery = max(1, trace.cycles.count / 10)
  var previousAt: Instant?
  // Read in place (a copied sample retains its source name), and the last
  // reading of each VM kept as an index into the trace rather than a copy.
  let samples = trace.samples.span
  var lastSample = [Int](repeating: -1, count: vmCount)

  for k in trace.cycles.indices {
    if k % progressEvery == 0, let progress = options.progress { progress(Double(k) / Double(trace.cycles.count)) }
    let now = trace.cycles[k].at
    let interval = previousAt.map { now - $0 } ?? 0
    if let p = previousAt {
      let dt = now - p
      score.report.durationSeconds += dt
      score.report.vfSecondsInUse += dt * Double(sim.actuator.vfsInUse)
    }
    previousAt = now
    if sim.enter(trace.cycles[k].present, vms: trace.vms) {
      managedPresent = sim.present.reduce(0) { $0 + (classOfVM[Int($1)] >= 0 ? 1 : 0) }
    }
    let presentKey = sim.present
    // The interval ending now counts the managed VMs present at its end.
    score.report.managedVMSeconds += interval * Double(managedPresent)
    var slotOf: [Int32: Int] = [:]
    if trace.cycles[k].samples.count < presentKey.count || presentKey.count > 64 {
      for (i, v) in presentKey.enumerated() { slotOf[v] = i }
    }

    // The cycle's samples, read once for all three rooms, with the arrays
    // they write to taken as spans: one uniqueness check each per cycle
    // instead of one per write.
    let sampleRange = trace.cycles[k].samples
    oracle.reserve(sampleRange.count)
    var candidateCount = 0
    var eligibleBytes = 0.0, eligibleVFBytes = 0.0, missedBursts = 0, reactiveBytes = 0.0
    var weightedBytes = 0.0, weightedVFBytes = 0.0
    // A span borrows all of the room it comes from, so the arrays written
    // through spans are moved out of their rooms for the cycle and back.
    var vmsOut = take(&sim.observation.vms), freshOut = take(&sim.sampled)
    var sharesOut = take(&score.report.classes), onsetsOut = take(&score.onset)
    var candidatesOut = take(&oracle.candidates)
    do {
      // Read-only here, and released before the oracle and the actuator write them.
      let ridesIn = oracle.rideCycle, placementIn = sim.actuator.placement
      var vms = vmsOut.mutableSpan
      var fresh = freshOut.mutableSpan
      var last = lastSample.mutableSpan
      var shares = sharesOut.mutableSpan
      var onsets = onsetsOut.mutableSpan
      var candidates = candidatesOut.mutableSpan
      let rides = ridesIn.span
      let placement = placementIn.span
      var nextSlot = 0
      for s in sampleRange {
        let vm = samples[s].vm
        let v = Int(vm)
        // Samples come in the order the VMs are present: try the next slot first.
        let slot = nextSlot < presentKey.count && presentKey[nextSlot] == vm ? nextSlot
          : slotOf.isEmpty ? presentKey.firstIndex(of: vm) : slotOf[vm]
        if let slot {
          vms[slot].reading = samples[s].reading
          vms[slot].contention = samples[s].contention
          fresh[slot] = true
          nextSlot = slot + 1
        }
        let previous = last[v]
        last[v] = s
        let c = classOfVM[v]
        // `intervalBytes`'s rule (ReplayTimeline.swift), written out for this loop's speed.
        guard c >= 0, previous >= 0, let (counters, at) = samples[s].reading.counters,
              case let .known(lastSource, lastCounters, lastAt) = samples[previous].reading,
              samples[s].reading.isFrom(lastSource), at > lastAt, let moved = counters.moved(since: lastCounters)
        else { continue }
        let bytes = Double(moved.bytes)
        let packets = moved.packets.map { Double($0) } ?? 0
        let onVF: Bool = if case .vf = placement[v] { true } else { false }
        shares[c].bytes += bytes
        shares[c].packets += packets
        if onVF { shares[c].vfBytes += bytes; shares[c].vfPackets += packets }
        let p = classPool[c]
        if p >= 0 {
          eligibleBytes += bytes
          if onVF { eligibleVFBytes += bytes }
          // Weighted by the contention the sample came with: unmeasured bytes weigh nothing.
          if let w = samples[s].contention, w > 0 {
            weightedBytes += bytes * w
            if onVF { weightedVFBytes += bytes * w }
          }
          if rides[v] == k { reactiveBytes += bytes }
          candidates[candidateCount] = OracleCandidate(pool: p, pinned: classPinned[c], bytes: bytes, vm: vm)
          candidateCount += 1
        }
        // Onset: the first sample over the promote threshold, for time-to-promote.
        let dt = at - lastAt
        let promote = classPromote[c]
        let over = (promote.bytesPerSecond.map { bytes / dt >= $0 } ?? false)
          || (promote.packetsPerSecond.map { packets / dt >= $0 && packets > 0 } ?? false)
        if classEligible[c] && !onVF {
          if over { if onsets[v] == nil { onsets[v] = now } } else if onsets[v] != nil { onsets[v] = nil; missedBursts += 1 }
        }
      }
      // A present VM without a sample this cycle has no fresh reading.
      for i in fresh.indices {
        if fresh[i] { fresh[i] = false } else { vms[i].reading = .stale }
      }
    }
    sim.observation.vms = vmsOut; sim.sampled = freshOut
    score.report.classes = sharesOut; score.onset = onsetsOut
    oracle.candidates = candidatesOut
    score.report.vmSamples += sampleRange.count
    score.report.eligibleBytes += eligibleBytes
    score.report.eligibleVFBytes += eligibleVFBytes
    score.report.contentionWeightedEligibleBytes += weightedBytes
    score.report.contentionWeightedEligibleVFBytes += weightedVFBytes
    score.report.missedBursts += missedBursts
    score.report.reactiveEligibleVFBytes += reactiveBytes
    oracle.settle(candidateCount, cycle: k, into: &score.report.oracleEligibleVFBytes)

    let plan = decide(&state, policy: policy, observation: sim.observation, now: now)
    score.report.cycles += 1
    for (action, v) in sim.apply(plan) { score.record(action, vm: v, now: now) }
  }
  options.progress?(1)
  if let columns = options.timelineColumns {
    score.report.timeline = ReplayTimeline(trace: trace, policy: policy, classOfVM: classOfVM, usable: usable,
                                           swaps: score.report.swaps, maxColumns: columns)
  }
  return score.report
}

/// Moves an array out of where it is kept, leaving it empty, so that the
/// caller holds its only reference.
private func take<T>(_ array: inout [T]) -> [T] {
  var out: [T] = []
  swap(&out, &array)
  return out
}
