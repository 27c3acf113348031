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
  /// Eligible bytes × the contention their sample came with (docs/trace-format.md,
  /// "Replay"): what the VFs were worth where the vCPUs waited.
  public var contentionWeightedEligibleBytes = 0.0
  public var contentionWeightedEligibleVFBytes = 0.0
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
  /// The share of eligible bytes on a VF, each weighted by its VM's contention;
  /// nil when no eligible byte came with a contention above 0 (a trace
  /// without the field), never a made-up figure.
  public var contentionWeightedEligibleVFByteShare: Double? {
    contentionWeightedEligibleBytes > 0 ? contentionWeightedEligibleVFBytes / contentionWeightedEligibleBytes : nil
  }
  public var reactiveEligibleVFByteShare: Double? { eligibleBytes > 0 ? reactiveEligibleVFBytes / eligibleBytes : nil }
  public var medianPromoteDelaySeconds: Double? { percentile(promoteDelays, 0.5) }
  public var p90PromoteDelaySeconds: Double? { percentile(promoteDelays, 0.9) }
}

func percentile(_ xs: [Double], _ q: Double) -> Double? {
  guard !xs.isEmpty else { return nil }
  let s = xs.sorted()
  return s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))]
}

/// The replay's scorecard: what the policy's swaps are charged with (flaps,
/// time to promote), beside the report the cycle loop fills.
struct ReplayScorecard {
  var report: ReplayReport
  var lastSwap: [(at: Instant, verb: Verb)?]
  /// When each eligible VM on virtio first went over its promote threshold.
  var onset: [Instant?]
  let flapWindow: Double

  init(policy: Policy, vmCount: Int) {
    report = ReplayReport(policy: policy.name)
    lastSwap = Array(repeating: nil, count: vmCount)
    onset = Array(repeating: nil, count: vmCount)
    flapWindow = max(policy.antiFlap.minDwellSeconds, 300)
  }

  /// One swap the actuator has carried out on VM `v`.
  mutating func record(_ action: Action, vm v: Int, now: Instant) {
    let verb = action.verb
    // A reversal at the next cycle counts: on a 300 s trace that is 300 s.
    if let last = lastSwap[v], last.verb != verb, now - last.at <= flapWindow { report.flaps += 1 }
    lastSwap[v] = (now, verb)
    report.swaps.append(.init(at: now, verb: verb, vm: action.vm.name, pool: action.pool))
    if case .promote = action, let o = onset[v] { report.promoteDelays.append(now - o); onset[v] = nil }
  }
}
