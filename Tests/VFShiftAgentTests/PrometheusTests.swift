import Foundation
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftFiles
import VFShiftHost
import VFShiftTestSupport

/// What ships for Prometheus (deploy/prometheus, deploy/grafana) against what
/// the agent exports, checked with Prometheus' own tools and a real server.
@Suite("Prometheus: alert rules, exposition, dashboard, a real server scraping the agent", .serialized,
       .enabled(if: Tools.present(["promtool": "prometheus", "prometheus": "prometheus"], for: "the Prometheus tests")))
struct PrometheusTests {
  static let source = TestBed.packageRoot.path
  static let rules = "\(source)/deploy/prometheus/vfshift-alerts.yml"
  static let rulesTest = "\(source)/deploy/prometheus/vfshift-alerts.test.yml"
  static let dashboard = "\(source)/deploy/grafana/vfshift.json"

  /// A registry with every family populated, as after a few cycles and swaps.
  static func populatedMetrics() throws -> Metrics {
    let m = Metrics()
    // A VM the engine has seen twice, so it has a rate: the per-VM families.
    let policy = try loadPolicy("\(source)/policies/general.json")
    for t in [1.0, 2.0] {
      let reading = CounterReading.known(source: "vnet0", counters: VMCounters(rxBytes: UInt64(t) * 1000, txBytes: 0,
                                                                              rxPackets: UInt64(t), txPackets: 0),
                                         at: Instant(seconds: t))
      let observation = Observation(vms: [VMObservation(identity: VMIdentity(uuid: "u7", name: "vm7"), placement: .virtio,
                                                        reading: reading)], pools: [:])
      _ = m.engine.update { decide(&$0, policy: policy, observation: observation, now: Instant(seconds: t)) }
    }
    m.setDryRun(false)
    m.observePools(["vfs": (capacity: 2, used: 1, cap: 1)])
    m.observeWaiting(["vfs": 1])
    m.observeDetachPending(["web \"1\"": 42.5])
    m.swapFinished(verb: .promote, outcome: "done", seconds: 1.7)
    m.swapFinished(verb: .demote, outcome: "attach-failed", seconds: 0.2)
    m.cycleFinished(seconds: 0.004, intervalSeconds: 1)
    m.error("counters")
    m.observeCPUPressure(CPUPressure(pressureFile: "some avg10=1.00 avg60=0.50 avg300=0.25 total=1200000\n"))
    return m
  }

  /// The families vfshift exports (its `# TYPE` lines).
  static func exportedFamilies() -> Set<String> {
    Set(Metrics().render().split(separator: "\n").compactMap { line -> String? in
      guard line.hasPrefix("# TYPE ") else { return nil }
      return String(line.split(separator: " ")[2])
    })
  }

