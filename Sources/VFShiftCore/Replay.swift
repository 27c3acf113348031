/// What one policy would have done on a trace, measured against an oracle
/// that knows the future and swaps for free under the same caps.
public struct ReplayReport: Sendable, Equatable {
  public struct ClassShare: Sendable, Equatable {
    public var name: String
    public var vms: Int
    public var bytes: Double = 0
    public var vfBytes: Double = 0
    public var packets: Double = 0
    public var vfPackets: Double = 0
    public var byteShare: Double? { bytes > 0 ? vfBytes / bytes : nil }
    public var packetShare: Double? { packets > 0 ? vfPackets / packets : nil }
  }

  public struct Swap: Sendable, Equatable {
    public var at: Instant
    public var verb: Verb
    public var vm: String
    public var pool: String
  }

  public var policy: String
  public var cycles = 0
  public var vmSamples = 0
  public var durationSeconds = 0.0
  public var managedVMs = 0
  public var ambiguousVMs: [String: [String]] = [:]
  public var swaps: [Swap] = []
  public var flaps = 0
  public var usableVFs = 0
  public var vfSecondsInUse = 0.0
  public var promoteDelays: [Double] = []
  public var missedBursts = 0
  public var classes: [ClassShare] = []
  public var eligibleBytes = 0.0
  public var eligibleVFBytes = 0.0
  public var oracleEligibleVFBytes = 0.0
  /// What the eligible VMs would have moved on VFs had each interval's VFs
  /// gone to the pool's busiest VMs of the interval before, swaps free: the
  /// best a causal policy without forecasting can do.
  public var reactiveEligibleVFBytes = 0.0
  /// Seconds managed VMs were present, summed over them: what "per VM" means.
  public var managedVMSeconds = 0.0
  /// Only when asked for (`ReplayOptions.timelineColumns`).
  public var timeline: ReplayTimeline?

  public var swapCount: Int { swaps.count }
  /// Swaps of managed VMs per 10 minutes each was present: a VM present for
  /// a day of a week's trace weighs a seventh.
  public var swapsPerVMPer10Min: Double {
    guard managedVMSeconds > 0 else { return 0 }
    return Double(swaps.count) / (managedVMSeconds / 600)
  }
  /// Mean VFs in use over the trace, as a share of the VFs the policy may use.
  public var occupancy: Double? {
    guard usableVFs > 0, durationSeconds > 0 else { return nil }
    return vfSecondsInUse / durationSeconds / Double(usableVFs)
  }
  public var eligibleVFByteShare: Double? { eligibleBytes > 0 ? eligibleVFBytes / eligibleBytes : nil }
  public var oracleEligibleVFByteShare: Double? { eligibleBytes > 0 ? oracleEligibleVFBytes / eligibleBytes : nil }
  public var reactiveEligibleVFByteShare: Double? { eligibleBytes > 0 ? reactiveEligibleVFBytes / eligibleBytes : nil }
  public var medianPromoteDelaySeconds: Double? { percentile(promoteDelays, 0.5) }
  public var p90PromoteDelaySeconds: Double? { percentile(promoteDelays, 0.9) }
}

func percentile(_ xs: [Double], _ q: Double) -> Double? {
  guard !xs.isEmpty else { return nil }
  let s = xs.sorted()
  return s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))]
}

private struct OracleCandidate {
  var pool = 0
  var pinned = false
  var bytes = 0.0
  var vm: Int32 = 0
}

/// The sum of the `k` largest values (all of them when there are no more).
private func sumOfLargest(_ xs: inout [Double], _ k: Int) -> Double {
  guard k > 0, !xs.isEmpty else { return 0 }
  if xs.count > k { xs.sort(by: >) }
  var sum = 0.0
  for x in xs.prefix(k) { sum += x }
  return sum
}

/// Who of a list `sumOfLargest` has just looked at is among its `k`
/// largest: everyone over the k-th value, and as many equal to it as fit.
private struct Cut {
  var threshold = -Double.infinity
  var ties = Int.max

  init(_ xs: [Double], _ k: Int) {
    guard xs.count > k else { return }  // all of them (sumOfLargest sorted nothing)
    guard k > 0 else { threshold = .infinity; ties = 0; return }
    threshold = xs[k - 1]  // sorted, descending
    ties = 0
    for x in xs.prefix(k) where x == threshold { ties += 1 }
  }

  mutating func admits(_ x: Double) -> Bool {
    if x > threshold { return true }
    if x == threshold && ties > 0 { ties -= 1; return true }
    return false
  }
}

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

