import Foundation
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftTestSupport

// Issue #14 part 3 as an operator sees it: the contention-weighted share in
// whatif's table, JSON and report; `trace import --host-cores`; `record`.

private func vfshift(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
  let r = try vfshiftCLI(args)
  return (r.status, r.stdout, r.stderr)
}

private func policies(_ json: String) throws -> [[String: Any]] {
  let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
  return try #require(doc["policies"] as? [[String: Any]])
}

private let general = "\(TestBed.packageRoot.path)/policies/general.json"

@Test("whatif on the bundled trace (no contention in it): the weighted share is '—' in the table and null, not absent, in JSON")
func whatifWeightedShareWithoutContention() throws {
  let table = try vfshift(["whatif"])
  #expect(table.code == 0)
  let row = try #require(table.out.split(separator: "\n").first { $0.hasPrefix("  weighted by CPU contention") })
  #expect(row.split(separator: " ").dropFirst(4) == ["—", "—", "—"], "\(row)")
  let json = try vfshift(["whatif", "--json"])
  let rows = try policies(json.out)
  #expect(rows.count == 3)
  for p in rows {
    #expect(p.keys.contains("contentionWeightedEligibleVFByteShare"), "\(p["name"] ?? "?")")
    #expect(p["contentionWeightedEligibleVFByteShare"] is NSNull, "\(p["name"] ?? "?")")
  }
}

/// Two VMs, one VF: a moves 10 % more, b waits for a CPU half the time.
private func contendedTrace() -> String {
  var trace = Trace(source: "two VMs, one contended", intervalSeconds: 1, poolSizes: ["default": 1],
                    vms: [VMIdentity(uuid: "a", name: "a"), VMIdentity(uuid: "b", name: "b")])
  for t in 1...600 {
    let start = trace.samples.count
    for (v, (rate, c)) in [(5_500_000, 0.1), (5_000_000, 0.5)].enumerated() {
      trace.samples.append(TraceSample(vm: Int32(v), reading: .known(source: "vnet\(v)",
        counters: VMCounters(rxBytes: UInt64(t * rate), txBytes: 0, rxPackets: nil, txPackets: nil), at: Instant(seconds: Double(t))),
        contention: c))
    }
    trace.cycles.append(TraceCycle(at: Instant(seconds: Double(t)), samples: start..<trace.samples.count, present: [0, 1]))
  }
  return trace.render()
}

@Test("whatif on a trace with contention: the weighted share beside the plain one in the table, JSON and the HTML report")
func whatifWeightedShare() throws {
  let scratch = Scratch("contention-whatif")
  let path = scratch.file("contended.trace")
  try contendedTrace().write(toFile: path, atomically: true, encoding: .utf8)
  let json = try vfshift(["whatif", "--trace", path, "--policy", general, "--json"])
  #expect(json.code == 0, "\(json.err)")
  let p = try #require(try policies(json.out).first)
  let weighted = try #require(p["contentionWeightedEligibleVFByteShare"] as? Double)
  let plain = try #require(p["eligibleVFByteShare"] as? Double)
  #expect(weighted > plain, "weighted \(weighted), plain \(plain)")

  let report = scratch.file("r.html")
  let table = try vfshift(["whatif", "--trace", path, "--policy", general, "--report", report])
  #expect(table.code == 0)
  let row = try #require(table.out.split(separator: "\n").first { $0.hasPrefix("  weighted by CPU contention") })
  #expect(row.hasSuffix(String(format: "%.1f %%", weighted * 100)), "\(row)")
  let html = try String(contentsOfFile: report, encoding: .utf8)
  #expect(html.contains("weighted by CPU contention"))
  #expect(html.contains(String(format: "%.1f %%", weighted * 100)))
}

/// Two VMs of 2 cores each at 100 % CPU: 4 cores of demand.
private func busyGWA(_ scratch: Scratch) throws -> String {
  let header = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"
  let dir = scratch.file("gwa")
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  for (vm, rx) in [(1, 9000), (2, 8000)] {
    let rows = (0..<24).map { "\(1372629804 + 300 * $0);\t2;\t5851.9;\t5851.9;\t100;\t8218624.0;\t1034592.8;\t0;\t0;\t\(rx);\t2.0" }
    try (header + "\n" + rows.joined(separator: "\n") + "\n").write(toFile: "\(dir)/\(vm).csv", atomically: true, encoding: .utf8)
  }
  return dir
}