  @Test("promtool check rules accepts the alert rules, and promtool test rules fires each alert on series shaped as vfshift exports them (and not on healthy ones)")
  func rulesCheckAndTest() throws {
    let promtool = try Tools.require("promtool", package: "prometheus")
    let check = try Exec.run([promtool, "check", "rules", Self.rules])
    #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    #expect(check.stdout.contains("SUCCESS: 7 rules found"), "\(check.stdout)")
    let test = try Exec.run([promtool, "test", "rules", Self.rulesTest])
    #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
    // Every alert has a case in the test file.
    func names(_ path: String, _ key: String) throws -> Set<String> {
      Set(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
        let t = line.trimmingCharacters(in: .whitespaces)
        return t.hasPrefix(key) ? t.dropFirst(key.count).trimmingCharacters(in: .whitespaces) : nil
      })
    }
    let alerts = try names(Self.rules, "- alert:")
    #expect(alerts.count == 7)
    #expect(try names(Self.rulesTest, "alertname:") == alerts)
  }

  @Test("the alert rules, their tests and the dashboard name only metric families vfshift exports")
  func onlyExportedMetrics() throws {
    let families = Self.exportedFamilies()
    #expect(families.contains("vfshift_build_info") && families.contains("vfshift_pool_vms_waiting")
            && families.contains("vfshift_detach_pending_seconds") && families.contains("vfshift_cycle_interval_seconds"))
    let name = try Regex("vfshift_[a-z0-9_]+")
    for path in [Self.rules, Self.rulesTest, Self.dashboard] {
      let text = try String(contentsOfFile: path, encoding: .utf8)
      let used = Set(text.matches(of: name).map { String(text[$0.range]) })
      #expect(!used.isEmpty)
      for metric in used {
        let family = ["_bucket", "_sum", "_count"].reduce(metric) { m, suffix in
          m.hasSuffix(suffix) && families.contains(String(m.dropLast(suffix.count))) ? String(m.dropLast(suffix.count)) : m
        }
        #expect(families.contains(family), "\(path): \(metric) is not exported (\(families.sorted()))")
      }
    }
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.dashboard))) as? [String: Any]
    #expect(json?["uid"] as? String == "vfshift")
    #expect((json?["panels"] as? [Any])?.isEmpty == false)
  }

  @Test("promtool check metrics accepts the exposition with every family populated; vfshift_build_info carries the version and Swift")
  func exposition() throws {
    let text = try Self.populatedMetrics().render()
    let check = try Exec.run([try Tools.require("promtool", package: "prometheus"), "check", "metrics"], input: text)
    #expect(check.status == 0 && check.stdout.isEmpty && check.stderr.isEmpty, "promtool: \(check.stdout)\(check.stderr)")
    #expect(text.contains("vfshift_build_info{version=\"\(BuildInfo.version)\",swift=\"\(BuildInfo.swift)\"} 1\n"))
    #expect(text.contains("vfshift_pool_vms_waiting{pool=\"vfs\"} 1\n"))
    #expect(text.contains("vfshift_detach_pending_seconds{vm=\"web \\\"1\\\"\"} 42.5\n"))
    #expect(text.contains("vfshift_cycle_interval_seconds 1\n"))
    #expect(text.contains("vfshift_vm_receive_transmit_bytes_per_second{vm=\"vm7\""), "per-VM families populated")
  }

  @Test("a real Prometheus on loopback scrapes the agent on the bed: a swap count and the pool gauges read back through /api/v1/query, a VM waiting for the full pool; the rules evaluate and every dashboard query runs",
        .enabled(if: TestBed.enabled))
  func realServer() async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    try resetAllGuests(bed)
    // Runs last (after the agent and Prometheus stop): the guests leave their VF.
    defer { try? TestBed.resetGuest("vfs-g3"); try? TestBed.resetGuest("vfs-g4") }
    let scratch = Scratch("prometheus")
    let policyPath = scratch.file("policy.json")
    try bedPolicy(name: "bed-prometheus").write(toFile: policyPath, atomically: true, encoding: .utf8)
    let agent = try AgentProcess(scratch: scratch, policy: policyPath)
    defer { _ = agent.stop() }
    try await agent.waitFor("agent start", seconds: 20) { !agent.events("start").isEmpty }
    let target = try #require(agent.events("start").first?["metrics"] as? String)

    // The live exposition, as promtool lints exporters'.
    var live = ""
    try await agent.waitFor("the first cycle's pool gauges", seconds: 10) {
      live = (try? scrape(target)) ?? ""
      return live.contains("vfshift_pool_vfs_used{pool=\"vfs\"}")
    }
    let lint = try Exec.run([try Tools.require("promtool", package: "prometheus"), "check", "metrics"], input: live)
    #expect(lint.status == 0 && lint.stdout.isEmpty && lint.stderr.isEmpty, "promtool: \(lint.stdout)\(lint.stderr)")

    let server = try PrometheusServer(scratch: scratch, target: target, rules: Self.rules)
    defer { server.stop() }
    try await server.waitReady()
    try await server.waitFor("the agent scraped (up == 1)", seconds: 20) {
      try server.values("up{job=\"vfshift\"}") == [1]
    }

    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: 5e6)
    defer { traffic.stop() }
    try await agent.waitFor("vfs-g3 promoted", seconds: 60) {
      agent.swaps.contains { $0 == ("promote", "vfs-g3", "done") }
    }
    try await server.waitFor("the promotion and the VF in use, through Prometheus", seconds: 20) {
      try server.values("vfshift_swaps_total{job=\"vfshift\",direction=\"promote\",outcome=\"done\"}") == [1]
        && server.values("vfshift_pool_vfs_used{job=\"vfshift\",pool=\"vfs\"}") == [1]
    }
    // A second intensive VM while the pool (cap 1) is full: it waits, and the
    // alert's condition holds on the agent's own series.
    let g4 = try #require(bed.guests.first { $0.name == "vfs-g4" })
    let second = try TrafficSource(to: g4.ip, bytesPerSecond: 5e6)
    defer { second.stop() }
    try await server.waitFor("a VM waiting for the full pool, through Prometheus", seconds: 30) {
      try !server.query("(vfshift_pool_vfs_used{job=\"vfshift\"} >= vfshift_pool_vfs_cap) and (vfshift_pool_vms_waiting > 0)").isEmpty
    }
    second.stop()
    let build = try server.query("vfshift_build_info{job=\"vfshift\"}")
    #expect(build.count == 1 && build.first?.labels["version"] == BuildInfo.version && build.first?.value == 1, "\(build)")
    #expect(try server.values("vfshift_pool_vfs_cap{job=\"vfshift\",pool=\"vfs\"}") == [1])

    // The rules ran against the agent's series without an evaluation error.
    try await server.waitFor("every rule evaluated", seconds: 20) {
      let rules = try server.rules()
      return rules.count == 7 && rules.allSatisfy { $0.health == "ok" }
    }
    // Every dashboard query parses and runs on the real server.
    let dash = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.dashboard))) as? [String: Any]
    let exprs = ((dash?["panels"] as? [[String: Any]]) ?? []).flatMap { ($0["targets"] as? [[String: Any]]) ?? [] }
      .compactMap { $0["expr"] as? String }
    #expect(exprs.count > 10)
    for expr in exprs {
      let concrete = expr.replacingOccurrences(of: "$instance", with: ".+").replacingOccurrences(of: "$__rate_interval", with: "1m")
      #expect(throws: Never.self, "\(expr)") { _ = try server.query(concrete) }
    }
    traffic.stop()
    #expect(agent.stop() == 0)
  }
}