/// Replays `trace` through `policy` with the same `decide` the agent runs.
/// Swaps are taken to succeed at once; placement starts all on virtio.
public func replay(_ trace: Trace, policy: Policy, options: ReplayOptions = ReplayOptions()) -> ReplayReport {
  var report = ReplayReport(policy: policy.name)
  let vmCount = trace.vms.count
  var state = EngineState()
  var placement = [Placement](repeating: .virtio, count: vmCount)
  var lastSwap = [(at: Instant, verb: Verb)?](repeating: nil, count: vmCount)
  var onset = [Instant?](repeating: nil, count: vmCount)
  let vmIndex = Dictionary(trace.vms.enumerated().map { ($1.uuid, Int32($0)) }, uniquingKeysWith: { a, _ in a })

  // Classes are fixed for the run: resolve once.
  var classOfVM = [Int](repeating: -1, count: vmCount)
  for (v, id) in trace.vms.enumerated() {
    switch policy.resolveClass(of: id) {
    case .managed(let c): classOfVM[v] = c
    case .ambiguous(let names): report.ambiguousVMs[id.name] = names
    case .unmanaged: break
    }
  }
  report.managedVMs = classOfVM.filter { $0 >= 0 }.count
  report.classes = policy.classes.enumerated().map { c, qc in
    ReplayReport.ClassShare(name: qc.name, vms: classOfVM.filter { $0 == c }.count)
  }
  let poolSizes = policy.pools.map { pool in
    trace.poolSizes[pool.name] ?? options.vfsPerPool ?? (trace.poolSizes.count == 1 ? trace.poolSizes.first!.value : 8)
  }
  let usable = zip(policy.pools, poolSizes).map { pool, size in min(pool.maxInUse ?? size, size) }
  report.usableVFs = usable.reduce(0, +)
  let pools = Dictionary(uniqueKeysWithValues: zip(policy.pools.map(\.name), poolSizes.map { PoolCapacity(total: $0) }))
  let flapWindow = max(policy.antiFlap.minDwellSeconds, 300)
  // Managed VMs present in the cycle's interval, for the per-VM swap rate.
  var managedPresent = 0
  // The reactive bound's riders: `rideCycle[v] == k` when VM v rides the
  // VFs in cycle k (chosen at k − 1); a stamp, so nothing is cleared.
  var rideCycle = [Int](repeating: -1, count: vmCount)
  // Per-class numbers looked up once, not per sample.
  let classPool = policy.classes.map { c in c.vf == .never ? -1 : (c.pool.flatMap(policy.poolIndex(named:)) ?? -1) }
  let classPinned = policy.classes.map { $0.vf == .always }
  let classEligible = policy.classes.map { $0.vf == .eligible }
  let classPromote = policy.classes.map(\.promote)

  var observation = Observation(vms: [], pools: pools)
  var presentKey: [Int32] = []
  // This interval's bytes of each eligible VM, and per pool, pinned ones apart.
  var oracleCandidates: [OracleCandidate] = []
  var oraclePinned: [Double] = []
  var oracleOthers: [Double] = []
  let progressEvery = max(1, trace.cycles.count / 10)
  var previousAt: Instant?
  // Read in place (a copied sample retains its source name), and the last
  // reading of each VM kept as an index into the trace rather than a copy.
  let samples = trace.samples.span
  var lastSample = [Int](repeating: -1, count: vmCount)
  var vfsInUse = 0
  var sampled: [Bool] = []

  for k in trace.cycles.indices {
    if k % progressEvery == 0, let progress = options.progress { progress(Double(k) / Double(trace.cycles.count)) }
    let now = trace.cycles[k].at
    let interval = previousAt.map { now - $0 } ?? 0
    if let p = previousAt {
      let dt = now - p
      report.durationSeconds += dt
      report.vfSecondsInUse += dt * Double(vfsInUse)
    }
    previousAt = now
    // Rebuild the VM list only when who is present changes.
    if trace.cycles[k].present != presentKey {
      // A VM that leaves gives its VF back (its domain stopped).
      let staying = Set(trace.cycles[k].present)
      for v in presentKey where !staying.contains(v) {
        if case .vf = placement[Int(v)] { vfsInUse -= 1 }
        placement[Int(v)] = .virtio
      }
      presentKey = trace.cycles[k].present
      managedPresent = presentKey.reduce(0) { $0 + (classOfVM[Int($1)] >= 0 ? 1 : 0) }
      observation.vms = presentKey.map {
        VMObservation(identity: trace.vms[Int($0)], placement: placement[Int($0)], reading: .stale)
      }
      sampled = Array(repeating: false, count: presentKey.count)
    }
    // The interval ending now counts the managed VMs present at its end.
    report.managedVMSeconds += interval * Double(managedPresent)
    var slotOf: [Int32: Int] = [:]
    if trace.cycles[k].samples.count < presentKey.count || presentKey.count > 64 {
      for (i, v) in presentKey.enumerated() { slotOf[v] = i }
    }

    // The cycle's samples, with the arrays they write to taken as spans:
    // one uniqueness check each per cycle instead of one per write.
    let sampleRange = trace.cycles[k].samples
    if oracleCandidates.count < sampleRange.count {
      oracleCandidates = Array(repeating: OracleCandidate(), count: sampleRange.count)
    }
    var candidateCount = 0
    var eligibleBytes = 0.0, eligibleVFBytes = 0.0, missedBursts = 0, reactiveBytes = 0.0
    do {
      var vms = observation.vms.mutableSpan
      var fresh = sampled.mutableSpan
      var last = lastSample.mutableSpan
      var shares = report.classes.mutableSpan
      var onsets = onset.mutableSpan
      var candidates = oracleCandidates.mutableSpan
      let rides = rideCycle.span
      var nextSlot = 0
      for s in sampleRange {
        let vm = samples[s].vm
        let v = Int(vm)
        // Samples come in the order the VMs are present: try the next slot first.
        let slot = nextSlot < presentKey.count && presentKey[nextSlot] == vm ? nextSlot
          : slotOf.isEmpty ? presentKey.firstIndex(of: vm) : slotOf[vm]
        if let slot {
          vms[slot].reading = samples[s].reading
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
    report.vmSamples += sampleRange.count
    report.eligibleBytes += eligibleBytes
    report.eligibleVFBytes += eligibleVFBytes
    report.missedBursts += missedBursts
    report.reactiveEligibleVFBytes += reactiveBytes
    // The oracle puts the pool's busiest eligible VMs of this interval on its
    // VFs, pinned ones first, at no cost. (Bytes are whole numbers, so the
    // sum is exact in any order.)
    // The reactive bound's riders for the next interval are this one's
    // busiest: the oracle's picks, read off its sorted lists as thresholds
    // (ties go to the earlier sample, so a run is deterministic).
    var stamps = rideCycle.mutableSpan
    for p in usable.indices where candidateCount > 0 {
      if !oraclePinned.isEmpty { oraclePinned.removeAll(keepingCapacity: true) }
      if !oracleOthers.isEmpty { oracleOthers.removeAll(keepingCapacity: true) }
      for i in 0..<candidateCount where oracleCandidates[i].pool == p {
        if oracleCandidates[i].pinned { oraclePinned.append(oracleCandidates[i].bytes) } else { oracleOthers.append(oracleCandidates[i].bytes) }
      }
      let pinnedRoom = usable[p], othersRoom = max(0, usable[p] - oraclePinned.count)
      report.oracleEligibleVFBytes += sumOfLargest(&oraclePinned, pinnedRoom)
      report.oracleEligibleVFBytes += sumOfLargest(&oracleOthers, othersRoom)
      var pinnedCut = Cut(oraclePinned, pinnedRoom), othersCut = Cut(oracleOthers, othersRoom)
      for i in 0..<candidateCount where oracleCandidates[i].pool == p {
        let c = oracleCandidates[i]
        guard c.pinned ? pinnedCut.admits(c.bytes) : othersCut.admits(c.bytes) else { continue }
        stamps[Int(c.vm)] = k + 1
      }
    }

    let plan = decide(&state, policy: policy, observation: observation, now: now)
    report.cycles += 1
    for action in plan.actions {
      guard let v = vmIndex[action.vm.uuid].map(Int.init) else { continue }
      let verb = action.verb
      // A reversal at the next cycle counts: on a 300 s trace that is 300 s.
      if let last = lastSwap[v], last.verb != verb, now - last.at <= flapWindow { report.flaps += 1 }
      lastSwap[v] = (now, verb)
      report.swaps.append(.init(at: now, verb: verb, vm: action.vm.name, pool: action.pool))
      let wasOnVF: Bool = if case .vf = placement[v] { true } else { false }
      if case .promote = action {
        placement[v] = .vf(pool: action.pool)
        if !wasOnVF { vfsInUse += 1 }
        if let o = onset[v] { report.promoteDelays.append(now - o); onset[v] = nil }
      } else {
        placement[v] = .virtio
        if wasOnVF { vfsInUse -= 1 }
      }
      // The observation follows the placement only where it changed.
      if let slot = presentKey.firstIndex(of: Int32(v)) { observation.vms[slot].placement = placement[v] }
    }
  }
  options.progress?(1)
  if let columns = options.timelineColumns {
    report.timeline = ReplayTimeline(trace: trace, policy: policy, classOfVM: classOfVM, usable: usable, swaps: report.swaps,
                                     maxColumns: columns)
  }
  return report
}
