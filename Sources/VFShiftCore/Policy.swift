/// An operator's policy: VF pools, QoS classes and anti-flap settings.
/// Field-by-field documentation: docs/policy.md.
public struct Policy: Sendable, Equatable {
  public var name: String
  public var intervalSeconds: Double
  public var smoothingHalfLifeSeconds: Double
  public var pools: [VFPool]
  public var classes: [QoSClass]
  public var antiFlap: AntiFlap

  public init(name: String, intervalSeconds: Double = 1, smoothingHalfLifeSeconds: Double = 10,
              pools: [VFPool], classes: [QoSClass], antiFlap: AntiFlap = AntiFlap()) {
    self.name = name; self.intervalSeconds = intervalSeconds
    self.smoothingHalfLifeSeconds = smoothingHalfLifeSeconds
    self.pools = pools; self.classes = classes; self.antiFlap = antiFlap
  }
}

public enum SwapMode: String, Sendable, Equatable, CaseIterable {
  /// Make before break with a second NIC (works on any host).
  case replace
  /// virtio-net failover: a transient VF teamed with a persistent virtio NIC.
  case failover
}

/// Which MAC a VF gets when it replaces a VM's virtio NIC.
public enum MACChoice: String, Sendable, Equatable, CaseIterable {
  /// The virtio NIC's: the guest's DHCP lease and MAC-matched configuration
  /// (netplan `match: macaddress`, udev names) carry over to the VF.
  case same
  /// A new one from libvirt: the guest sees a different NIC (a new lease).
  case new
}

public struct VFPool: Sendable, Equatable {
  public var name: String
  /// The libvirt network that hands out VFs (`<forward mode='hostdev'>`, or a
  /// passthrough pool standing in for one).
  public var network: String
  /// The PF netdev, for sysfs inventory and per-VF statistics.
  public var pf: String?
  /// Cap on VFs in use, below the hardware total: every VF in use adds
  /// interrupt and CPU load (the paper's lesson). `nil` = no cap.
  public var maxInUse: Int?
  public var mode: SwapMode
  public var mac: MACChoice
  /// How long a swap waits for the guest to use its new NIC before it rolls back.
  public var confirmSeconds: Double
  /// Where the traffic of its VMs on a VF is read (`counters`).
  public var counters: PoolCounters
  /// Which NIC of a VM this pool's VF replaces; nil: the first virtio NIC
  /// (`DataNICSelector`, docs/policy.md).
  public var dataNIC: DataNICSelector?

  public init(name: String, network: String, pf: String? = nil, maxInUse: Int? = nil, mode: SwapMode = .replace,
              mac: MACChoice = .same, confirmSeconds: Double = 10, counters: PoolCounters = .auto,
              dataNIC: DataNICSelector? = nil) {
    self.name = name; self.network = network; self.pf = pf; self.maxInUse = maxInUse; self.mode = mode
    self.mac = mac; self.confirmSeconds = confirmSeconds; self.counters = counters; self.dataNIC = dataNIC
  }
}

public enum VFEligibility: String, Sendable, Equatable, CaseIterable {
  case never, eligible, always
}

/// Rates that count as network-intensive. A VM crosses when *either* given
/// rate is reached (bytes for bulk flows; packets for the small-window,
/// many-small-packet traffic where the paper saw SR-IOV's largest edge).
public struct RateThreshold: Sendable, Equatable {
  public var bytesPerSecond: Double?
  public var packetsPerSecond: Double?
  public var sustainSeconds: Double

  public init(bytesPerSecond: Double? = nil, packetsPerSecond: Double? = nil, sustainSeconds: Double = 0) {
    self.bytesPerSecond = bytesPerSecond; self.packetsPerSecond = packetsPerSecond
    self.sustainSeconds = sustainSeconds
  }
}

public struct ClassMatch: Sendable, Equatable {
  /// Values of the `class` attribute of vfshift's QoS element in the domain's metadata.
  public var metadata: [String]
  /// Globs (`*`, `?`, `[a-z]`) over the domain name.
  public var names: [String]
  public var uuids: [String]

  public init(metadata: [String] = [], names: [String] = [], uuids: [String] = []) {
    self.metadata = metadata; self.names = names; self.uuids = uuids.map { $0.lowercased() }
  }

  public func matches(_ vm: VMIdentity) -> Bool {
    if let label = vm.label, metadata.contains(label) { return true }
    // Runs for every VM every cycle (observe, then the metrics): no lowercased
    // copy of the UUID when the class lists none.
    if !uuids.isEmpty, uuids.contains(vm.uuid.lowercased()) { return true }
    return names.contains { globMatch($0, vm.name) }
  }
}

public struct QoSClass: Sendable, Equatable {
  public var name: String
  public var priority: Int
  public var match: ClassMatch
  public var vf: VFEligibility
  public var pool: String?
  public var promote: RateThreshold
  /// The lower threshold to let go (hysteresis): a VM stays intensive until
  /// *both* rates are below these for `sustainSeconds`.
  public var demote: RateThreshold
  /// How much a VM's CPU contention (0…1) lifts its rank in its pool:
  /// rank = intensity × (1 + contentionWeight × contention). A VM whose vCPUs
  /// wait for a CPU gains most from a VF (docs/policy.md); 0 = traffic alone.
  public var contentionWeight: Double
  /// Promote thresholds lowered while the VM's contention is above a level.
  public var promoteUnderContention: ContentionRelief?

