/// The replay's two bounds, both swapping for free under the policy's caps:
/// the oracle puts each interval's VFs on the pool's busiest eligible VMs of
/// that interval; the reactive bound on those of the interval before.
struct ReplayOracle {
  /// VFs the policy may use, per pool.
  let usable: [Int]
  /// This interval's bytes of each eligible VM; the cycle loop fills the
  /// first `count` passed to `settle`.
  var candidates: [OracleCandidate] = []
  /// The reactive bound's riders: `rideCycle[v] == k` when VM v rides the
  /// VFs in cycle k (chosen at k − 1); a stamp, so nothing is cleared.
  var rideCycle: [Int]
  private var pinned: [Double] = []
  private var others: [Double] = []

  init(usable: [Int], vmCount: Int) {
    self.usable = usable
    rideCycle = Array(repeating: -1, count: vmCount)
  }

  /// Room for a cycle of `samples` samples.
  mutating func reserve(_ samples: Int) {
    if candidates.count < samples { candidates = Array(repeating: OracleCandidate(), count: samples) }
  }

  /// Adds to `total` what the oracle moves on VFs in cycle `k`'s interval,
  /// pinned ones first, and stamps the reactive bound's riders for the next
  /// one: the oracle's picks, read off its sorted lists as thresholds (ties
  /// go to the earlier sample, so a run is deterministic). Bytes are whole
  /// numbers, so the sum is exact in any order.
  mutating func settle(_ count: Int, cycle k: Int, into total: inout Double) {
    for p in usable.indices where count > 0 {
      if !pinned.isEmpty { pinned.removeAll(keepingCapacity: true) }
      if !others.isEmpty { others.removeAll(keepingCapacity: true) }
      for i in 0..<count where candidates[i].pool == p {
        if candidates[i].pinned { pinned.append(candidates[i].bytes) } else { others.append(candidates[i].bytes) }
      }
      let pinnedRoom = usable[p], othersRoom = max(0, usable[p] - pinned.count)
      total += sumOfLargest(&pinned, pinnedRoom)
      total += sumOfLargest(&others, othersRoom)
      var pinnedCut = Cut(pinned, pinnedRoom), othersCut = Cut(others, othersRoom)
      for i in 0..<count where candidates[i].pool == p {
        let c = candidates[i]
        guard c.pinned ? pinnedCut.admits(c.bytes) : othersCut.admits(c.bytes) else { continue }
        rideCycle[Int(c.vm)] = k + 1
      }
    }
  }
}

struct OracleCandidate {
  var pool = 0
  var pinned = false
  var bytes = 0.0
  var vm: Int32 = 0
}

/// The sum of the `k` largest values (all of them when there are no more).
private func sumOfLargest(_ xs: inout [Double], _ k: Int) -> Double {
  guard k > 0, !xs.isEmpty else { return 0 }
  if xs.count > k { xs.sort(by: >) }
  var sum = 0.0
  for x in xs.prefix(k) { sum += x }
  return sum
}

/// Who of a list `sumOfLargest` has just looked at is among its `k`
/// largest: everyone over the k-th value, and as many equal to it as fit.
private struct Cut {
  var threshold = -Double.infinity
  var ties = Int.max

  init(_ xs: [Double], _ k: Int) {
    guard xs.count > k else { return }  // all of them (sumOfLargest sorted nothing)
    guard k > 0 else { threshold = .infinity; ties = 0; return }
    threshold = xs[k - 1]  // sorted, descending
    ties = 0
    for x in xs.prefix(k) where x == threshold { ties += 1 }
  }

  mutating func admits(_ x: Double) -> Bool {
    if x > threshold { return true }
    if x == threshold && ties > 0 { ties -= 1; return true }
    return false
  }
}

