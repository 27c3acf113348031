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
    public var verb: String
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

  public var swapCount: Int { swaps.count }
  public var swapsPerVMPer10Min: Double {
    guard managedVMs > 0, durationSeconds > 0 else { return 0 }
    return Double(swaps.count) / Double(managedVMs) / (durationSeconds / 600)
  }
  /// Mean VFs in use over the trace, as a share of the VFs the policy may use.
  public var occupancy: Double? {
    guard usableVFs > 0, durationSeconds > 0 else { return nil }
    return vfSecondsInUse / durationSeconds / Double(usableVFs)
  }
  public var eligibleVFByteShare: Double? { eligibleBytes > 0 ? eligibleVFBytes / eligibleBytes : nil }
  public var oracleEligibleVFByteShare: Double? { eligibleBytes > 0 ? oracleEligibleVFBytes / eligibleBytes : nil }
  public var medianPromoteDelaySeconds: Double? { percentile(promoteDelays, 0.5) }
  public var p90PromoteDelaySeconds: Double? { percentile(promoteDelays, 0.9) }
}

func percentile(_ xs: [Double], _ q: Double) -> Double? {
  guard !xs.isEmpty else { return nil }
  let s = xs.sorted()
  return s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))]
}

public struct ReplayOptions: Sendable {
  /// VFs per pool where the trace does not say; `nil` = the trace's, else 8.
  public var vfsPerPool: Int?
  /// Called now and then with the share of cycles done.
  public var progress: (@Sendable (Double) -> Void)?
  public init(vfsPerPool: Int? = nil, progress: (@Sendable (Double) -> Void)? = nil) {
    self.vfsPerPool = vfsPerPool; self.progress = progress
  }
}

