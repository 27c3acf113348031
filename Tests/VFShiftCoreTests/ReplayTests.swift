import Testing
import VFShiftCore
import VFShiftFiles

func bundled(_ policy: String) throws -> Policy { try loadPolicy("\(repoRoot)/policies/\(policy).json") }
func bundledTrace(_ name: String) throws -> Trace { try loadTrace("\(repoRoot)/policies/traces/\(name).trace") }

@Test("the paper policy never puts a low-QoS VM on a VF", arguments: ["bitbrains-8vm", "paper-8vm"])
func paperNeverPromotesLow(_ traceName: String) throws {
  let trace = try bundledTrace(traceName)
  let report = replay(trace, policy: try bundled("paper-multinetwork"))
  let low = Set(trace.vms.filter { $0.label == "low" }.map(\.name))
  #expect(low.count == 5)
  #expect(report.swaps.contains { $0.verb == .promote })
  #expect(!report.swaps.contains { $0.verb == .promote && low.contains($0.vm) })
  #expect(report.classes.first { $0.name == "low" }?.vfBytes == 0)
}

@Test("all-sriov never holds more VFs than the pool has")
func allSRIOVWithinPool() throws {
  let trace = try bundledTrace("paper-8vm")
  for vfs in [1, 3, 5] {
    var t = trace
    t.poolSizes = ["x540": vfs]
    let report = replay(t, policy: try bundled("all-sriov"))
    var held = Set<String>()
    var peak = 0
    for swap in report.swaps {
      if swap.verb == .promote { held.insert(swap.vm) } else { held.remove(swap.vm) }
      peak = max(peak, held.count)
    }
    #expect(peak == vfs, "pool of \(vfs)")
  }
}

@Test("a trace with no intensive VM promotes nothing under the eligible-only policies")
func quietTracePromotesNothing() throws {
  var trace = Trace(intervalSeconds: 1, poolSizes: ["x540": 4, "default": 4])
  trace.vms = (1...8).map { VMIdentity(uuid: "u\($0)", name: "vm\($0)", label: $0 > 5 ? "high" : "low") }
  for t in 1...600 {
    let start = trace.samples.count
    for v in 0..<8 {
      let bytes = UInt64(t) * 1_000  // 1 kB/s: idle
      trace.samples.append(TraceSample(vm: Int32(v), reading: .known(source: "vnet\(v)",
        counters: VMCounters(rxBytes: bytes, txBytes: 0, rxPackets: UInt64(t), txPackets: 0), at: Instant(seconds: Double(t)))))
    }
    trace.cycles.append(TraceCycle(at: Instant(seconds: Double(t)), samples: start..<trace.samples.count, present: Array(0..<8)))
  }
  for name in ["paper-multinetwork", "general"] {
    let report = replay(trace, policy: try bundled(name))
    #expect(report.swaps.isEmpty, "\(name)")
  }
}

@Test("the oracle is an upper bound, and replay is deterministic")
func oracleBoundsPolicy() throws {
  let trace = try bundledTrace("bitbrains-8vm")
  for name in ["paper-multinetwork", "general", "all-sriov"] {
    let a = replay(trace, policy: try bundled(name)), b = replay(trace, policy: try bundled(name))
    #expect(a == b)
    let share = try #require(a.eligibleVFByteShare), oracle = try #require(a.oracleEligibleVFByteShare)
    #expect(share <= oracle + 1e-9, "\(name)")
  }
}

@Test("on the bundled public trace the paper policy reaches ≥ 90 % of the oracle with ≤ 1 swap per VM per 10 min")
func paperPolicyAgainstOracle() throws {
  let report = replay(try bundledTrace("bitbrains-8vm"), policy: try bundled("paper-multinetwork"))
  let ratio = try #require(report.eligibleVFByteShare) / (try #require(report.oracleEligibleVFByteShare))
  #expect(ratio >= 0.9)
  #expect(report.swapsPerVMPer10Min <= 1)
}

@Test("the general policy serves a trace whose VMs it has never seen: every published VM of the extract")
func generalServesUnseenVMs() throws {
  let trace = try loadTrace(gwaExtractDirectory)
  let report = replay(trace, policy: try bundled("general"))
  #expect(report.managedVMs == 15)
  #expect(report.swaps.count > 0)
  #expect(report.swapsPerVMPer10Min <= 1)
  #expect((report.eligibleVFByteShare ?? 0) > 0)
}
