/// Why the engine did, or did not, move a VM — with the numbers that drove it.
public enum Reason: Sendable, Equatable, CustomStringConvertible {
  case sustainedAbove(bytesPerSecond: Double?, packetsPerSecond: Double?, threshold: RateThreshold)
  case pinnedAlways
  case classNever(className: String)
  case sustainedBelow(bytesPerSecond: Double?, packetsPerSecond: Double?, threshold: RateThreshold)
  case displacedBy(challenger: String, challengerIntensity: Double, intensity: Double, margin: Double)
  case displaces(incumbent: String, intensity: Double, incumbentIntensity: Double, margin: Double)
  case overCap(inUse: Int, cap: Int)
  case wrongPool(holds: String, classPool: String?)
  case poolFull(inUse: Int, capacity: Int)
  case incumbentsHold(weakest: String, weakestIntensity: Double, intensity: Double, margin: Double)
  case dwellNotOver(remainingSeconds: Double)
  case cooldown(remainingSeconds: Double)
  case hourlyBudgetSpent(swapsInLastHour: Int, limit: Int)
  case cycleBudgetSpent(limit: Int)
  case notMeasured(NoRate)
  case backingOff(failures: Int, remainingSeconds: Double)
  /// The guest did not use the NIC its last swap(s) gave it: left alone a while.
  case guestRefused(times: Int, remainingSeconds: Double)
  /// The decision the CPU contention of `vm` turned: on traffic alone it
  /// would have gone the other way. Boxed, so only such a reason allocates.
  indirect case byContention(Reason, vm: String, contention: Double, weight: Double)
  /// Promoted on the class's lowered threshold: its contention was above `above`.
  indirect case underContention(Reason, contention: Double, above: Double, scale: Double)

  public var description: String {
    switch self {
    case let .byContention(r, v, c, w): "\(r.description); \(v) ranked by contention \(ratio(c)) × weight \(fmt(w))"
    case let .underContention(r, c, a, k):
      "\(r.description); threshold × \(ratio(k)) while contention \(ratio(c)) > \(ratio(a))"
    case let .sustainedAbove(b, p, t):
      "above promote threshold for \(fmt(t.sustainSeconds))s (\(rates(b, p)) vs \(limits(t)))"
    case .pinnedAlways: "class pins it to a VF (vf: always)"
    case let .classNever(c): "class '\(c)' never holds a VF (vf: never)"
    case let .sustainedBelow(b, p, t):
      "below release threshold for \(fmt(t.sustainSeconds))s (\(rates(b, p)) vs \(limits(t)))"
    case let .displacedBy(c, ci, i, m):
      "displaced by \(c) (intensity \(ratio(ci)) > \(ratio(i)) × \(ratio(1 + m)))"
    case let .displaces(v, i, vi, m):
      "displaces \(v) (intensity \(ratio(i)) > \(ratio(vi)) × \(ratio(1 + m)))"
    case let .overCap(n, cap): "pool over its cap (\(n) in use, maxInUse \(cap))"
    case let .wrongPool(h, c): "holds a VF of pool '\(h)' but its class uses \(c.map { "pool '\($0)'" } ?? "no pool")"
    case let .poolFull(n, cap): "wants a VF but the pool is full (\(n) of \(cap) usable in use)"
    case let .incumbentsHold(w, wi, i, m):
      "wants a VF; weakest incumbent \(w) not beaten by the margin (intensity \(ratio(i)) ≤ \(ratio(wi)) × \(ratio(1 + m))) or still in its dwell"
    case let .dwellNotOver(s): "minimum dwell on the VF not over (\(fmt(s.rounded(.up))) s left)"
    case let .cooldown(s): "cooling down after its last swap (\(fmt(s.rounded(.up))) s left)"
    case let .hourlyBudgetSpent(n, l): "swap budget spent (\(n) swaps in the last hour, limit \(l))"
    case let .cycleBudgetSpent(l): "swap budget for this cycle spent (limit \(l))"
    case let .notMeasured(why): "not measured yet: \(why.description)"
    case let .backingOff(n, s):
      "backing off after \(n) failed swap\(n == 1 ? "" : "s") in a row (\(fmt(s.rounded(.up))) s left)"
    case let .guestRefused(n, s):
      "the guest did not use the NIC \(n == 1 ? "its last swap" : "its last \(n) swaps") gave it (\(fmt(s.rounded(.up))) s left)"
    }
  }

