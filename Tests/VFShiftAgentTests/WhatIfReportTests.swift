import Foundation
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftFiles
import VFShiftTestSupport

/// Debian's headless Chromium, for what a real browser makes of the report.
/// Locally a missing browser skips, saying so; with CI=true the test runs and fails.
enum Browser {
  static let path: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  static var enabled: Bool {
    if TestBed.isCI || path != nil { return true }
    FileHandle.standardError.write(Data("skipped: what-if report browser tests: no chromium (apt-get install chromium; CI=true fails instead)\n".utf8))
    return false
  }

  /// The DOM after Chromium loaded and laid out `file`, serialised.
  static func dumpDOM(_ file: String) throws -> String {
    let chromium = try #require(path, "chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    // A fresh profile per run, removed after; as root Chromium refuses to start sandboxed.
    let profile = Scratch("chromium-profile")
    var argv = [chromium, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--user-data-dir=\(profile.path)", "--dump-dom", URL(fileURLWithPath: file).absoluteString]
    if geteuid() == 0 { argv.insert("--no-sandbox", at: 2) }
    let p = Process()
    // timeout(1): a browser that hangs fails the test after two minutes instead of stalling the suite.
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = ["120"] + argv
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run()
    let dom = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    try #require(p.terminationStatus == 0, "chromium exited \(p.terminationStatus): \(log.suffix(2000))")
    return dom
  }
}

private func vfshift(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
  let r = try vfshiftCLI(args)
  return (r.status, r.stdout, r.stderr)
}

private func count(_ needle: String, in text: some StringProtocol) -> Int {
  text.components(separatedBy: needle).count - 1
}

private func integers(_ attribute: String, in text: String) -> [Int] {
  let re = try! NSRegularExpression(pattern: "\(attribute)=\"(\\d+)\"")
  return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
    Int(text[Range($0.range(at: 1), in: text)!])!
  }
}

/// The DOM cut at each policy section, by policy name.
private func sections(_ dom: String) -> [(name: String, html: String)] {
  dom.components(separatedBy: "<section class=\"policy\"").dropFirst().map { part in
    let html = part.components(separatedBy: "</section>")[0]
    let name = html.components(separatedBy: "data-policy=\"")[1].components(separatedBy: "\"")[0]
    return (name, html)
  }
}

/// How a page fetches anything: none of it may be in the report.
private func expectSelfContained(_ dom: String) {
  for needle in ["<script", "<link", "<img", "<iframe", "<object", "<embed", "<image", "<use", " src=", " href=",
                 "xlink:href", "url(", "@import", "http://", "https://"] {
    #expect(!dom.contains(needle), "the report must fetch nothing, but its DOM has \(needle)")
  }
}

