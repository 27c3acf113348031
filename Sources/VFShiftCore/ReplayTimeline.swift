/// Who held a VF in which interval, under the policy and under the oracle, and
/// each managed VM's bytes per time column: what the what-if report draws.
/// Opt-in (`ReplayOptions.timelineColumns`), and built in a pass of its own
/// after the replay, from the trace and the replay's swaps: the replay's loop
/// is the one bench-engine measures, and stays as it is.
public struct ReplayTimeline: Sendable, Equatable {
  public enum Holder: Sendable, Equatable { case policy, oracle }

  public struct Change: Sendable, Equatable {
    /// The first interval the change holds for, as an index into
    /// `trace.cycles`: interval k runs from cycle k-1 to cycle k and is what
    /// cycle k's samples measure. A swap decided at cycle k takes effect in
    /// interval k+1 (which may be past the trace's end); the oracle, knowing
    /// interval k's bytes, places for interval k.
    public var cycle: Int
    /// Index into `trace.vms`.
    public var vm: Int
    /// Index into `pools`.
    public var pool: Int
    public var holder: Holder
    /// True: the VM takes a VF of the pool; false: it gives its VF back.
    public var holds: Bool
  }

  public var columns: TimeColumns
  public var pools: [String]
  /// VFs each pool may use (its cap, within its size): the number of lanes.
  public var usable: [Int]
  /// The class each VM is in; nil where unmanaged (or ambiguous).
  public var vmClass: [String?]
  /// In cycle order; within a cycle, who lets go before who takes over.
  public var changes: [Change] = []
  /// `bytes[vm * columns.count + column]`: bytes the VM moved in the intervals
  /// ending in that column. Managed VMs only: the replay measures no others.
  public var bytes: [Double]

  init(trace: Trace, policy: Policy, classOfVM: [Int], usable: [Int], swaps: [ReplayReport.Swap], maxColumns: Int) {
    columns = TimeColumns(trace: trace, maxColumns: maxColumns)
    pools = policy.pools.map(\.name)
    self.usable = usable
    vmClass = classOfVM.map { $0 >= 0 ? policy.classes[$0].name : nil }
    let n = trace.vms.count, width = columns.count
    var bytes = [Double](repeating: 0, count: n * width)
    let cycleAt = Dictionary(trace.cycles.enumerated().map { ($1.at.seconds, $0) }, uniquingKeysWith: { a, _ in a })
    let vmNamed = Dictionary(trace.vms.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    let classPool = policy.classes.map { c in c.vf == .never ? -1 : (c.pool.flatMap(policy.poolIndex(named:)) ?? -1) }
    var policyPool = [Int](repeating: -1, count: n)  // the pool whose VF the VM holds under the policy
    var lastSample = [Int](repeating: -1, count: n)
    var oracleHeld = Set<Int>()
    var present: [Int32] = []
    var nextSwap = 0
    for k in trace.cycles.indices {
      // Swaps decided at an earlier cycle hold from the interval after it.
      while nextSwap < swaps.count, let d = cycleAt[swaps[nextSwap].at.seconds], d < k {
        let s = swaps[nextSwap]
        nextSwap += 1
        guard let v = vmNamed[s.vm], let p = policy.poolIndex(named: s.pool) else { continue }
        let holds = s.verb == .promote
        changes.append(Change(cycle: d + 1, vm: v, pool: p, holder: .policy, holds: holds))
        policyPool[v] = holds ? p : -1
      }
      // A VM that leaves gives its VF back, as in the replay.
      if trace.cycles[k].present != present {
        let staying = Set(trace.cycles[k].present)
        for v in present.map(Int.init) where !staying.contains(Int32(v)) && policyPool[v] >= 0 {
          changes.append(Change(cycle: k, vm: v, pool: policyPool[v], holder: .policy, holds: false))
          policyPool[v] = -1
        }
        present = trace.cycles[k].present
      }
      let column = columns.column(trace.cycles[k].at)
      var pinned = [[(vm: Int, bytes: Double)]](repeating: [], count: usable.count), others = pinned
      for s in trace.cycles[k].samples {
        let v = Int(trace.samples[s].vm)
        let previous = lastSample[v]
        lastSample[v] = s
        let c = classOfVM[v]
        guard c >= 0, previous >= 0,
              let b = intervalBytes(trace.samples[previous].reading, trace.samples[s].reading) else { continue }
        bytes[v * width + column] += b
        let p = classPool[c]
        if p >= 0 {
          if policy.classes[c].vf == .always { pinned[p].append((v, b)) } else { others[p].append((v, b)) }
        }
      }
      // The oracle's VMs for this interval: who lets go first, then who takes over.
      var chosen: [(vm: Int, pool: Int)] = []
      for p in usable.indices {
        chosen += oracleChoice(pinned: pinned[p], others: others[p], usable: usable[p]).map { ($0, p) }
      }
      let held = Set(chosen.map(\.vm))
      for v in oracleHeld.subtracting(held).sorted() {
        changes.append(Change(cycle: k, vm: v, pool: classPool[classOfVM[v]], holder: .oracle, holds: false))
      }
      for (v, p) in chosen where !oracleHeld.contains(v) {
        changes.append(Change(cycle: k, vm: v, pool: p, holder: .oracle, holds: true))
      }
      oracleHeld = held
    }
    self.bytes = bytes
    settleChanges()
  }

  /// Per cycle, what holds is each VM's last change (a VM promoted and gone
  /// by the next cycle never held), and who lets go comes before who takes
  /// over: a plan may list a promotion before the demotion that makes room.
  mutating func settleChanges() {
    struct Key: Hashable { var cycle: Int; var vm: Int; var holder: Holder }
    var last: [Key: Int] = [:]
    for (i, c) in changes.enumerated() { last[Key(cycle: c.cycle, vm: c.vm, holder: c.holder)] = i }
    changes = changes.enumerated()
      .filter { last[Key(cycle: $0.element.cycle, vm: $0.element.vm, holder: $0.element.holder)] == $0.offset }
      .sorted { a, b in (a.element.cycle, a.element.holds ? 1 : 0, a.offset) < (b.element.cycle, b.element.holds ? 1 : 0, b.offset) }
      .map(\.element)
  }

  public func bytes(ofVM vm: Int) -> ArraySlice<Double> {
    bytes[(vm * columns.count)..<((vm + 1) * columns.count)]
  }
}

/// The trace's time span cut into at most `count` equal columns, so a month
/// of 5-minute cycles or of seconds draws at the same, bounded size.
public struct TimeColumns: Sendable, Equatable {
  public var start: Double
  public var end: Double
  public var count: Int