  /// A short, stable name for logs and metrics labels.
  public var rule: String {
    switch self {
    // The decision's own rule: logs and metrics keep their labels.
    case .byContention(let r, _, _, _), .underContention(let r, _, _, _): r.rule
    case .sustainedAbove: "sustained-above"
    case .pinnedAlways: "pinned-always"
    case .classNever: "class-never"
    case .sustainedBelow: "sustained-below"
    case .displacedBy: "displaced"
    case .displaces: "displaces"
    case .overCap: "over-cap"
    case .wrongPool: "wrong-pool"
    case .poolFull: "pool-full"
    case .incumbentsHold: "incumbents-hold"
    case .dwellNotOver: "dwell"
    case .cooldown: "cooldown"
    case .hourlyBudgetSpent: "hourly-budget"
    case .cycleBudgetSpent: "cycle-budget"
    case .notMeasured: "not-measured"
    case .backingOff: "backoff"
    case .guestRefused: "guest-refused"
    }
  }
}

/// Why a VM has no rate this cycle.
public enum NoRate: String, Sendable, Equatable, CustomStringConvertible {
  /// Its NIC has no traffic source (a VF nobody can read).
  case unknown
  /// No fresh sample this cycle.
  case stale
  /// A first reading of this source: a baseline, the rate comes next cycle
  /// (a new track after a restart, a VM that came back, the NIC after a swap).
  case baseline

  public init(_ reading: CounterReading) {
    switch reading {
    case .unknown: self = .unknown
    case .stale: self = .stale
    case .known: self = .baseline
    }
  }

  public var description: String {
    switch self {
    case .unknown: "its NIC has no traffic source, rate unknown"
    case .stale: "no fresh sample this cycle (a gap restarts the sustain clocks)"
    case .baseline: "first reading of its counters, no rate until the next cycle"
    }
  }
}

private func rates(_ b: Double?, _ p: Double?) -> String {
  [b.map { "\(si($0))B/s" }, p.map { "\(si($0))pkt/s" }].compactMap { $0 }.joined(separator: ", ")
}
private func limits(_ t: RateThreshold) -> String {
  let parts = [t.bytesPerSecond.map { "\(si($0))B/s" }, t.packetsPerSecond.map { "\(si($0))pkt/s" }].compactMap { $0 }
  return parts.isEmpty ? "no threshold" : parts.joined(separator: " / ")
}
func ratio(_ d: Double) -> String {
  let r = (d * 100).rounded() / 100
  return String(r)
}
/// 12.3M, 450k: rates as an operator reads them.
public func si(_ d: Double) -> String {
  let units: [(Double, String)] = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
  for (scale, u) in units where abs(d) >= scale {
    return "\(((d / scale) * 10).rounded() / 10)\(u)"
  }
  return fmt(d.rounded())
}

/// Which way a VM moves: onto a VF or back to virtio. The engine's actions,
/// its holds, the swap journal and the metrics all speak of this one type;
/// its raw value is the word the logs, JSON and metrics print.
public enum Verb: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  /// virtio → VF (pool member).
  case promote
  /// VF → virtio.
  case demote
  public var description: String { rawValue }
}

/// What a held VM wanted: a move, or (unmeasured on its VF, last seen
/// intensive) to stay where it is.
public enum Wish: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  case promote, demote, keep
  public var description: String { rawValue }
}

/// What the metrics count swaps by, kept as its parts so the exposition
/// never splits a joined string apart again. Ordered as the joined text
/// "verb|outcome" would sort, so the exposition's order is unchanged.
public struct SwapTally: Sendable, Hashable, Comparable {
  public var verb: Verb
  public var outcome: String
  public init(verb: Verb, outcome: String) { self.verb = verb; self.outcome = outcome }
  public static func < (a: SwapTally, b: SwapTally) -> Bool {
    a.verb != b.verb ? a.verb.rawValue < b.verb.rawValue : a.outcome < b.outcome
  }
}

public enum Action: Sendable, Equatable, CustomStringConvertible {
  case promote(vm: VMIdentity, pool: String, reason: Reason)
  case demote(vm: VMIdentity, pool: String, reason: Reason)

  public var vm: VMIdentity {
    switch self { case .promote(let v, _, _), .demote(let v, _, _): v }
  }
  public var pool: String {
    switch self { case .promote(_, let p, _), .demote(_, let p, _): p }
  }
  public var reason: Reason {
    switch self { case .promote(_, _, let r), .demote(_, _, let r): r }
  }
  public var verb: Verb {
    switch self { case .promote: .promote; case .demote: .demote }
  }
  public var description: String { "\(verb) \(vm.name) \(verb == .promote ? "to" : "from") \(pool): \(reason)" }
}

/// A VM that wanted a change and did not get it this cycle, and why.
public struct Hold: Sendable, Equatable, CustomStringConvertible {
  public var vm: VMIdentity
  public var wants: Wish
  public var reason: Reason
  public var description: String { "hold \(vm.name) (wants \(wants)): \(reason)" }
}

public struct Plan: Sendable, Equatable {
  /// Demotions first: they free the VFs the promotions need.
  public var actions: [Action]
  public var holds: [Hold]
  public init(actions: [Action] = [], holds: [Hold] = []) { self.actions = actions; self.holds = holds }
}
