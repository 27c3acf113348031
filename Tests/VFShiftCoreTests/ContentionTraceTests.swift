import Testing
@testable import VFShiftCore
import VFShiftFiles

// Issue #14 part 3: contention in the trace format, its replay, the GWA-T-12
// estimate, and the contention-weighted share.

private func known(_ vm: Int32, _ t: Double, bytes: UInt64, contention: Double? = nil) -> TraceSample {
  TraceSample(vm: vm, reading: .known(source: "vnet\(vm)", counters: VMCounters(rxBytes: bytes, txBytes: 0, rxPackets: nil, txPackets: nil),
                                      at: Instant(seconds: t)), contention: contention)
}

@Test("a trace with contention renders as version 2 and parses back equal; one without stays version 1")
func contentionRoundTrip() throws {
  var trace = Trace(source: "here", intervalSeconds: 1, vms: [VMIdentity(uuid: "a", name: "a"), VMIdentity(uuid: "b", name: "b")])
  trace.samples = [known(0, 1, bytes: 10, contention: 0.25), known(1, 1, bytes: 5),
                   known(0, 2, bytes: 20, contention: 1), TraceSample(vm: 1, reading: .unknown, contention: 0.5)]
  trace.cycles = [TraceCycle(at: Instant(seconds: 1), samples: 0..<2, present: [0, 1]),
                  TraceCycle(at: Instant(seconds: 2), samples: 2..<4, present: [0, 1])]
  let text = trace.render()
  #expect(text.hasPrefix("vfshift-trace 2\n"))
  #expect(text.contains("\ns 1.0 a vnet0 10 0 - - 0.25\n"))
  #expect(text.contains("\ns 1.0 b vnet1 5 0 - -\n"), "no field where no figure")
  #expect(text.contains("\ns 0 b ? 0.5\n"))
  let again = try Trace.parse(text, file: "t")
  #expect(again.version == 2)
  trace.version = 2
  #expect(again == trace)
  #expect(again.render() == text)

  var plain = trace
  plain.version = 1
  for i in plain.samples.indices { plain.samples[i].contention = nil }
  #expect(plain.render().hasPrefix("vfshift-trace 1\n"))
  #expect(!plain.render().contains("0.25"))
}

@Test("version 1 traces read as before: the bundled ones parse as version 1 without a contention figure")
func oldTracesReadUnchanged() throws {
  for name in ["paper-8vm", "bitbrains-8vm"] {
    let trace = try bundledTrace(name)
    #expect(trace.version == 1, "\(name)")
    #expect(trace.versionNeeded == 1, "\(name)")
    #expect(!trace.samples.contains { $0.contention != nil }, "\(name)")
  }
  // A version-2 header with no contention field reads the same samples.
  let v1 = "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 1 2 3 4\ns 2 a ?\n".replacingOccurrences(of: "s 2 a ?\n", with: "c 2\ns 2 a ?\n")
  let a = try Trace.parse(v1, file: "t")
  let b = try Trace.parse(v1.replacingOccurrences(of: "vfshift-trace 1", with: "vfshift-trace 2"), file: "t")
  #expect(a.samples == b.samples)
  #expect(b.version == 2)
}

@Test("a contention field is refused with the line and why: in a version-1 trace, not a number, out of 0…1",
      arguments: [
        ("vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 1 1 1 1 0.5",
         "t:4: a sample has 9 fields, expected 8; a contention field (the 9th) needs the header 'vfshift-trace 2'"),
        ("vfshift-trace 1\nvm a\nc 1\ns 1 a ? 0.5",
         "t:4: a sample has 5 fields, expected 4; a contention field (the 5th) needs the header 'vfshift-trace 2'"),
        ("vfshift-trace 2\nvm a\nc 1\ns 1 a vnet0 1 1 1 1 lots", "t:4: contention 'lots' is not a number"),
        ("vfshift-trace 2\nvm a\nc 1\ns 1 a vnet0 1 1 1 1 nan", "t:4: contention 'nan' is not a number"),
        ("vfshift-trace 2\nvm a\nc 1\ns 1 a vnet0 1 1 1 1 1.5", "t:4: contention 1.5 is out of range (0 to 1)"),
        ("vfshift-trace 2\nvm a\nc 1\ns 1 a ? -0.1", "t:4: contention -0.1 is out of range (0 to 1)"),
        ("vfshift-trace 2\nvm a\nc 1\ns 1 a vnet0 1 1 1 1 0.5 0.5", "t:4: a sample has 10 fields, expected 8 or 9 (s TIME VM SOURCE RX_BYTES TX_BYTES RX_PACKETS TX_PACKETS [CONTENTION]) or 4 or 5 (s TIME VM ? [CONTENTION])"),
        ("vfshift-trace 3\n", "t:1: trace version 3 is not supported (this vfshift reads versions 1 and 2)"),
      ])
