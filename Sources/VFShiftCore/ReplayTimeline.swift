/// Who held a VF in which interval, under the policy and under the oracle, and
/// each managed VM's bytes per time column: what the what-if report draws.
/// Opt-in (`ReplayOptions.timelineColumns`): a plain replay records none of it,
/// so `whatif` without `--report` runs at the benchmark's speed.
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
