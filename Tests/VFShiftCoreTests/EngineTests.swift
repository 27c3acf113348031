import Testing
import VFShiftCore

/// Each row is a sentence of the policy's specification and the swaps the
/// engine must (or must not) make for it.
struct EngineRule: Sendable, CustomTestStringConvertible {
  var rule: String
  var policy: Policy
  var vms: [(name: String, label: String?)]
  var vfs: Int
  var script: @Sendable (inout Simulation) -> [String]
  var expect: [String]
  var testDescription: String { rule }
}

let high = 20e6, between = 5e6, quiet = 0.0

let engineRules: [EngineRule] = [
  EngineRule(rule: "a policy promotes nothing when no VM is intensive",
             policy: .fixture(), vms: [("a", "high"), ("b", "high"), ("c", "low")], vfs: 2,
             script: { s in names(s.run(120, bytes: ["a": 1e6, "b": between, "c": 50e6])) }, expect: []),
  EngineRule(rule: "a high-QoS VM above its threshold is promoted once it has been above for the sustain time, not before",
             policy: .fixture(), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(1)
               let early = names(s.run(4, bytes: ["a": high]))
               let late = names(s.run(2, bytes: ["a": high]))
               return ["early: \(early)", "late: \(late)"]
             },
             expect: ["early: []", "late: [\"promote a\"]"]),
  EngineRule(rule: "packets per second alone make a VM intensive (small windows, many small packets)",
             policy: .fixture(), vms: [("a", "high")], vfs: 1,
             script: { s in names(s.run(8, bytes: ["a": 1e6], packets: ["a": 50_000])) }, expect: ["promote a"]),
  EngineRule(rule: "a low-QoS VM never gets a VF, however busy",
             policy: .fixture(), vms: [("a", "low")], vfs: 3,
             script: { s in names(s.run(600, bytes: ["a": 900e6], packets: ["a": 1e6])) }, expect: []),
  EngineRule(rule: "hysteresis: between the release and promote thresholds a VM keeps its VF",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in names(s.run(10, bytes: ["a": high]) + s.run(300, bytes: ["a": between])) },
             expect: ["promote a"]),
  EngineRule(rule: "hysteresis: under the release threshold for its sustain time, after the dwell, the VM is demoted",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               let before = names(s.run(9, bytes: ["a": quiet]))
               let after = names(s.run(3, bytes: ["a": quiet]))
               return ["before: \(before)", "after: \(after)"]
             },
             expect: ["before: []", "after: [\"demote a\"]"]),
  EngineRule(rule: "dwell: a calm VM is not demoted before its minimum dwell on the VF is over",
             policy: .fixture(dwell: 60), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": high])
               let inDwell = names(s.run(50, bytes: ["a": quiet]))
               let afterDwell = names(s.run(15, bytes: ["a": quiet]))
               return ["in dwell: \(inDwell)", "after: \(afterDwell)"]
             },
             expect: ["in dwell: []", "after: [\"demote a\"]"]),
  EngineRule(rule: "dwell: an incumbent inside its dwell keeps its VF against a far busier challenger",
             policy: .fixture(dwell: 600), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in names(s.run(6, bytes: ["a": high]) + s.run(100, bytes: ["a": high, "b": 200e6])) },
             expect: ["promote a"]),
  EngineRule(rule: "margin: a challenger less than the margin busier than the incumbent does not take its VF",
             policy: .fixture(dwell: 10, margin: 0.25), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in names(s.run(6, bytes: ["a": 20e6]) + s.run(60, bytes: ["a": 20e6, "b": 24e6])) },
             expect: ["promote a"]),
  EngineRule(rule: "margin: a challenger more than the margin busier displaces the incumbent once its dwell is over",
             policy: .fixture(dwell: 10, margin: 0.25), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in names(s.run(6, bytes: ["a": 20e6]) + s.run(60, bytes: ["a": 20e6, "b": 26e6])) },
             expect: ["promote a", "demote a", "promote b"]),
  EngineRule(rule: "cap: maxInUse holds even when the hardware has free VFs",
             policy: .fixture(cap: 1), vms: [("a", "high"), ("b", "high"), ("c", "high")], vfs: 4,
             script: { s in s.run(30, bytes: ["a": high, "b": high, "c": high]); return ["\(s.onVF.count) on VFs"] },
             expect: ["1 on VFs"]),
  EngineRule(rule: "cap: never more VMs on VFs than the pool has",
             policy: .fixture(), vms: [("a", "high"), ("b", "high"), ("c", "high")], vfs: 2,
             script: { s in s.run(30, bytes: ["a": high, "b": high, "c": high]); return ["\(s.onVF.count) on VFs"] },
             expect: ["2 on VFs"]),
  EngineRule(rule: "cap: VFs held by VMs vfshift does not manage count against the cap",
             policy: .fixture(cap: 2), vms: [("a", "high"), ("b", "high")], vfs: 4,
             script: { s in s.heldByOthers["p"] = 1; s.run(30, bytes: ["a": high, "b": high]); return ["\(s.onVF.count) on VFs"] },
             expect: ["1 on VFs"]),
  EngineRule(rule: "cap: a VM mid-swap (two NICs) holds its VF: the pool is not over-committed while a guest hangs on",
             policy: .fixture(), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in s.placement["a"] = .transitioning(pool: "p"); return names(s.run(30, bytes: ["a": high, "b": high])) },
             expect: []),
  EngineRule(rule: "pinning: a vf=always VM gets a VF with no traffic at all and keeps it",
             policy: .fixture(), vms: [("a", "pinned")], vfs: 1,
             script: { s in names(s.run(300)) }, expect: ["promote a"]),
  EngineRule(rule: "pinning: a pinned VM outranks an intensive one for the last VF",
             policy: .fixture(), vms: [("a", "high"), ("p", "pinned")], vfs: 1,
             script: { s in s.run(30, bytes: ["a": high]); return s.onVF },
             expect: ["p"]),
  EngineRule(rule: "budget: no more swaps in one cycle than maxSwapsPerCycle",
             policy: .fixture(perCycle: 1), vms: [("a", "high"), ("b", "high"), ("c", "high")], vfs: 3,
             script: { s in
               s.run(5, bytes: ["a": high, "b": high, "c": high])
               return (0..<3).map { _ in "\(s.step(bytes: ["a": high, "b": high, "c": high]).actions.count)" }
             },
             expect: ["1", "1", "1"]),
  EngineRule(rule: "budget: a VM swaps no more than maxSwapsPerVMPerHour, however its traffic flips",
             policy: .fixture(dwell: 0, cooldown: 0, perHour: 4), vms: [("a", "high")], vfs: 1,
             script: { s in
               for _ in 0..<10 { s.run(7, bytes: ["a": high]); s.run(12, bytes: ["a": quiet]) }
               return ["\(s.log.count) swaps"]
             },
             expect: ["4 swaps"]),
  EngineRule(rule: "cooldown: a VM just demoted is not promoted again until its cooldown is over",
             policy: .fixture(dwell: 0, cooldown: 60), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": high])
               s.run(61, bytes: ["a": quiet])   // promoted at 6, cooldown over at 66, demoted by 67
               let cooling = names(s.run(50, bytes: ["a": high]))
               let later = names(s.run(20, bytes: ["a": high]))
               return ["cooling: \(cooling)", "later: \(later)"]
             },
             expect: ["cooling: []", "later: [\"promote a\"]"]),
  EngineRule(rule: "counter reset: a counter going backwards is a gap, not a negative rate; the VM keeps its VF",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.counters["a"] = VMCounters(rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0)
               s.counters["a"]!.rxBytes = 0
               let rate = s.state.rate(of: "uuid-a")!.bytesPerSecond!
               let actions = names(s.run(1, bytes: ["a": high]))
               let after = s.state.rate(of: "uuid-a")!.bytesPerSecond!
               return ["\(actions)", "rate kept: \(after == rate && after > 0)"]
             },
             expect: ["[]", "rate kept: true"]),
  EngineRule(rule: "counter reset: a re-created device (new source) restarts the baseline instead of a spike",
             policy: .fixture(), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(3, bytes: ["a": 1e6])
               s.source["a"] = "vnet-new"
               s.counters["a"]!.rxBytes = 10_000_000_000_000
               let spike = names(s.run(1, bytes: ["a": 1e6]))
               let rate = s.state.rate(of: "uuid-a")!.bytesPerSecond!
               return ["\(spike)", "rate ≤ 1 MB/s: \(rate <= 1e6)"]
             },
             expect: ["[]", "rate ≤ 1 MB/s: true"]),
  EngineRule(rule: "unknown rate: a VM on a VF with no traffic source is neither demoted nor taken as idle",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.unknown = ["a"]
               return names(s.run(300))
             },
             expect: []),
  EngineRule(rule: "unknown rate: a VM whose rate is unknown is never promoted on a guess",
             policy: .fixture(), vms: [("a", "high")], vfs: 1,
             script: { s in s.unknown = ["a"]; return names(s.run(60, bytes: ["a": high])) },
             expect: []),
  EngineRule(rule: "contention: of two VMs wanting the last VF, the contended one wins though it moves less traffic",
             policy: .fixture(contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.contention = ["b": 0.42]
               let actions = s.run(10, bytes: ["a": 20e6, "b": 16e6])
               return names(actions) + actions.map { "\($0.reason)" }
             },
             expect: ["promote b", "above promote threshold for 5s (16.0MB/s, 0pkt/s vs 10.0MB/s / 10.0kpkt/s); b ranked by contention 0.42 × weight 2"]),
  EngineRule(rule: "contention: weight 0 is traffic alone, today's outcome; the weight is what turns it",
             policy: .fixture(contentionWeight: 0), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               var weighted = Simulation(policy: .fixture(contentionWeight: 2), vms: s.vms.map { ($0.name, $0.label) }, vfs: 1)
               s.contention = ["b": 0.42]; weighted.contention = ["b": 0.42]
               let load = ["a": 20e6, "b": 16e6]
               return ["weight 0: \(names(s.run(10, bytes: load)))", "weight 2: \(names(weighted.run(10, bytes: load)))"]
             },
             expect: ["weight 0: [\"promote a\"]", "weight 2: [\"promote b\"]"]),
  EngineRule(rule: "contention: a VM whose contention was not measured ranks as contention 0",
             policy: .fixture(contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               // b is busier: a's lift must come from a figure, and nil gives none.
               var measured = Simulation(policy: s.policy, vms: s.vms.map { ($0.name, $0.label) }, vfs: 1)
               measured.contention = ["a": 0.42]
               let load = ["a": 16e6, "b": 20e6]
               return ["nil: \(names(s.run(10, bytes: load)))", "0.42: \(names(measured.run(10, bytes: load)))"]
             },
             expect: ["nil: [\"promote b\"]", "0.42: [\"promote a\"]"]),
  EngineRule(rule: "contention: a contended challenger displaces an incumbent it does not beat on traffic, and the reason says so",
             policy: .fixture(dwell: 10, contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": 20e6])
               s.contention = ["b": 0.5]
               let actions = s.run(60, bytes: ["a": 20e6, "b": 20e6])
               return names(actions) + actions.map { "\($0.reason)" }.filter { $0.contains("contention") }
             },
             expect: ["demote a", "promote b", "displaced by b (intensity 4.0 > 2.0 × 1.25); b ranked by contention 0.5 × weight 2"]),
  EngineRule(rule: "contention: a contended incumbent keeps its VF against a challenger that beats it on traffic",
             policy: .fixture(dwell: 10, contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.contention = ["a": 0.5]
               s.run(6, bytes: ["a": 20e6])
               let moved = names(s.run(60, bytes: ["a": 20e6, "b": 26e6]))
               let held = s.holds(s.step(bytes: ["a": 20e6, "b": 26e6]))
               let why = s.step(bytes: ["a": 20e6, "b": 26e6]).holds.map { "\($0.reason)" }
               return ["moved: \(moved)", "\(held)", "\(why.allSatisfy { $0.hasSuffix("a ranked by contention 0.5 × weight 2") })"]
             },
             expect: ["moved: []", "[\"b: incumbents-hold\"]", "true"]),
  EngineRule(rule: "contention: a reason names contention only where it turned the outcome (room for both: no mention)",
             policy: .fixture(contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 2,
             script: { s in
               s.contention = ["b": 0.42]
               var full = Simulation(policy: s.policy, vms: s.vms.map { ($0.name, $0.label) }, vfs: 1)
               full.contention = ["b": 0.42]
               let load = ["a": 20e6, "b": 16e6]
               let mentions = { (a: [Action]) in a.filter { "\($0.reason)".contains("contention") }.map(\.vm.name) }
               return ["room: \(mentions(s.run(10, bytes: load)))", "full: \(mentions(full.run(10, bytes: load)))"]
             },
             expect: ["room: []", "full: [\"b\"]"]),
  EngineRule(rule: "promoteUnderContention: while its contention is above the level, a VM under the class's threshold but above the lowered one is promoted, and the reason says so (not when the plain threshold was met)",
             policy: .fixture(promoteUnderContention: ContentionRelief(above: 0.3, promoteScale: 0.5)),
             vms: [("a", "high"), ("b", "high"), ("c", "high")], vfs: 3,
             script: { s in
               // b is at the level, not above; c would have been promoted anyway.
               s.contention = ["a": 0.42, "b": 0.3, "c": 0.42]
               let actions = s.run(10, bytes: ["a": 6e6, "b": 6e6, "c": 20e6])
               return names(actions) + actions.map { "\($0.reason)" }
             },
             expect: ["promote c", "promote a", "above promote threshold for 5s (20.0MB/s, 0pkt/s vs 10.0MB/s / 10.0kpkt/s)",
                      "above promote threshold for 5s (6.0MB/s, 0pkt/s vs 5.0MB/s / 5.0kpkt/s); threshold × 0.5 while contention 0.42 > 0.3"]),
]