/// One Prometheus server on loopback with its own config and storage in the
/// test's scratch directory; killed when stopped or released (also when the
/// test fails), the directory going with the scratch.
final class PrometheusServer {
  let process = Process()
  let port: Int
  let logPath: String

  init(scratch: Scratch, target: String, rules: String) throws {
    port = try Self.freePort()
    let config = scratch.file("prometheus.yml")
    try """
      global:
        scrape_interval: 1s
        scrape_timeout: 1s
        evaluation_interval: 1s
      rule_files:
        - \(rules)
      scrape_configs:
        - job_name: vfshift
          static_configs:
            - targets: ['\(target)']
      """.write(toFile: config, atomically: true, encoding: .utf8)
    logPath = scratch.file("prometheus.log")
    FileManager.default.createFile(atPath: logPath, contents: nil)
    process.executableURL = URL(fileURLWithPath: try Tools.require("prometheus", package: "prometheus"))
    process.arguments = ["--config.file=\(config)", "--storage.tsdb.path=\(scratch.file("tsdb"))",
                         "--web.listen-address=127.0.0.1:\(port)"]
    process.currentDirectoryURL = URL(fileURLWithPath: scratch.path)
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    process.standardOutput = log
    process.standardError = log
    try process.run()
  }

  /// A port the kernel just handed out on loopback (Prometheus cannot bind :0
  /// and say which port it got).
  static func freePort() throws -> Int {
    let out = try TestBed.run(["python3", "-c",
      "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
    guard let port = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      throw TestBedError(location: "freePort", what: "no port", why: out)
    }
    return port
  }

  /// GET path on the server: (HTTP status, body), or nil when it does not answer.
  func get(_ path: String, query: String? = nil) -> (Int, String)? {
    let r = try? Exec.run(["python3", "-c", """
      import http.client, sys, urllib.parse
      path = sys.argv[2] + ('?' + urllib.parse.urlencode({'query': sys.argv[3]}) if len(sys.argv) > 3 else '')
      c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)
      c.request('GET', path)
      r = c.getresponse()
      sys.stdout.write(str(r.status) + '\\n' + r.read().decode())
      """, "\(port)", path] + (query.map { [$0] } ?? []))
    guard let r, r.status == 0, let nl = r.stdout.firstIndex(of: "\n"), let code = Int(r.stdout[..<nl]) else { return nil }
    return (code, String(r.stdout[r.stdout.index(after: nl)...]))
  }

  func waitReady() async throws {
    try await waitFor("Prometheus ready on 127.0.0.1:\(port)", seconds: 30) { self.get("/-/ready")?.0 == 200 }
  }

  func waitFor(_ what: String, seconds: Double, _ condition: @escaping () throws -> Bool) async throws {
    try await TestBed.waitUntil(deadlineSeconds: seconds, poll: 0.5, what) {
      guard self.process.isRunning else {
        throw TestBedError(location: "prometheus", what: "exited (\(self.process.terminationStatus)) while waiting for \(what)",
                           why: self.tail())
      }
      return try condition()
    }
  }

  struct Sample { var labels: [String: String]; var value: Double }

  /// An instant query through /api/v1/query; throws unless Prometheus says success.
  func query(_ expr: String) throws -> [Sample] {
    guard let (code, body) = get("/api/v1/query", query: expr) else {
      throw TestBedError(location: "prometheus /api/v1/query", what: "no answer", why: tail())
    }
    let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
    guard code == 200, doc?["status"] as? String == "success", let data = doc?["data"] as? [String: Any] else {
      throw TestBedError(location: "prometheus /api/v1/query \(expr)", what: "HTTP \(code)", why: body)
    }
    switch data["resultType"] as? String {
    case "vector":
      return ((data["result"] as? [[String: Any]]) ?? []).map { r in
        let value = (r["value"] as? [Any])?.last as? String
        return Sample(labels: (r["metric"] as? [String: String]) ?? [:], value: value.flatMap(Double.init) ?? .nan)
      }
    case "scalar":
      let value = (data["result"] as? [Any])?.last as? String
      return [Sample(labels: [:], value: value.flatMap(Double.init) ?? .nan)]
    default: return []
    }
  }

  func values(_ expr: String) throws -> [Double] { try query(expr).map(\.value) }

  /// The loaded alerting rules: (name, health).
  func rules() throws -> [(name: String, health: String)] {
    guard let (code, body) = get("/api/v1/rules"), code == 200 else { return [] }
    let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
    let groups = ((doc?["data"] as? [String: Any])?["groups"] as? [[String: Any]]) ?? []
    return groups.flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }
      .map { ($0["name"] as? String ?? "", $0["health"] as? String ?? "") }
  }

  func tail(_ n: Int = 20) -> String {
    ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").suffix(n).joined(separator: "\n")
  }

  func stop() {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    if process.processIdentifier > 0 { process.waitUntilExit() }
  }

  deinit { stop() }
}
