/// Where the traffic of a pool's VMs on a VF is read: the policy's per-pool
/// field `counters` (docs/policy.md). A real VF bypasses the host stack, so
/// its host netdev (if any) says nothing; hosts offer other ways.
public enum PoolCounters: String, Sendable, Equatable, CaseIterable {
  /// The first of host, representor, pf, guestAgent that can measure the VM.
  case auto
  /// The VF's representor netdev (switchdev mode), turned round.
  case representor
  /// The PF's per-VF statistics over rtnetlink (IFLA_VF_STATS).
  case pf
  /// The QEMU guest agent's interface statistics, matched by MAC.
  case guestAgent
  /// The host netdev of the NIC (the test bed's macvtap stand-in).
  case host
}

/// The source that measured one VM in one cycle, as status and metrics show it.
public enum TrafficSource: String, Sendable, Equatable, CaseIterable {
  case host, representor, pf, guestAgent, unknown

  /// The sources `counters` tries, in order. `auto` starts with the host
  /// netdev: it exists only for a NIC in the host stack (a macvtap or tap),
  /// where it is exact and costs nothing, and never for a real VF, where the
  /// order is then representor, PF statistics, guest agent.
  public static func order(_ counters: PoolCounters) -> [TrafficSource] {
    switch counters {
    case .auto: [.host, .representor, .pf, .guestAgent]
    case .representor: [.representor]
    case .pf: [.pf]
    case .guestAgent: [.guestAgent]
    case .host: [.host]
    }
  }
}

/// What one source can do for one VM this cycle.
public enum SourceOffer: Sendable, Equatable {
  case available
  /// Why not, in words an operator can act on.
  case unavailable(String)
}

/// The source chosen for one VM, and why: for `.unknown`, every source tried
/// with the reason it could not measure.
public struct TrafficSourceChoice: Sendable, Equatable {
  public var source: TrafficSource
  public var reason: String?
  public init(source: TrafficSource, reason: String? = nil) { self.source = source; self.reason = reason }
}

/// Tries the sources of `counters` in order and takes the first available.
/// `offer` is asked lazily, so a source that costs something (the PF's
/// statistics, the guest agent) is consulted only when the ones before it
/// cannot measure the VM. Deterministic given the offers.
public func chooseTrafficSource(_ counters: PoolCounters,
                                offer: (TrafficSource) -> SourceOffer) -> TrafficSourceChoice {
  var reasons: [String] = []
  for source in TrafficSource.order(counters) {
    switch offer(source) {
    case .available: return TrafficSourceChoice(source: source)
    case .unavailable(let why): reasons.append("\(source.rawValue): \(why)")
    }
  }
  return TrafficSourceChoice(source: .unknown, reason: "counters \(counters.rawValue): " + reasons.joined(separator: "; "))
}