/// The text table's rows (header first), cells split on runs of 3+ spaces.
private func tableRows(_ text: String) -> [[String]] {
  let lines = text.components(separatedBy: "\n")
  guard let rule = lines.firstIndex(where: { $0.hasPrefix("─") }) else { return [] }
  let body = lines[(rule + 1)...].prefix { !$0.isEmpty }
  return ([lines[rule - 1]] + body).map { line in
    line.components(separatedBy: "   ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }
}

private func policyFigures(_ json: String) throws -> [(name: String, swaps: Int, usableVFs: Int)] {
  let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
  let policies = try #require(doc["policies"] as? [[String: Any]])
  return policies.map { ($0["name"] as! String, $0["swaps"] as! Int, $0["usableVFs"] as! Int) }
}

@Test("whatif --report on the bundled paper trace: one section per policy, a lane per usable VF, every swap marked, the text table's figures",
      .enabled(if: Browser.enabled))
func reportOnPaperTrace() throws {
  let scratch = Scratch("report-paper")
  let root = TestBed.packageRoot.path
  let common = ["whatif", "--trace", "\(root)/policies/traces/paper-8vm.trace"]
    + ["paper-multinetwork", "all-sriov", "general"].flatMap { ["--policy", "\(root)/policies/\($0).json"] }
  let report = scratch.file("whatif.html")

  let plain = try vfshift(common + ["--json"])
  let withReport = try vfshift(common + ["--json", "--report", report])
  #expect(plain.status == 0 && withReport.status == 0, "\(plain.err)\(withReport.err)")
  #expect(withReport.out == plain.out, "--report leaves the JSON byte for byte as it was")
  #expect(withReport.err.contains("report written to \(report)"))
  let table = tableRows(try vfshift(common + ["--report", report]).out)
  let figures = try policyFigures(plain.out)
  #expect(figures.count == 3)

  let dom = try Browser.dumpDOM(report)
  expectSelfContained(dom)
  #expect(dom.contains("600 columns"), "the page says time is downsampled (3,600 cycles into 600 columns)")

  let found = sections(dom)
  #expect(found.map(\.name) == figures.map(\.name))
  for (section, policy) in zip(found, figures) {
    // The trace has one pool: one lane per usable VF for the policy, as many for the oracle, none over the cap.
    #expect(count("class=\"lane\" data-holder=\"policy\"", in: section.html) == policy.usableVFs, "\(policy.name)")
    #expect(count("class=\"lane\" data-holder=\"oracle\"", in: section.html) == policy.usableVFs, "\(policy.name)")
    #expect(!section.html.contains("over cap"), "\(policy.name)")
    // Markers group swaps by column; their counts add up to the replay's swaps.
    let marked = integers("data-swaps", in: section.html)
    #expect(marked.reduce(0, +) == policy.swaps, "\(policy.name)")
    #expect(marked.count <= 2 * 600, "\(policy.name)")
    #expect(count("<g class=\"vm\"", in: section.html) == 8, "all 8 VMs get a row; none folded")
    #expect(!section.html.contains("<details"))
    #expect(count("class=\"hold\"", in: section.html) > 0, "\(policy.name) draws who held a VF")
  }

  // The summary table: the text table's rows and cells, in order.
  let summary = try #require(dom.components(separatedBy: "<table id=\"summary\">").dropFirst().first?
    .components(separatedBy: "</table>").first)
  let domRows = summary.components(separatedBy: "<tr>").dropFirst().map { row in
    row.components(separatedBy: ["<", ">"]).enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
      .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
      .map { $0.replacingOccurrences(of: "&amp;", with: "&").replacingOccurrences(of: "&#39;", with: "'") }
  }
  #expect(domRows.count == table.count && table.count > 10)
  for (d, t) in zip(domRows, table) where t.count == 4 {
    #expect(d == t, "summary row '\(t[0])'")
  }
}

@Test("whatif --report for 250 VMs over a month: the 20 busiest drawn, busiest first, the rest folded; at most 600 columns",
      .enabled(if: Browser.enabled))
func reportOnLargeTrace() throws {
  let scratch = Scratch("report-large")
  // 250 VMs, hourly cycles for 30 days (720 > 600 columns). Most VMs idle
  // along with rare bursts; the five "hot" ones, declared last so that the
  // order is not the declaration order, are busy by a fixed ranking.
  var rng = SplitMix64(seed: 13)
  var trace = Trace(source: "synthetic: 250 VMs, 30 days, hourly", intervalSeconds: 3600, poolSizes: ["default": 8])
  let names = (1...245).map { String(format: "vm%03d", $0) } + (1...5).map { "hot\($0)" }
  trace.vms = names.map { VMIdentity(uuid: $0, name: $0) }
  var total = [UInt64](repeating: 0, count: names.count)
  for hour in 0..<720 {
    let start = trace.samples.count
    for v in names.indices {
      let hot = v >= 245
      let rate: Double = hot ? Double(250 - v) * 20e6 * (0.5 + rng.unit())
        : rng.next() % 50 == 0 ? Double(rng.next() % 8 + 1) * 1e6 : 5_000 * rng.unit()
      total[v] += UInt64(rate * 3600)
      trace.samples.append(TraceSample(vm: Int32(v), reading: .known(
        source: "vnet\(v)", counters: VMCounters(rxBytes: total[v], txBytes: 0, rxPackets: nil, txPackets: nil),
        at: Instant(seconds: Double(hour * 3600)))))
    }
    trace.cycles.append(TraceCycle(at: Instant(seconds: Double(hour * 3600)), samples: start..<trace.samples.count,
                                   present: names.indices.map { Int32($0) }))
  }
  let tracePath = scratch.file("month.trace")
  try trace.render().write(toFile: tracePath, atomically: true, encoding: .utf8)
  let report = scratch.file("month.html")
  let run = try vfshift(["whatif", "--trace", tracePath, "--policy", "\(TestBed.packageRoot.path)/policies/general.json",
                         "--json", "--report", report])
  #expect(run.status == 0, "\(run.err)")
  let policy = try #require(try policyFigures(run.out).first)

  let dom = try Browser.dumpDOM(report)
  expectSelfContained(dom)
  #expect(dom.contains("600 columns"))
  let section = try #require(sections(dom).first)
  #expect(section.name == "general")
  let rows = section.html.components(separatedBy: "<g class=\"vm\" data-vm=\"").dropFirst()
    .map { $0.components(separatedBy: "\"")[0] }
  #expect(rows.count == 20)
  #expect(Array(rows.prefix(5)) == ["hot1", "hot2", "hot3", "hot4", "hot5"], "busiest first")
  #expect(count("<g class=\"vm others\"", in: section.html) == 1)
  #expect(section.html.contains("<summary>230 other VMs"))
  let folded = try #require(section.html.components(separatedBy: "<details").dropFirst().first)
  #expect(count("<tr>", in: folded) == 231, "a header and one row per folded VM")
  #expect(integers("data-swaps", in: section.html).reduce(0, +) == policy.swaps)
  // Bounded however long the trace: each lane and each strip at most one shape per column.
  #expect(count("class=\"lane\"", in: section.html) == 2 * policy.usableVFs)
  for lane in section.html.components(separatedBy: "<g class=\"lane\"").dropFirst() {
    #expect(count("class=\"hold\"", in: lane.components(separatedBy: "</g>")[0]) <= 600)
  }
  #expect(count("class=\"heat\"", in: section.html) <= 21 * 600)
  let size = try #require(try FileManager.default.attributesOfItem(atPath: report)[.size] as? Int)
  #expect(size < 3_000_000, "report is \(size) bytes")
}

@Test("whatif --report to a path it cannot write fails naming the path, before and after the replay")
func reportUnwritable() throws {
  let scratch = Scratch("report-unwritable")
  let root = TestBed.packageRoot.path
  let args = ["whatif", "--trace", "\(root)/policies/traces/bitbrains-8vm.trace", "--policy", "\(root)/policies/general.json"]
  let missingDir = scratch.file("no-such-dir/whatif.html")
  let a = try vfshift(args + ["--report", missingDir])
  #expect(a.status == 1)
  #expect(a.err.contains("error: \(missingDir): cannot be written"), "\(a.err)")
  #expect(a.out.isEmpty, "nothing replayed")
  // A directory where the file should go passes the early check and fails at the write.
  let a2 = try vfshift(args + ["--report", scratch.path])
  #expect(a2.status == 1)
  #expect(a2.err.contains("error: \(scratch.path): cannot be written"), "\(a2.err)")
}

@Test("the timeline is opt-in and changes no figure; neither the policy nor the oracle ever holds more VFs than usable")
func timelineIsFaithful() throws {
  let root = TestBed.packageRoot.path
  for traceName in ["bitbrains-8vm", "paper-8vm"] {
    let trace = try loadTrace("\(root)/policies/traces/\(traceName).trace")
    for name in ["paper-multinetwork", "all-sriov", "general"] {
      let policy = try loadPolicy("\(root)/policies/\(name).json")
      let plain = replay(trace, policy: policy)
      var recorded = replay(trace, policy: policy, options: ReplayOptions(timelineColumns: 600))
      #expect(plain.timeline == nil)
      let timeline = try #require(recorded.timeline)
      recorded.timeline = nil
      #expect(recorded == plain, "\(traceName) \(name)")
      #expect(timeline.columns.count == 600)
      // Replaying the changes: holders per pool never exceed the pool's usable VFs,
      // and the policy's promotions are the swaps.
      for holder in [ReplayTimeline.Holder.policy, .oracle] {
        var holding = Set<Int>(), peak = 0
        for c in timeline.changes where c.holder == holder {
          if c.holds { holding.insert(c.vm) } else { holding.remove(c.vm) }
          peak = max(peak, holding.count)
        }
        #expect(peak <= timeline.usable[0], "\(traceName) \(name) \(holder)")
        #expect(peak > 0, "\(traceName) \(name) \(holder)")
      }
      #expect(timeline.changes.filter { $0.holder == .policy && $0.holds }.count
        == plain.swaps.filter { $0.verb == .promote }.count)
      #expect(zip(timeline.changes, timeline.changes.dropFirst()).allSatisfy { $0.cycle <= $1.cycle }, "in cycle order")
      #expect(timeline.bytes.reduce(0, +) == plain.classes.map(\.bytes).reduce(0, +), "every measured byte drawn")
    }
  }
}