func contentionFieldRefused(_ text: String, _ expected: String) {
  #expect { try Trace.parse(text, file: "t") } throws: { "\($0)" == expected }
}

/// Two VMs on one VF under the general policy (contention weight 2): a moves
/// 10 % more than b, b waits for a CPU half of its runnable time.
private func contendedPair(withContention: Bool) -> Trace {
  var trace = Trace(intervalSeconds: 1, poolSizes: ["default": 1],
                    vms: [VMIdentity(uuid: "a", name: "a"), VMIdentity(uuid: "b", name: "b")])
  for t in 1...600 {
    let start = trace.samples.count
    trace.samples.append(known(0, Double(t), bytes: UInt64(t) * 5_500_000, contention: withContention ? 0.1 : nil))
    trace.samples.append(known(1, Double(t), bytes: UInt64(t) * 5_000_000, contention: withContention ? 0.5 : nil))
    trace.cycles.append(TraceCycle(at: Instant(seconds: Double(t)), samples: start..<trace.samples.count, present: [0, 1]))
  }
  return trace
}

@Test("replay feeds a trace's contention to the engine: the contended VM gets the VF, and the weighted share exceeds the plain one")
func contentionReplays() throws {
  let policy = try bundled("general")
  let contended = replay(contendedPair(withContention: true), policy: policy)
  #expect(contended.swaps.first.map { [$0.vm, "\($0.verb)"] } == ["b", "promote"])
  #expect(!contended.swaps.contains { $0.vm == "a" && $0.verb == .promote })
  let plain = try #require(contended.eligibleVFByteShare)
  let weighted = try #require(contended.contentionWeightedEligibleVFByteShare)
  #expect(weighted > plain, "weighted \(weighted) vs plain \(plain)")
  // b (weight 0.5) rode the VF, a (0.1) did not: weighted ≈ 0.5 / 0.6 of b's part.
  #expect(weighted > 0.8 && plain < 0.5, "weighted \(weighted), plain \(plain)")

  // The same traffic without the field: traffic alone decides, no weighted figure.
  let alone = replay(contendedPair(withContention: false), policy: policy)
  #expect(alone.swaps.first?.vm == "a")
  #expect(alone.contentionWeightedEligibleVFByteShare == nil)
  #expect(alone.eligibleVFByteShare != nil)
}

@Test("replay: a VM's contention stands when who is present changes (the observation is rebuilt), as live; a newcomer has none")
func contentionCarriesOverPresenceChanges() throws {
  let ids = ["a", "b", "c"].map { VMIdentity(uuid: $0, name: $0) }
  var sim = ReplaySimulator(ids, pools: ["default": PoolCapacity(total: 1)])
  var changed = sim.enter([0, 1], vms: ids)
  #expect(changed)
  sim.observation.vms[0].contention = 0.2
  sim.observation.vms[1].contention = 0.9
  changed = sim.enter([0, 1, 2], vms: ids)
  #expect(changed)
  #expect(sim.observation.vms.map(\.contention) == [0.2, 0.9, nil])
  _ = sim.enter([1, 2], vms: ids)
  #expect(sim.observation.vms.map(\.contention) == [0.9, nil])
  // A VM that left and came back is a restarted domain: its old figure is gone.
  _ = sim.enter([0, 1], vms: ids)
  #expect(sim.observation.vms.map(\.contention) == [nil, 0.9])
}

