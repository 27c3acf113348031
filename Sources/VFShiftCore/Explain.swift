/// One VM's decision chain as the engine holds it after its last cycle:
/// what `vfshift status VM` prints. Read from the tracks, never stored
/// beside them, so it cannot disagree with what `decide` used.
public struct VMChain: Sendable, Equatable {
  public struct Clock: Sendable, Equatable {
    /// Seconds the condition has held so far (nil: it does not hold now).
    public var heldSeconds: Double?
    public var needSeconds: Double
  }
  public var vm: String
  public var uuid: String
  /// nil: no class manages the VM.
  public var className: String?
  public var vf: String?
  public var pool: String?
  public var priority: Int?
  /// The device the last counters came from (the rate's source); nil before any.
  public var rateSource: String?
  public var intervalBytesPerSecond: Double?
  public var intervalPacketsPerSecond: Double?
  public var smoothedBytesPerSecond: Double?
  public var smoothedPacketsPerSecond: Double?
  public var intensive: Bool
  public var intensity: Double?
  public var promote: RateThreshold?
  public var demote: RateThreshold?
  public var above: Clock?
  public var below: Clock?
  public var onVF: Bool
  public var dwellLeftSeconds: Double?
  public var cooldownLeftSeconds: Double?
  public var swapsInLastHour: Int
  public var swapsPerHourLimit: Int
  /// 1-based place among the VMs that may hold a VF of its pool, in the
  /// engine's order (pinned, priority, intensity, name), and how many they are.
  public var rank: Int?
  public var contenders: Int?
}

extension EngineState {
  /// The chain of the VM named `name` (or with that UUID), as of `now`.
  public func chain(of name: String, now: Instant) -> VMChain? {
    guard let policy,
          let slot = tracks.firstIndex(where: { $0.identity.name == name || $0.identity.uuid == name }) else { return nil }
    let t = tracks[slot]
    let flap = policy.antiFlap
    var chain = VMChain(vm: t.identity.name, uuid: t.identity.uuid, rateSource: t.lastCounters == nil ? nil : t.lastSource,
                        intervalBytesPerSecond: t.intervalBytes, intervalPacketsPerSecond: t.intervalPackets,
                        smoothedBytesPerSecond: t.smoothedBytes, smoothedPacketsPerSecond: t.smoothedPackets,
                        intensive: t.intensive, onVF: t.vfSince != nil,
                        swapsInLastHour: t.swaps.filter { now.seconds - $0.seconds < 3600 }.count,
                        swapsPerHourLimit: flap.maxSwapsPerVMPerHour)
    if let since = t.vfSince { chain.dwellLeftSeconds = max(0, since.seconds + flap.minDwellSeconds - now.seconds) }
    if let last = t.swaps.last { chain.cooldownLeftSeconds = max(0, last.seconds + flap.cooldownSeconds - now.seconds) }
    guard t.classIndex >= 0, t.classIndex < policy.classes.count, t.classIndex < rules.count else { return chain }
    let c = policy.classes[t.classIndex]
    let rule = rules[t.classIndex]
    chain.className = c.name; chain.vf = c.vf.rawValue; chain.pool = c.pool; chain.priority = c.priority
    chain.promote = c.promote; chain.demote = c.demote
    chain.intensity = intensity(t, rule)
    chain.above = .init(heldSeconds: t.aboveSince.map { now.seconds - $0.seconds }, needSeconds: c.promote.sustainSeconds)
    chain.below = .init(heldSeconds: t.belowSince.map { now.seconds - $0.seconds }, needSeconds: c.demote.sustainSeconds)
    guard rule.pool >= 0, rule.vf != .never else { return chain }
    func contender(_ i: Int) -> Contender {
      let r = rules[tracks[i].classIndex]
      return Contender(slot: i, pinned: r.vf == .always, priority: r.priority, intensity: intensity(tracks[i], r),
                       name: tracks[i].identity.name, contention: tracks[i].contention, weight: r.contentionWeight)
    }
    let me = contender(slot)
    var ahead = 0, all = 0
    for i in tracks.indices where tracks[i].classIndex >= 0 && tracks[i].classIndex < rules.count {
      let r = rules[tracks[i].classIndex]
      guard r.pool == rule.pool, r.vf != .never else { continue }
      all += 1
      if i != slot, contender(i).outranks(me) { ahead += 1 }
    }
    chain.rank = ahead + 1
    chain.contenders = all
    return chain
  }
}
