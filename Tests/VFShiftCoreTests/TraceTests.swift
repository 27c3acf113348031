import Testing
import VFShiftCore
import VFShiftFiles

@Test("a trace survives render → parse unchanged")
func traceRoundTrip() throws {
  var trace = PaperScenario.trace(seconds: 30)
  trace.vms[0].name = "name with space#1"
  trace.vms[0].uuid = trace.vms[0].name
  let text = trace.render()
  let again = try Trace.parse(text, file: "t")
  #expect(again == trace)
}

@Test("VMs that come and go are declared, retired and brought back")
func traceLifetimes() throws {
  let text = """
    vfshift-trace 1
    interval 1
    vm a
    vm b label=high
    c 1
    s 1 a vnet0 10 10 1 1
    s 1 b vnet1 10 10 - -
    gone b
    c 2
    s 2 a vnet0 20 20 2 2
    back b
    c 3
    s 3 b ?
    """
  let t = try Trace.parse(text, file: "t")
  #expect(t.cycles.map(\.present) == [[0, 1], [0], [0, 1]])
  #expect(t.vms[1].label == "high")
  #expect(t.samples[1].reading == .known(source: "vnet1", counters: VMCounters(rxBytes: 10, txBytes: 10, rxPackets: nil, txPackets: nil), at: Instant(seconds: 1)))
  #expect(t.samples.last?.reading == .unknown)
  #expect(try Trace.parse(t.render(), file: "t") == t)
}

struct BadTrace: Sendable, CustomTestStringConvertible {
  var what: String
  var text: String
  var expect: String
  var testDescription: String { what }
}

let badTraces: [BadTrace] = [
  BadTrace(what: "empty file", text: "", expect: "t:1: empty file"),
  BadTrace(what: "not a trace", text: "hello\n", expect: "t:1: not a vfshift trace"),
  BadTrace(what: "a later version", text: "vfshift-trace 9\n", expect: "t:1: trace version 9 is not supported"),
  BadTrace(what: "truncated sample line", text: "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 10", expect: "t:4: a sample has 5 fields, expected 8"),
  BadTrace(what: "wrong type in a counter", text: "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 ten 10 1 1", expect: "t:4: byte counters must be whole numbers"),
  BadTrace(what: "negative counter", text: "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 -5 10 1 1", expect: "t:4: byte counters must be whole numbers ≥ 0"),
  BadTrace(what: "undeclared VM", text: "vfshift-trace 1\nc 1\ns 1 z vnet0 1 1 1 1", expect: "t:3: sample names vm 'z', which is not declared"),
  BadTrace(what: "time running backwards", text: "vfshift-trace 1\nc 5\nc 4", expect: "t:3: cycle time 4 does not move forward"),
  BadTrace(what: "unknown line kind", text: "vfshift-trace 1\nbogus 1", expect: "t:2: unknown line kind 'bogus'"),
  BadTrace(what: "unknown vm attribute", text: "vfshift-trace 1\nvm a colour=red", expect: "t:2: unknown vm attribute 'colour'"),
  BadTrace(what: "sample before any cycle", text: "vfshift-trace 1\nvm a\ns 1 a ?", expect: "t:3: a sample comes before the first cycle"),
  BadTrace(what: "two samples for one VM in a cycle", text: "vfshift-trace 1\nvm a\nc 1\ns 1 a ?\ns 1 a ?", expect: "t:5: two samples for vm 'a' in one cycle"),
]

@Test(arguments: badTraces)
func badTraceIsReported(_ row: BadTrace) {
  #expect(throws: TraceError.self, "\(row.what)") { try Trace.parse(row.text, file: "t") }
  do { _ = try Trace.parse(row.text, file: "t") } catch {
    #expect(error.description.hasPrefix(row.expect), "\(row.what): got \(error.description)")
  }
}

let gwaHeader = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"

@Test("GWA-T-12 rows become cumulative byte counters: KB/s × 1,000 × elapsed seconds, packets unknown")
func gwaConversion() throws {
  let text = gwaHeader + """

    1000;\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t1.0;\t2.0
    1300;\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t10.0;\t20.0
    1601;\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t0.5;\t0.0
    """
  let t = try GWAT12.trace([GWAT12.File(name: "7.csv", text: text)], source: "x")
  #expect(t.vms.map(\.name) == ["7"])
  #expect(t.cycles.count == 3)
  let last = t.samples.last!.reading
  guard case let .known(_, c, at) = last else { Issue.record("unknown"); return }
  #expect(at == Instant(seconds: 1601))
  #expect(c.rxBytes == 10 * 1000 * 300 + UInt64(0.5 * 1000 * 301))
  #expect(c.txBytes == 20 * 1000 * 300)
  #expect(c.rxPackets == nil)
}

@Test("GWA-T-12: a gap in a VM's rows restarts its counters instead of smearing the average")
func gwaGap() throws {
  let text = gwaHeader + "\n0;1;1;1;1;1;1;0;0;1.0;0\n300;1;1;1;1;1;1;0;0;1.0;0\n3000;1;1;1;1;1;1;0;0;1.0;0\n"
  let t = try GWAT12.trace([GWAT12.File(name: "1.csv", text: text)], source: "x")
  let sources = t.samples.compactMap { if case let .known(s, _, _) = $0.reading { s } else { nil } }
  #expect(sources == ["gwa0", "gwa0", "gwa1"])
}