  /// One column per cycle where there are no more than `maxColumns` cycles.
  public init(trace: Trace, maxColumns: Int) {
    start = trace.cycles.first?.at.seconds ?? 0
    end = trace.cycles.last?.at.seconds ?? 0
    count = max(1, min(maxColumns, trace.cycles.count))
  }

  public var secondsPerColumn: Double { count > 0 && end > start ? (end - start) / Double(count) : 0 }

  public func column(_ at: Instant) -> Int {
    guard end > start else { return 0 }
    return min(count - 1, max(0, Int((at.seconds - start) / (end - start) * Double(count))))
  }
}

/// Bytes a VM moved between two of its readings: nil unless both are known,
/// from the same source, with no counter reset (`VMCounters.moved`) and time
/// moving forward. The replay's loop applies the same rule inline (bench-engine).
func intervalBytes(_ last: CounterReading, _ now: CounterReading) -> Double? {
  guard let (counters, at) = now.counters, case let .known(lastSource, lastCounters, lastAt) = last,
        now.isFrom(lastSource), at > lastAt, let moved = counters.moved(since: lastCounters)
  else { return nil }
  return Double(moved.bytes)
}

/// The VMs the oracle puts on one pool's VFs for one interval: pinned ones
/// first, then the busiest, ties to the lower VM index so the picture is the
/// same on every run. A VM that moved no bytes gains nothing from a VF and is
/// left off (the oracle's byte figure is the same either way).
func oracleChoice(pinned: [(vm: Int, bytes: Double)], others: [(vm: Int, bytes: Double)], usable: Int) -> [Int] {
  func ranked(_ xs: [(vm: Int, bytes: Double)]) -> [Int] {
    xs.sorted { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.vm < $1.vm }.map(\.vm)
  }
  let first = ranked(pinned).prefix(usable)
  return Array(first) + ranked(others.filter { $0.bytes > 0 }).prefix(max(0, usable - pinned.count))
}