@Test(arguments: engineRules)
func engineRule(_ row: EngineRule) {
  var sim = Simulation(policy: row.policy, vms: row.vms, poolSizes: ["p": row.vfs])
  #expect(row.script(&sim) == row.expect, "\(row.rule)")
}

@Test("two pools: each class's VMs go to their own pool, each pool capped on its own")
func twoPools() {
  var policy = Policy.fixture()
  policy.pools = [VFPool(name: "p", network: "pool-a", maxInUse: 1), VFPool(name: "q", network: "pool-b", maxInUse: 2)]
  var other = policy.classes[0]
  other.name = "storage"; other.match = ClassMatch(metadata: ["storage"]); other.pool = "q"
  policy.classes.append(other)
  var sim = Simulation(policy: policy, vms: [("a", "high"), ("b", "high"), ("s1", "storage"), ("s2", "storage"), ("s3", "storage")],
                       poolSizes: ["p": 4, "q": 4])
  sim.run(20, bytes: ["a": high, "b": high, "s1": high, "s2": high, "s3": high])
  let inP = sim.vms.filter { sim.placement[$0.name] == .vf(pool: "p") }.map(\.name)
  let inQ = sim.vms.filter { sim.placement[$0.name] == .vf(pool: "q") }.map(\.name)
  #expect(inP.count == 1 && inP.allSatisfy { ["a", "b"].contains($0) })
  #expect(inQ.count == 2 && inQ.allSatisfy { $0.hasPrefix("s") })
}

