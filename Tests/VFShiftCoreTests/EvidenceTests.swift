import Testing
import VFShiftCore

/// "No evidence, no move": each row is one rule of issue #11 and the swaps
/// (or holds) the engine must show for it. Every row failed on the engine
/// before these rules.
let evidenceRules: [EngineRule] = [
  EngineRule(rule: "not measured: after a restart a VM found on a VF is held, not demoted for being 'below', while it has no rate",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.restart()
               let plan = s.step(bytes: ["a": high])
               return ["\(names(plan.actions))"] + s.holds(plan)
             },
             expect: ["[]", "a: not-measured"]),
  EngineRule(rule: "restart: a busy incumbent keeps its VF across the agent's own stop and start",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.restart()
               return names(s.run(300, bytes: ["a": high]))
             },
             expect: []),
  EngineRule(rule: "restart: an incumbent is demoted only after a full demote sustain of measured traffic under the release thresholds",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.restart()
               // First cycle: a baseline only; the sustain counts from the first measured interval.
               let before = names(s.run(10, bytes: ["a": quiet]))
               let after = names(s.run(2, bytes: ["a": quiet]))
               return ["before: \(before)", "after: \(after)"]
             },
             expect: ["before: []", "after: [\"demote a\"]"]),
  EngineRule(rule: "not measured: a VM that reappears on a VF is held until measured, not demoted",
             policy: .fixture(dwell: 0), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               let a = s.vms.removeFirst()
               s.run(3, bytes: ["b": quiet])
               s.vms.insert(a, at: 0)
               return names(s.run(5, bytes: ["a": high]))
             },
             expect: []),
  EngineRule(rule: "not measured: an intensive VM whose reading turns unknown is not promoted on its old rate",
             policy: .fixture(dwell: 0, cooldown: 60), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": high])      // promoted at 6
               s.run(62, bytes: ["a": quiet])    // demoted at 66, once the cooldown let it
               s.run(10, bytes: ["a": high])     // intensive again, cooling down until 126
               s.unknown = ["a"]
               let plan = s.step()
               return [names(s.run(100)).description] + s.holds(plan)
             },
             expect: ["[]", "a: not-measured"]),
  EngineRule(rule: "stale: a stale reading does not extend a promote sustain clock, and the gap restarts it",
             policy: .fixture(), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(4, bytes: ["a": high])      // above since t=1, 3 s of the 5 s sustain
               s.stale = ["a"]
               let during = names(s.run(5, bytes: ["a": high]))
               s.stale = []
               let after = names(s.run(5, bytes: ["a": high]))
               let later = names(s.run(2, bytes: ["a": high]))
               return ["during: \(during)", "after: \(after)", "later: \(later)"]
             },
             expect: ["during: []", "after: []", "later: [\"promote a\"]"]),
  EngineRule(rule: "stale: a gap restarts the demote sustain clock; the VM is held while stale",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])     // promoted at 6
               s.run(8, bytes: ["a": quiet])     // under since t=10
               s.stale = ["a"]
               let plan = s.step()
               let during = names(plan.actions + s.run(3))
               s.stale = []
               let after = names(s.run(9, bytes: ["a": quiet]))
               let later = names(s.run(3, bytes: ["a": quiet]))
               return ["during: \(during)", "after: \(after)", "later: \(later)"] + s.holds(plan)
             },
             expect: ["during: []", "after: []", "later: [\"demote a\"]", "a: not-measured"]),
  EngineRule(rule: "unknown rate: an incumbent of unknown rate is held as not measured, without its pre-promotion rate",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": high])
               s.unknown = ["a"]
               let plan = s.step()
               let rate = s.state.rate(of: "uuid-a")?.bytesPerSecond
               return [names(plan.actions + s.run(300)).description, "rate: \(rate.map { "\($0)" } ?? "unknown")"] + s.holds(plan)
             },
             expect: ["[]", "rate: unknown", "a: not-measured"]),
  EngineRule(rule: "unknown rate: a challenger does not displace an incumbent ranked on a rate from before it went unknown",
             policy: .fixture(dwell: 0, margin: 0.25), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.run(10, bytes: ["a": 12e6])
               s.unknown = ["a"]
               let plan = s.run(60, bytes: ["b": 20e6])
               return names(plan)
             },
             expect: []),
  EngineRule(rule: "after a swap the counters come from another device: the first interval after it has no rate",
             policy: .fixture(dwell: 0), vms: [("a", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": high])      // promoted at 6
               let early = names(s.run(10, bytes: ["a": quiet]))
               let late = names(s.run(1, bytes: ["a": quiet]))
               return ["early: \(early)", "late: \(late)"]
             },
             expect: ["early: []", "late: [\"demote a\"]"]),
  EngineRule(rule: "displacement: the promote waits for its paired demote, to the next cycle",
             policy: .fixture(dwell: 10, margin: 0.25), vms: [("a", "high"), ("b", "high")], vfs: 1,
             script: { s in
               s.run(6, bytes: ["a": 20e6])
               var out: [String] = []
               for _ in 0..<60 {
                 let plan = s.step(bytes: ["a": 20e6, "b": 26e6])
                 if !plan.actions.isEmpty { out.append(names(plan.actions).joined(separator: ", ")) }
               }
               return out
             },
             expect: ["demote a", "promote b"]),
]

@Test(arguments: evidenceRules)
func evidenceRule(_ row: EngineRule) {
  var sim = Simulation(policy: row.policy, vms: row.vms, poolSizes: ["p": row.vfs])
  #expect(row.script(&sim) == row.expect, "\(row.rule)")
}
