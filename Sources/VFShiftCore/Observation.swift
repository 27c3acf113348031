/// A point on a monotonic clock, in seconds. The engine never reads a clock:
/// callers pass `now`, so a wall-clock jump cannot bend a rate.
public struct Instant: Sendable, Comparable, Hashable, CustomStringConvertible {
  public var seconds: Double
  public init(seconds: Double) { self.seconds = seconds }
  public static func < (a: Instant, b: Instant) -> Bool { a.seconds < b.seconds }
  public static func + (a: Instant, d: Double) -> Instant { Instant(seconds: a.seconds + d) }
  public static func - (a: Instant, b: Instant) -> Double { a.seconds - b.seconds }
  public var description: String { "t=\(fmt(seconds))s" }
}

/// Where a VM's network currently is.
public enum Placement: Sendable, Equatable, Hashable {
  case virtio
  case vf(pool: String)
  /// Both NICs present: a swap is under way, or a guest did not let go of the
  /// old one. The engine leaves such a VM alone until it settles.
  case transitioning(pool: String)
  /// No NIC vfshift knows how to manage.
  case none
}

/// One cumulative counter reading, or the admission that there is none.
public enum CounterReading: Sendable, Equatable {
  /// `source` names the device the counters came from; when it changes (a
  /// swap, a re-created tap) the counters restart and the delta is a gap.
  case known(source: String, counters: VMCounters, at: Instant)
  /// The VM's current NIC has no traffic source (a VF without per-VF
  /// statistics): its rate is unknown, never zero.
  case unknown
  /// No fresh reading this cycle (a sample missed): nothing new is learnt and
  /// what was known stands.
  case stale

  public var isUnknown: Bool { if case .unknown = self { true } else { false } }

  /// The counters and their time of a known reading, without its source:
  /// nothing to retain on the per-VM path.
  @inline(__always) public var counters: (VMCounters, Instant)? { if case let .known(_, c, at) = self { (c, at) } else { nil } }

  /// A known reading from `source`, compared where it lies.
  @inline(__always) public func isFrom(_ source: String) -> Bool {
    if case .known(let s, _, _) = self { s == source } else { false }
  }

  /// Out of line, so that the copy of the source it makes is not hoisted
  /// onto the path that only compares.
  @inline(never) public func copySource(to source: inout String) {
    if case .known(let s, _, _) = self { source = s }
  }
}

public struct VMObservation: Sendable, Equatable {
  public var identity: VMIdentity
  public var placement: Placement
  public var reading: CounterReading
  /// When the VM got its VF, when something durable (the domain's metadata)
  /// says so; lets the dwell survive an agent restart.
  public var vfSince: Instant?
  /// The share of its vCPU threads' runnable time spent waiting for a CPU
  /// over the last contention window, 0 to 1; nil when not (yet) measured.
  public var contention: Double?

  public init(identity: VMIdentity, placement: Placement, reading: CounterReading, vfSince: Instant? = nil,
              contention: Double? = nil) {
    self.identity = identity; self.placement = placement; self.reading = reading; self.vfSince = vfSince
    self.contention = contention
  }
}

public struct PoolCapacity: Sendable, Equatable {
  /// VFs the hardware (or the stand-in pool) has.
  public var total: Int
  /// VFs held by VMs vfshift does not manage: they count against the cap.
  public var heldByOthers: Int
  public init(total: Int, heldByOthers: Int = 0) { self.total = total; self.heldByOthers = heldByOthers }
}

/// Everything one cycle knows about the world.
public struct Observation: Sendable, Equatable {
  public var vms: [VMObservation]
  public var pools: [String: PoolCapacity]
  public init(vms: [VMObservation], pools: [String: PoolCapacity]) { self.vms = vms; self.pools = pools }

  /// A pool's capacity (none when the observation does not list it). Hosts
  /// have a pool or two, named by the same policy strings: comparing those
  /// beats hashing the name every cycle.
  public func capacity(of pool: String) -> PoolCapacity {
    if pools.count <= 4 {
      for (name, capacity) in pools where name == pool { return capacity }
      return PoolCapacity(total: 0)
    }
    return pools[pool] ?? PoolCapacity(total: 0)
  }
}