private let cpuHeader = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"

@Test("GWA-T-12 --host-cores: each cycle's contention is max(0, D − N) / D of the cores its rows used; without it, none")
func gwaHostCoresEstimate() throws {
  // VM 1: 4 cores at 50 %, then 25 %; VM 2: 8 cores at 75 %, then 25 %, then alone at 100 %.
  let one = cpuHeader + "\n1000;4;1;1;50;1;1;0;0;1;1\n1300;4;1;1;25;1;1;0;0;1;1\n"
  let two = cpuHeader + "\n1001;8;1;1;75;1;1;0;0;1;1\n1299;8;1;1;25;1;1;0;0;1;1\n1600;8;1;1;100;1;1;0;0;1;1\n"
  let files = [GWAT12.File(name: "1.csv", text: one), GWAT12.File(name: "2.csv", text: two)]
  let t = try GWAT12.trace(files, source: "x", hostCores: 4)
  #expect(t.version == 2)
  // Cycle 0: 2 + 6 = 8 cores on 4 → 0.5. Cycle 1: 1 + 2 = 3 → 0. Cycle 2: 8 alone → 0.5.
  let perCycle = t.cycles.map { c in t.samples[c.samples].map { $0.contention } }
  #expect(perCycle == [[0.5, 0.5], [0, 0], [0.5]])
  #expect(try Trace.parse(t.render(), file: "t") == t)
  #expect(t.render().hasPrefix("vfshift-trace 2\n"))

  let none = try GWAT12.trace(files, source: "x")
  #expect(none.version == 1)
  #expect(!none.samples.contains { $0.contention != nil })
  #expect(none.render().hasPrefix("vfshift-trace 1\n"))
  #expect(GWAT12.estimatedContention(demand: 0, hostCores: 4) == 0)
  #expect(GWAT12.estimatedContention(demand: 3, hostCores: 1) == 0.6667)
  #expect(GWAT12.estimatedContention(demand: .infinity, hostCores: 1) == 1)
  // Each factor a number, their product past any Double: an error at the row, not a NaN in the trace.
  let huge = cpuHeader + "\n1000;1e200;1;1;1e200;1;1;0;0;1;1\n"
  #expect { try GWAT12.trace([GWAT12.File(name: "9.csv", text: huge)], source: "x", hostCores: 4) } throws: {
    "\($0)" == "9.csv:2: CPU cores × CPU usage % is beyond any number of cores"
  }
}

@Test("GWA-T-12 --host-cores on files without the CPU columns names the file and the columns")
func gwaHostCoresNeedsCPUColumns() {
  let text = "Timestamp [ms];Network received throughput [KB/s];Network transmitted throughput [KB/s]\n0;1;1\n300;1;1\n"
  let files = [GWAT12.File(name: "d/7.csv", text: text)]
  #expect { try GWAT12.trace(files, source: "x", hostCores: 2) } throws: {
    "\($0)" == "d/7.csv:1: no CPU columns: estimating contention (--host-cores) needs 'CPU cores' and 'CPU usage [%]' in the header"
  }
  #expect(throws: Never.self) { try GWAT12.trace(files, source: "x") }
}

@Test("GWA-T-12 extract with --host-cores: every figure in 0…1, fewer cores never less contention")
func gwaExtractHostCores() throws {
  let files = gwaExtract.map { GWAT12.File(name: $0.name, text: $0.text) }
  let small = try GWAT12.trace(files, source: "x", hostCores: 1)
  let large = try GWAT12.trace(files, source: "x", hostCores: 64)
  #expect(small.samples.count == large.samples.count)
  for (s, l) in zip(small.samples, large.samples) {
    let cs = try #require(s.contention), cl = try #require(l.contention)
    #expect((0...1).contains(cs) && (0...1).contains(cl))
    #expect(cs >= cl)
  }
  #expect(small.samples.contains { ($0.contention ?? 0) > 0 })
  #expect(large.samples.allSatisfy { $0.contention == 0 })
  // The network side is untouched by the estimate.
  #expect(small.samples.map(\.reading) == (try GWAT12.trace(files, source: "x")).samples.map(\.reading))
}