@Test("GWA-T-12: a bad row names the file, the line and the field")
func gwaBadRows() {
  let truncated = gwaHeader + "\n0;1;1;1;1;1;1;0;0;1.0;0\n300;1;1;1"
  #expect { try GWAT12.trace([GWAT12.File(name: "3.csv", text: truncated)], source: "x") } throws: {
    "\($0)" == "3.csv:3: 4 fields, expected 11 separated by ';' (truncated row?)"
  }
  let word = gwaHeader + "\n0;1;1;1;1;1;1;0;0;lots;0\n"
  #expect { try GWAT12.trace([GWAT12.File(name: "3.csv", text: word)], source: "x") } throws: {
    "\($0)".hasPrefix("3.csv:2: network received KB/s 'lots' is not a number")
  }
  #expect { try GWAT12.trace([GWAT12.File(name: "3.csv", text: "hello\n")], source: "x") } throws: {
    "\($0)".hasPrefix("3.csv:1: not a GWA-T-12 file")
  }
}

@Test("the published GWA-T-12 files import as published: every VM, 300 s cycles")
func gwaPublishedDirectory() throws {
  let trace = try loadTrace(gwaExtractDirectory)
  #expect(trace.vms.count == 15)
  #expect(trace.intervalSeconds == 300)
  // 288 rows a VM, on clocks a few seconds apart: more cycles than rows, each VM in ~288 of them.
  #expect(trace.samples.count >= 15 * 288)
  // The timestamps are Unix seconds despite the "[ms]" header: July 2013.
  #expect(trace.cycles.first!.at.seconds > 1_372_000_000 && trace.cycles.first!.at.seconds < 1_373_000_000)
}

@Test("two VMs of one name (a domain re-created with a new UUID) render under distinct keys and parse back")
func traceRoundTripSameName() throws {
  var trace = PaperScenario.trace(seconds: 10)
  trace.vms[1].name = trace.vms[0].name
  let text = trace.render()
  #expect(text.contains("vm \(trace.vms[0].name) uuid="))
  #expect(text.contains("vm \(trace.vms[0].name)~2 uuid=\(trace.vms[1].uuid) name=\(trace.vms[0].name)"))
  #expect(try Trace.parse(text, file: "t") == trace)
}

@Test("a source with a space, a newline and a '#' is one header line and reads back")
func traceSourceEncoded() throws {
  var trace = PaperScenario.trace(seconds: 3)
  trace.source = "recorded by vfshift on host a\nline two # not a comment"
  let text = trace.render()
  #expect(text.split(separator: "\n").filter { $0.hasPrefix("source ") }.count == 1)
  #expect(try Trace.parse(text, file: "t") == trace)
}

@Test("a stream written cycle by cycle (as `record` does) reads back as the trace, and renders to the same text")
func traceWriterStream() throws {
  // Two VMs named alike (re-created with a new UUID), one first seen late,
  // one leaving and coming back, a stale reading (no line) and an unknown one.
  let ids = [VMIdentity(uuid: "u-a", name: "web"), VMIdentity(uuid: "u-b", name: "db", label: "high"),
             VMIdentity(uuid: "u-c", name: "web")]
  func known(_ vm: Int32, _ t: Double) -> TraceSample {
    TraceSample(vm: vm, reading: .known(source: "vnet \(vm)", counters: VMCounters(rxBytes: UInt64(t), txBytes: 1, rxPackets: nil, txPackets: 2),
                                        at: Instant(seconds: t)))
  }
  let stream: [(Double, [Int32], [TraceSample])] = [
    (1, [0], [known(0, 1)]),
    (2, [0, 1], [known(0, 2), TraceSample(vm: 1, reading: .stale)]),
    (3, [1], [TraceSample(vm: 1, reading: .unknown)]),
    (4, [1, 0, 2], [known(1, 4), known(0, 4), known(2, 4)]),
  ]
  var writer = TraceWriter()
  var text = TraceWriter.header(source: "recorded by vfshift on h", intervalSeconds: 1, poolSizes: ["p": 2])
  for (t, present, samples) in stream {
    text += writer.cycle(at: Instant(seconds: t), present: present, identity: { ids[Int($0)] }, samples: samples)
  }
  let trace = try Trace.parse(text, file: "t")
  #expect(trace.vms == ids)
  #expect(trace.source == "recorded by vfshift on h")
  #expect(trace.cycles.map(\.present) == stream.map(\.1))
  #expect(trace.samples == stream.flatMap(\.2).filter { if case .stale = $0.reading { false } else { true } })
  #expect(trace.render() == text)
}

@Test("the bundled traces render back to their own text")
func bundledTracesRenderBack() throws {
  for name in ["paper-8vm", "bitbrains-8vm"] {
    let path = "\(repoRoot)/policies/traces/\(name).trace"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(try Trace.parse(text, file: path).render() == text, "\(name)")
  }
}
