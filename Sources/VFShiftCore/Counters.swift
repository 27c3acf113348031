/// One interface's cumulative counters as the host kernel reports them
/// (`/proc/net/dev` or netlink `rtnl_link_stats64`): receive and transmit are
/// the *host's* view. Both readers return this type, so the engine cannot tell
/// which one ran.
public struct InterfaceCounters: Sendable, Equatable, Hashable {
  public var rxBytes: UInt64
  public var rxPackets: UInt64
  public var rxErrors: UInt64
  public var rxDrops: UInt64
  public var txBytes: UInt64
  public var txPackets: UInt64
  public var txErrors: UInt64
  public var txDrops: UInt64

  public init(rxBytes: UInt64 = 0, rxPackets: UInt64 = 0, rxErrors: UInt64 = 0, rxDrops: UInt64 = 0,
              txBytes: UInt64 = 0, txPackets: UInt64 = 0, txErrors: UInt64 = 0, txDrops: UInt64 = 0) {
    self.rxBytes = rxBytes; self.rxPackets = rxPackets; self.rxErrors = rxErrors; self.rxDrops = rxDrops
    self.txBytes = txBytes; self.txPackets = txPackets; self.txErrors = txErrors; self.txDrops = txDrops
  }
}

/// Every interface the host reported in one read, by kernel name.
public typealias CounterSnapshot = [String: InterfaceCounters]

/// Cumulative traffic counters from the *VM's* point of view. Packets may be
/// unmeasured (public traces carry bytes only); `nil` there is "not known",
/// never zero.
public struct VMCounters: Sendable, Equatable, Hashable {
  public var rxBytes: UInt64
  public var txBytes: UInt64
  public var rxPackets: UInt64?
  public var txPackets: UInt64?

  public init(rxBytes: UInt64, txBytes: UInt64, rxPackets: UInt64?, txPackets: UInt64?) {
    self.rxBytes = rxBytes; self.txBytes = txBytes; self.rxPackets = rxPackets; self.txPackets = txPackets
  }
}

/// How the host sees a VM's NIC, which decides which way round its counters are.
public enum HostDeviceKind: String, Sendable, Equatable, Hashable, Codable {
  /// A tap (`vnetN`) behind a bridge or network virtio NIC: the host transmits
  /// what the guest receives.
  case tap
  /// A `macvtapN` (direct / passthrough pool member): the host's receive
  /// counter is the guest's receive.
  case macvtap
  /// A real VF: not in the host stack; counters come from the PF's per-VF
  /// statistics, which netlink reports from the VF's (guest's) side.
  case virtualFunction

  /// Turns host-side counters into the VM's point of view.
  public func vmCounters(_ host: InterfaceCounters) -> VMCounters {
    switch self {
    case .tap:
      VMCounters(rxBytes: host.txBytes, txBytes: host.rxBytes,
                 rxPackets: host.txPackets, txPackets: host.rxPackets)
    case .macvtap, .virtualFunction:
      VMCounters(rxBytes: host.rxBytes, txBytes: host.txBytes,
                 rxPackets: host.rxPackets, txPackets: host.txPackets)
    }
  }
}