@Test("a VM promoted and gone by the next cycle never holds a VF in the timeline")
func timelinePromotedThenGone() throws {
  // Two VMs under all-sriov (every VM pinned to a VF): both are promoted at
  // the first decision; vm2 leaves before the interval its promotion was for.
  var trace = Trace(intervalSeconds: 1, poolSizes: ["x540": 4])
  trace.vms = [VMIdentity(uuid: "u1", name: "vm1"), VMIdentity(uuid: "u2", name: "vm2")]
  for t in 1...10 {
    let present: [Int32] = t == 1 ? [0, 1] : [0]
    let start = trace.samples.count
    for v in present {
      trace.samples.append(TraceSample(vm: v, reading: .known(source: "vnet\(v)",
        counters: VMCounters(rxBytes: UInt64(t) * 1_000_000, txBytes: 0, rxPackets: nil, txPackets: nil),
        at: Instant(seconds: Double(t)))))
    }
    trace.cycles.append(TraceCycle(at: Instant(seconds: Double(t)), samples: start..<trace.samples.count, present: present))
  }
  let policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/all-sriov.json")
  let report = replay(trace, policy: policy, options: ReplayOptions(timelineColumns: 600))
  try #require(report.swaps.contains { $0.verb == .promote && $0.vm == "vm2" && $0.at == Instant(seconds: 1) },
               "the scenario needs vm2 promoted at the first cycle: \(report.swaps)")
  let timeline = try #require(report.timeline)
  #expect(!timeline.changes.contains { $0.vm == 1 && $0.holder == .policy && $0.holds })
  #expect(timeline.changes.contains { $0.vm == 0 && $0.holder == .policy && $0.holds && $0.cycle == 1 })
}