/// Replays `trace` through `policy` with the same `decide` the agent runs.
/// Swaps are taken to succeed at once; placement starts all on virtio.
public func replay(_ trace: Trace, policy: Policy, options: ReplayOptions = ReplayOptions()) -> ReplayReport {
  var report = ReplayReport(policy: policy.name)
  let vmCount = trace.vms.count
  var state = EngineState()
  var placement = [Placement](repeating: .virtio, count: vmCount)
  var lastReading = [CounterReading](repeating: .unknown, count: vmCount)
  var lastSwap = [(at: Instant, verb: String)?](repeating: nil, count: vmCount)
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
  // Per-class numbers looked up once, not per sample.
  let classPool = policy.classes.map { c in c.vf == .never ? -1 : (c.pool.flatMap(policy.poolIndex(named:)) ?? -1) }
  let classPinned = policy.classes.map { $0.vf == .always }
  let classEligible = policy.classes.map { $0.vf == .eligible }
  let classPromote = policy.classes.map(\.promote)

  var observation = Observation(vms: [], pools: pools)
  var presentKey: [Int32] = []
  var oracleCandidates: [[(bytes: Double, pinned: Bool)]] = Array(repeating: [], count: policy.pools.count)
  let progressEvery = max(1, trace.cycles.count / 10)
  var previousAt: Instant?

  for (k, cycle) in trace.cycles.enumerated() {
    if k % progressEvery == 0, let progress = options.progress { progress(Double(k) / Double(trace.cycles.count)) }
    let now = cycle.at
    if let p = previousAt {
      let dt = now - p
      report.durationSeconds += dt
      report.vfSecondsInUse += dt * Double(placement.reduce(0) { if case .vf = $1 { $0 + 1 } else { $0 } })
    }
    previousAt = now
    // Rebuild the VM list only when who is present changes.
    if cycle.present != presentKey {
      // A VM that leaves gives its VF back (its domain stopped).
      let staying = Set(cycle.present)
      for v in presentKey where !staying.contains(v) { placement[Int(v)] = .virtio }
      presentKey = cycle.present
      observation.vms = cycle.present.map {
        VMObservation(identity: trace.vms[Int($0)], placement: placement[Int($0)], reading: .stale)
      }
    }
    for i in observation.vms.indices {
      observation.vms[i].reading = .stale
      observation.vms[i].placement = placement[Int(presentKey[i])]
    }
    var slotOf: [Int32: Int] = [:]
    if cycle.samples.count < presentKey.count || presentKey.count > 64 {
      for (i, v) in presentKey.enumerated() { slotOf[v] = i }
    }
    for c in oracleCandidates.indices { oracleCandidates[c].removeAll(keepingCapacity: true) }

    for sample in trace.samples[cycle.samples] {
      let v = Int(sample.vm)
      report.vmSamples += 1
      let slot = slotOf.isEmpty ? presentKey.firstIndex(of: sample.vm) : slotOf[sample.vm]
      if let slot { observation.vms[slot].reading = sample.reading }
      let c = classOfVM[v]
      guard c >= 0, case let .known(source, counters, at) = sample.reading else {
        lastReading[v] = sample.reading
        continue
      }
      defer { lastReading[v] = sample.reading }
      guard case let .known(lastSource, last, lastAt) = lastReading[v], lastSource == source,
            counters.rxBytes >= last.rxBytes, counters.txBytes >= last.txBytes, at > lastAt else { continue }
      let bytes = Double((counters.rxBytes - last.rxBytes) + (counters.txBytes - last.txBytes))
      var packets = 0.0
      if let a = counters.rxPackets, let b = counters.txPackets, let la = last.rxPackets, let lb = last.txPackets,
         a >= la, b >= lb { packets = Double((a - la) + (b - lb)) }
      let onVF: Bool = if case .vf = placement[v] { true } else { false }
      report.classes[c].bytes += bytes
      report.classes[c].packets += packets
      if onVF { report.classes[c].vfBytes += bytes; report.classes[c].vfPackets += packets }
      let p = classPool[c]
      if p >= 0 {
        report.eligibleBytes += bytes
        if onVF { report.eligibleVFBytes += bytes }
        oracleCandidates[p].append((bytes, classPinned[c]))
      }
      // Onset: the first sample over the promote threshold, for time-to-promote.
      let dt = at - lastAt
      let promote = classPromote[c]
      let over = (promote.bytesPerSecond.map { bytes / dt >= $0 } ?? false)
        || (promote.packetsPerSecond.map { packets / dt >= $0 && packets > 0 } ?? false)
      if classEligible[c] && !onVF {
        if over { if onset[v] == nil { onset[v] = now } } else if onset[v] != nil { onset[v] = nil; report.missedBursts += 1 }
      }
    }
    // The oracle puts the pool's busiest eligible VMs of this interval on its
    // VFs, pinned ones first, at no cost.
    for p in oracleCandidates.indices where !oracleCandidates[p].isEmpty {
      if oracleCandidates[p].count > usable[p] {
        oracleCandidates[p].sort { ($0.pinned ? 1 : 0, $0.bytes) > ($1.pinned ? 1 : 0, $1.bytes) }
      }
      for candidate in oracleCandidates[p].prefix(usable[p]) { report.oracleEligibleVFBytes += candidate.bytes }
    }

    let plan = decide(&state, policy: policy, observation: observation, now: now)
    report.cycles += 1
    for action in plan.actions {
      guard let v = vmIndex[action.vm.uuid].map(Int.init) else { continue }
      let verb = action.verb
      if let last = lastSwap[v], last.verb != verb, now - last.at < flapWindow { report.flaps += 1 }
      lastSwap[v] = (now, verb)
      report.swaps.append(.init(at: now, verb: verb, vm: action.vm.name, pool: action.pool))
      if case .promote = action {
        placement[v] = .vf(pool: action.pool)
        if let o = onset[v] { report.promoteDelays.append(now - o); onset[v] = nil }
      } else {
        placement[v] = .virtio
      }
    }
  }
  options.progress?(1)
  return report
}