@Test("trace import --host-cores writes a version-2 trace whose samples carry the model's estimate; whatif takes the flag on GWA-T-12 input only")
func importHostCores() throws {
  let scratch = Scratch("contention-import")
  let dir = try busyGWA(scratch)
  let out = scratch.file("t.trace")
  let imported = try vfshift(["trace", "import", dir, "--out", out, "--host-cores", "2"])
  #expect(imported.code == 0, "\(imported.err)")
  let text = try String(contentsOfFile: out, encoding: .utf8)
  #expect(text.hasPrefix("vfshift-trace 2\n"))
  let trace = try Trace.parse(text, file: out)
  #expect(trace.source.hasSuffix("; contention estimated for a host of 2 cores (a model, not a measurement)"), "\(trace.source)")
  // 4 cores of demand on 2: half the runnable time waiting.
  #expect(trace.samples.count == 48 && trace.samples.allSatisfy { $0.contention == 0.5 })

  let plain = try vfshift(["trace", "import", dir, "--out", scratch.file("u.trace")])
  #expect(plain.code == 0)
  #expect(try String(contentsOfFile: scratch.file("u.trace"), encoding: .utf8).hasPrefix("vfshift-trace 1\n"))

  // Straight from the directory: the same figures as from the imported trace.
  let direct = try vfshift(["whatif", "--trace", dir, "--host-cores", "2", "--policy", general, "--json"])
  let viaFile = try vfshift(["whatif", "--trace", out, "--policy", general, "--json"])
  let d = try #require(try policies(direct.out).first), f = try #require(try policies(viaFile.out).first)
  #expect(d["contentionWeightedEligibleVFByteShare"] as? Double != nil)
  #expect(d["contentionWeightedEligibleVFByteShare"] as? Double == f["contentionWeightedEligibleVFByteShare"] as? Double)

  let onTrace = try vfshift(["whatif", "--trace", out, "--host-cores", "2", "--policy", general])
  #expect(onTrace.code == 1)
  #expect(onTrace.err.contains("\(out): is a vfshift trace: --host-cores estimates contention for GWA-T-12 files only"), "\(onTrace.err)")
  let zero = try vfshift(["trace", "import", dir, "--out", scratch.file("z.trace"), "--host-cores", "0"])
  #expect(zero.code == 64)
  #expect(zero.err.hasPrefix("error: --host-cores must be a whole number > 0, got '0'\n"), "\(zero.err)")
}

@Test("record: the contention a cycle observed round-trips (record → parse → the same figures, and render gives the file back)")
func recordContention() throws {
  let path = NSTemporaryDirectory() + "vfshift-record-contention-\(getpid()).trace"
  defer { try? FileManager.default.removeItem(atPath: path) }
  let recorder = try TraceRecorder(path: path, interval: 1, pools: ["p": 1])
  let web = VMIdentity(uuid: "u-web", name: "web"), db = VMIdentity(uuid: "u-db", name: "db")
  func vm(_ id: VMIdentity, _ t: Double, _ contention: Double?) -> VMObservation {
    VMObservation(identity: id, placement: .virtio, reading: .known(source: "vnet0",
      counters: VMCounters(rxBytes: UInt64(t) * 100, txBytes: 1, rxPackets: 1, txPackets: 1), at: Instant(seconds: t)),
      contention: contention)
  }
  // Not yet measured, then measured; a figure past 1 (a clock skew) is written as 1; an unknown reading keeps its figure.
  recorder.record(Observation(vms: [vm(web, 1, nil), vm(db, 1, nil)], pools: [:]), now: Instant(seconds: 1))
  recorder.record(Observation(vms: [vm(web, 2, 0.125), vm(db, 2, 1.5)], pools: [:]), now: Instant(seconds: 2))
  recorder.record(Observation(vms: [VMObservation(identity: web, placement: .vf(pool: "p"), reading: .unknown, contention: 0.25),
                                    vm(db, 3, 0)], pools: [:]), now: Instant(seconds: 3))
  try recorder.handle.synchronize()
  let text = try String(contentsOfFile: path, encoding: .utf8)
  let trace = try Trace.parse(text, file: path)
  #expect(text.hasPrefix("vfshift-trace 2\n"))
  #expect(trace.samples.map(\.contention) == [nil, nil, 0.125, 1, 0.25, 0])
  #expect(trace.render() == text)
}