  public init(name: String, priority: Int, match: ClassMatch, vf: VFEligibility, pool: String? = nil,
              promote: RateThreshold = RateThreshold(), demote: RateThreshold = RateThreshold(),
              contentionWeight: Double = 0, promoteUnderContention: ContentionRelief? = nil) {
    self.name = name; self.priority = priority; self.match = match; self.vf = vf; self.pool = pool
    self.promote = promote; self.demote = demote; self.contentionWeight = contentionWeight
    self.promoteUnderContention = promoteUnderContention
  }
}

/// While a VM's contention is above `above`, its promote rates are
/// × `promoteScale`: a contended VM gains more from a VF at less traffic.
public struct ContentionRelief: Sendable, Equatable {
  public var above: Double
  public var promoteScale: Double
  public init(above: Double, promoteScale: Double) { self.above = above; self.promoteScale = promoteScale }

  /// `t` with its rates scaled (the sustain time is kept).
  public func lowered(_ t: RateThreshold) -> RateThreshold {
    RateThreshold(bytesPerSecond: t.bytesPerSecond.map { $0 * promoteScale },
                  packetsPerSecond: t.packetsPerSecond.map { $0 * promoteScale }, sustainSeconds: t.sustainSeconds)
  }
}

/// Anti-flap settings; defaults follow the spirit of Kubernetes' HPA
/// (tolerance 0.1, scale-down stabilisation of minutes, not seconds).
public struct AntiFlap: Sendable, Equatable {
  public var minDwellSeconds: Double
  public var cooldownSeconds: Double
  /// A challenger must exceed an incumbent's intensity by this fraction.
  public var challengerMargin: Double
  public var maxSwapsPerCycle: Int
  public var maxSwapsPerVMPerHour: Int

  public init(minDwellSeconds: Double = 300, cooldownSeconds: Double = 120, challengerMargin: Double = 0.25,
              maxSwapsPerCycle: Int = 2, maxSwapsPerVMPerHour: Int = 6) {
    self.minDwellSeconds = minDwellSeconds; self.cooldownSeconds = cooldownSeconds
    self.challengerMargin = challengerMargin; self.maxSwapsPerCycle = maxSwapsPerCycle
    self.maxSwapsPerVMPerHour = maxSwapsPerVMPerHour
  }
}

/// Who a VM is, as far as class matching goes.
public struct VMIdentity: Sendable, Equatable, Hashable {
  public var uuid: String
  public var name: String
  /// The `class` label from vfshift's metadata element, if the operator set one.
  public var label: String?

  public init(uuid: String, name: String, label: String? = nil) {
    self.uuid = uuid; self.name = name; self.label = label
  }
}

public enum ClassResolution: Sendable, Equatable {
  case unmanaged
  case managed(classIndex: Int)
  /// Two classes claim the VM: an operator error, so the VM is left alone.
  case ambiguous([String])

  public var classIndex: Int? { if case .managed(let c) = self { c } else { nil } }
}

extension Policy {
  public func resolveClass(of vm: VMIdentity) -> ClassResolution {
    // No array unless ambiguous: this runs for every VM every cycle.
    var first = -1
    for i in classes.indices where classes[i].match.matches(vm) {
      if first >= 0 {
        return .ambiguous(classes.indices.filter { classes[$0].match.matches(vm) }.map { classes[$0].name })
      }
      first = i
    }
    return first >= 0 ? .managed(classIndex: first) : .unmanaged
  }

  public func poolIndex(named name: String) -> Int? { pools.firstIndex { $0.name == name } }
}

/// Shell-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`. Iterative with
/// single-star backtracking, so a hostile pattern stays linear-ish.
public func globMatch(_ pattern: String, _ text: String) -> Bool {
  // The common patterns ("*", a plain name) without copying either string.
  if pattern == "*" { return true }
  if !pattern.utf8.contains(where: { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "[") }) {
    return pattern.unicodeScalars.elementsEqual(text.unicodeScalars)
  }
  let p = Array(pattern.unicodeScalars), t = Array(text.unicodeScalars)
  var pi = 0, ti = 0, starP = -1, starT = 0
  while ti < t.count {
    if pi < p.count {
      switch p[pi] {
      case "*":
        starP = pi; starT = ti; pi += 1; continue
      case "?":
        pi += 1; ti += 1; continue
      case "[":
        if let (matched, next) = matchBracket(p, pi, t[ti]) {
          if matched { pi = next; ti += 1; continue }
        } else if p[pi] == t[ti] { pi += 1; ti += 1; continue }
      default:
        if p[pi] == t[ti] { pi += 1; ti += 1; continue }
      }
    }
    guard starP >= 0 else { return false }
    pi = starP + 1; starT += 1; ti = starT
  }
  while pi < p.count && p[pi] == "*" { pi += 1 }
  return pi == p.count
}

/// `nil` when the bracket is not closed (then `[` is a literal).
private func matchBracket(_ p: [Unicode.Scalar], _ open: Int, _ c: Unicode.Scalar) -> (Bool, Int)? {
  var i = open + 1
  var negate = false
  if i < p.count && (p[i] == "!" || p[i] == "^") { negate = true; i += 1 }
  var matched = false
  var first = true
  while i < p.count && (p[i] != "]" || first) {
    first = false
    if i + 2 < p.count && p[i + 1] == "-" && p[i + 2] != "]" {
      if p[i] <= c && c <= p[i + 2] { matched = true }
      i += 3
    } else {
      if p[i] == c { matched = true }
      i += 1
    }
  }
  guard i < p.count else { return nil }
  return (matched != negate, i + 1)
}