@Test("determinism: the same policy, observations and clock give the same plan, whatever the inventory order")
func determinism() {
  let vms: [(name: String, label: String?)] = (1...12).map { ("vm\($0)", $0 % 3 == 0 ? "low" : "high") }
  func play(reversed: Bool) -> [String] {
    var sim = Simulation(policy: .fixture(cap: 3), vms: reversed ? vms.reversed() : vms, poolSizes: ["p": 4])
    var out: [String] = []
    for t in 0..<200 {
      let load = Dictionary(uniqueKeysWithValues: vms.enumerated().map { i, vm in
        (vm.name, Double((i * 7 + t / 20) % 5) * 8e6)
      })
      out += sim.step(bytes: load).actions.map { "\(t) \($0)" }
    }
    return out
  }
  let a = play(reversed: false), b = play(reversed: false), c = play(reversed: true)
  #expect(!a.isEmpty)
  #expect(a == b)
  #expect(Set(a) == Set(c))
}

@Test("every action carries a reason that names the numbers behind it")
func reasonsNameNumbers() {
  var sim = Simulation(policy: .fixture(), vms: [("a", "high")], vfs: 1)
  let actions = sim.run(6, bytes: ["a": 20e6])
  #expect(actions.count == 1)
  let text = "\(actions[0])"
  #expect(text.contains("promote a to p"))
  #expect(text.contains("20.0MB/s"))
  #expect(text.contains("10.0MB/s"))
}

extension Simulation {
  init(policy: Policy, vms: [(name: String, label: String?)], vfs: Int) {
    self.init(policy: policy, vms: vms, poolSizes: ["p": vfs])
  }
}

@Test("explain: a VM's rank in its pool counts its contention, as the engine's ranking does")
func explainRankCountsContention() {
  var sim = Simulation(policy: .fixture(contentionWeight: 2), vms: [("a", "high"), ("b", "high")], vfs: 1)
  sim.contention = ["b": 0.42]
  sim.run(10, bytes: ["a": 20e6, "b": 16e6])
  #expect(sim.state.chain(of: "b", now: sim.now)?.rank == 1)
  #expect(sim.state.chain(of: "a", now: sim.now)?.rank == 2)
}
