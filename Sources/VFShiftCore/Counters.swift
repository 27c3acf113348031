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

/// The interface names of one read, in the order the host reported them, with
/// a lookup table. Readers keep it from one cycle to the next and hand the same
/// value to every snapshot while the set of interfaces does not change, so a
/// cycle at 4,000 interfaces builds no strings and no hash table (copy-on-write
/// shares the storage).
public struct InterfaceNames: Sendable, Equatable {
  public let names: [String]
  @usableFromInline let positions: [String: Int]

  /// `nil` when a name repeats: one read of one namespace never has two
  /// interfaces of the same name, so a repeat means the input is broken.
  public init?(_ names: [String]) {
    var positions = [String: Int](minimumCapacity: names.count)
    for (i, name) in names.enumerated() {
      if positions.updateValue(i, forKey: name) != nil { return nil }
    }
    self.names = names
    self.positions = positions
  }

  public var count: Int { names.count }

  @inlinable public func position(of name: String) -> Int? { positions[name] }

  public static func == (a: InterfaceNames, b: InterfaceNames) -> Bool { a.names == b.names }
}

/// Every interface the host reported in one read, by kernel name.
///
/// A struct rather than a dictionary: the name table is shared between cycles
/// (see `InterfaceNames`) and only the counters are new each read, which keeps
/// a reader within reach of the bare cost of its syscalls at 4,000 interfaces.
public struct CounterSnapshot: Sendable, Sequence {
  public let interfaces: InterfaceNames
  /// `counters[i]` belongs to `interfaces.names[i]`.
  public let counters: [InterfaceCounters]

  public init(interfaces: InterfaceNames, counters: [InterfaceCounters]) {
    precondition(interfaces.count == counters.count,
                 "CounterSnapshot: \(interfaces.count) names but \(counters.count) counters")
    self.interfaces = interfaces
    self.counters = counters
  }

  public init(_ dict: [String: InterfaceCounters]) {
    let sorted = dict.sorted { $0.key < $1.key }
    self.interfaces = InterfaceNames(sorted.map(\.key))!  // dictionary keys are unique
    self.counters = sorted.map(\.value)
  }

  public init() { self.init([:]) }

  @inlinable public subscript(name: String) -> InterfaceCounters? {
    interfaces.position(of: name).map { counters[$0] }
  }

  public var count: Int { counters.count }
  public var isEmpty: Bool { counters.isEmpty }
  public var names: [String] { interfaces.names }

  public typealias Element = (name: String, counters: InterfaceCounters)

  public struct Iterator: IteratorProtocol {
    let snapshot: CounterSnapshot
    var i = 0
    public mutating func next() -> Element? {
      guard i < snapshot.counters.count else { return nil }
      defer { i += 1 }
      return (snapshot.interfaces.names[i], snapshot.counters[i])
    }
  }

  public func makeIterator() -> Iterator { Iterator(snapshot: self) }
}

/// Equal when the same names carry the same counters, whatever order the host
/// listed them in (the two readers list interfaces in different orders).
extension CounterSnapshot: Equatable {
  public static func == (a: CounterSnapshot, b: CounterSnapshot) -> Bool {
    guard a.count == b.count else { return false }
    for (name, counters) in a where b[name] != counters { return false }
    return true
  }
}

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

extension VMCounters {
  /// What moved since `earlier`: bytes, and packets when both readings
  /// count them without a reset. Nil when a byte counter went backwards (a
  /// reset, another device): a gap, never a negative. The one rule the
  /// engine's rates, the replay's shares and the timeline all use.
  @inline(__always)
  func moved(since earlier: VMCounters) -> (bytes: UInt64, packets: UInt64?)? {
    guard rxBytes >= earlier.rxBytes, txBytes >= earlier.txBytes else { return nil }
    var packets: UInt64?
    if let rp = rxPackets, let tp = txPackets, let lrp = earlier.rxPackets, let ltp = earlier.txPackets, rp >= lrp, tp >= ltp {
      packets = (rp - lrp) + (tp - ltp)
    }
    return ((rxBytes - earlier.rxBytes) + (txBytes - earlier.txBytes), packets)
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
  /// A VF's representor netdev (switchdev mode): the other end of the VF's
  /// port on the NIC's switch, so what it transmits the VF receives
  /// (Documentation/networking/switchdev.rst, "port representors").
  case representor

  /// Turns host-side counters into the VM's point of view.
  public func vmCounters(_ host: InterfaceCounters) -> VMCounters {
    switch self {
    case .tap, .representor:
      VMCounters(rxBytes: host.txBytes, txBytes: host.rxBytes,
                 rxPackets: host.txPackets, txPackets: host.rxPackets)
    case .macvtap, .virtualFunction:
      VMCounters(rxBytes: host.rxBytes, txBytes: host.txBytes,
                 rxPackets: host.rxPackets, txPackets: host.txPackets)
    }
  }
}
