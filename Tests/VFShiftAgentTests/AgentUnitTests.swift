import Foundation
import Synchronization
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftFiles
import VFShiftLibvirt
import VFShiftTestSupport

let twoNICDomainXML = """
<domain type='qemu'><name>vm7</name><uuid>00000000-0000-4000-8000-000000000007</uuid>
<metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/></metadata>
<devices>
<interface type='bridge'><mac address='52:54:00:00:00:07'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/><alias name='ua-net0'/></interface>
<interface type='direct'><mac address='52:54:00:aa:00:07'/><source network='vf-pool' dev='vfsvf0' mode='passthrough'/><target dev='macvtap2'/><model type='virtio'/><alias name='ua-vfshift-vf'/></interface>
</devices></domain>
"""

func domain(_ xml: String) throws -> DomainInventory { try parseDomainXML(xml) }

@Test("observe: a tap's counters are turned round, a macvtap's are not; both NICs = mid-swap")
func observeDirections() throws {
  let policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  let onlyTap = try domain(twoNICDomainXML.replacingOccurrences(of: #"<interface type='direct'>.*</interface>"#, with: "", options: .regularExpression))
  let onlyVF = try domain(twoNICDomainXML.replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
  // Mid-swap under the pool's `mac: same`: one MAC on both NICs.
  let both = try domain(twoNICDomainXML.replacingOccurrences(of: "52:54:00:aa:00:07", with: "52:54:00:00:00:07"))
  let counters = CounterSnapshot(["vnet3": InterfaceCounters(rxBytes: 10, rxPackets: 1, txBytes: 900, txPackets: 9),
                                  "macvtap2": InterfaceCounters(rxBytes: 700, rxPackets: 7, txBytes: 30, txPackets: 3)])
  let now = Instant(seconds: 5)
  let pools = ["x540": 2]

  let tap = observe(domains: [onlyTap], counters: counters, policy: policy, poolTotals: pools, now: now).vms[0]
  #expect(tap.placement == .virtio)
  #expect(tap.reading == .known(source: "vnet3", counters: VMCounters(rxBytes: 900, txBytes: 10, rxPackets: 9, txPackets: 1), at: now),
          "on a tap the host's transmit is the guest's receive")

  let vf = observe(domains: [onlyVF], counters: counters, policy: policy, poolTotals: pools, now: now).vms[0]
  #expect(vf.placement == .vf(pool: "x540"))
  #expect(vf.reading == .known(source: "macvtap2", counters: VMCounters(rxBytes: 700, txBytes: 30, rxPackets: 7, txPackets: 3), at: now),
          "on a macvtap the host's receive is the guest's receive")

  let mid = observe(domains: [both], counters: counters, policy: policy, poolTotals: pools, now: now).vms[0]
  #expect(mid.placement == .transitioning(pool: "x540"))

  let gone = observe(domains: [onlyTap], counters: CounterSnapshot([:]), policy: policy, poolTotals: pools, now: now).vms[0]
  #expect(gone.reading == .stale, "a device missing from the snapshot is stale, not zero")
}

@Test("observe with its cache gives what a fresh observe gives, cycle after cycle, as inventory, counters, policy and pools change")
func observeCacheAgrees() throws {
  let paper = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  let general = try loadPolicy("\(TestBed.packageRoot.path)/policies/general.json")
  let onlyTap = try domain(twoNICDomainXML.replacingOccurrences(of: #"<interface type='direct'>.*</interface>"#, with: "", options: .regularExpression))
  let onlyVF = try domain(twoNICDomainXML.replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
  let both = try domain(twoNICDomainXML)
  let stranger = try domain(twoNICDomainXML
    .replacingOccurrences(of: #"<metadata>.*</metadata>"#, with: "", options: .regularExpression)
    .replacingOccurrences(of: "<name>vm7</name>", with: "<name>db1</name>")
    .replacingOccurrences(of: "00000000-0000-4000-8000-000000000007", with: "00000000-0000-4000-8000-000000000008")
    .replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
  var other = onlyTap
  other.uuid = "00000000-0000-4000-8000-000000000009"
  other.name = "vm9"
  other.nics[0].hostDevice = "vnet9"
  func counters(_ n: UInt64, without: String? = nil) -> CounterSnapshot {
    var all = ["vnet3": InterfaceCounters(rxBytes: 10 * n, rxPackets: n, txBytes: 900 * n, txPackets: 9 * n),
               "vnet9": InterfaceCounters(rxBytes: 3 * n, rxPackets: n, txBytes: 5 * n, txPackets: 2 * n),
               "macvtap2": InterfaceCounters(rxBytes: 700 * n, rxPackets: 7 * n, txBytes: 30 * n, txPackets: 3 * n)]
    if let without { all[without] = nil }
    return CounterSnapshot(all)
  }
  let inventoryA = [onlyTap, stranger, other]
  let inventoryB = [both, other, stranger]
  let inventoryC = [onlyVF, other]
  // (inventory, policy, pools, counters): the same inventory array several
  // cycles running, as Inventory.snapshot() hands it out, then changes.
  let steps: [([DomainInventory], Policy, [String: Int], CounterSnapshot)] = [
    (inventoryA, paper, ["x540": 2], counters(1)),
    (inventoryA, paper, ["x540": 2], counters(2)),
    (inventoryA, paper, ["x540": 3], counters(3, without: "vnet9")),
    (inventoryA, paper, ["x540": 3], counters(4)),
    (inventoryB, paper, ["x540": 3], counters(5)),
    (inventoryB, paper, ["x540": 3], counters(6)),
    (inventoryB, general, ["default": 4], counters(7)),
    (inventoryB, general, ["default": 4], counters(8, without: "vnet3")),
    (inventoryC, general, ["default": 4], counters(9)),
    (inventoryC, paper, ["x540": 2], counters(10)),
    (inventoryC, paper, ["x540": 2], counters(11)),
  ]
  var cache = DevicePositions()
  var kept: [Observation] = []
  for (i, (domains, policy, pools, snapshot)) in steps.enumerated() {
    let now = Instant(seconds: Double(i))
    let generation: UInt64 = domains == inventoryA ? 1 : domains == inventoryB ? 2 : 3
    let cached = observe(domains: domains, counters: snapshot, policy: policy, poolTotals: pools, now: now,
                         generation: generation, positions: &cache)
    let fresh = observe(domains: domains, counters: snapshot, policy: policy, poolTotals: pools, now: now)
    #expect(cached == fresh, "step \(i)")
    kept.append(cached)
  }
  // An observation handed out earlier is a value: later cycles do not change it.
  #expect(kept[0] == observe(domains: inventoryA, counters: counters(1), policy: paper, poolTotals: ["x540": 2], now: Instant(seconds: 0)))
  // vfSince (an agent's first cycle) is honoured, and the next cycle has none.
  let since = ["00000000-0000-4000-8000-000000000007": Instant(seconds: -30)]
  let first = observe(domains: inventoryC, counters: counters(12), policy: paper, poolTotals: ["x540": 2], now: Instant(seconds: 12),
                      vfSince: since, generation: 3, positions: &cache)
  #expect(first.vms[0].vfSince == Instant(seconds: -30))
  let next = observe(domains: inventoryC, counters: counters(13), policy: paper, poolTotals: ["x540": 2], now: Instant(seconds: 13),
                     generation: 3, positions: &cache)
  #expect(next == observe(domains: inventoryC, counters: counters(13), policy: paper, poolTotals: ["x540": 2], now: Instant(seconds: 13)))
  #expect(next.vms[0].vfSince == nil)
}

@Test("observe's cache is keyed on the inventory generation: the same generation keeps the observation, a new one rebuilds it")
func observeCacheGeneration() throws {
  let policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  let vm7 = try domain(twoNICDomainXML.replacingOccurrences(of: #"<interface type='direct'>.*</interface>"#, with: "", options: .regularExpression))
  var renamed = vm7
  renamed.name = "vm7-renamed"
  let counters = CounterSnapshot(["vnet3": InterfaceCounters(rxBytes: 1, rxPackets: 1, txBytes: 1, txPackets: 1)])
  var cache = DevicePositions()
  func names(_ domains: [DomainInventory], _ generation: UInt64?) -> [String] {
    observe(domains: domains, counters: counters, policy: policy, poolTotals: ["x540": 2], now: Instant(seconds: 1),
            generation: generation, positions: &cache).vms.map(\.identity.name)
  }
  #expect(names([vm7], 1) == ["vm7"])
  // Another array under the same generation: the caller says nothing changed,
  // so nothing is rebuilt (arrays compared by storage rebuilt here).
  #expect(names([renamed], 1) == ["vm7"])
  // A new generation rebuilds, though the array has as many domains as before.
  #expect(names([renamed], 2) == ["vm7-renamed"])
  #expect(names([vm7], 3) == ["vm7"])
  // No generation: built afresh and not kept, so generation 3 is rebuilt after it.
  #expect(names([renamed], nil) == ["vm7-renamed"])
  #expect(cache.generation == nil)
  #expect(names([renamed], 3) == ["vm7-renamed"])
}

@Test("observe: an unmanaged VM holding a pool VF counts against the cap and is not in the engine's view")
func observeUnmanaged() throws {
  let policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  let stranger = try domain(twoNICDomainXML
    .replacingOccurrences(of: #"<metadata>.*</metadata>"#, with: "", options: .regularExpression)
    .replacingOccurrences(of: "<name>vm7</name>", with: "<name>db1</name>")
    .replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
  let o = observe(domains: [stranger], counters: CounterSnapshot([:]), policy: policy, poolTotals: ["x540": 3], now: Instant(seconds: 1))
  #expect(o.vms.isEmpty)
  #expect(o.pools["x540"] == PoolCapacity(total: 3, heldByOthers: 1))
}

@Test("the parked virtio NIC survives its metadata round trip, escaping included")
func parkedRoundTrip() throws {
  let parked = ParkedNIC(pool: "vf-pool", sinceUnixMilliseconds: 1_700_000_000_123,
                         savedInterfaceXML: "<interface type='bridge'><source bridge='br&amp;0'/><alias name=\"ua-net0\"/></interface>")
  let xml = "<vfshift-parked:parked xmlns:vfshift-parked=\"\(ParkedNIC.namespace)\"" + parked.xmlElement().dropFirst("<parked".count)
  #expect(try ParkedNIC(xml: xml) == parked)
  #expect(throws: (any Error).self) { try ParkedNIC(xml: "<parked pool='p'/>") }
}

@Test("metrics render as Prometheus text with HELP and TYPE for every family")
func metricsText() throws {
  let m = Metrics()
  let text = m.render()
  try checkPrometheus(text)
  #expect(text.contains("# TYPE vfshift_swaps_total counter"))
  #expect(text.contains("vfshift_swap_duration_seconds_bucket{le=\"+Inf\"} 0"))
}

@Test("per-VM metrics are labelled with the class of the policy the engine last decided with, also across a reload")
func metricsClassLabels() throws {
  let paper = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  let general = try loadPolicy("\(TestBed.packageRoot.path)/policies/general.json")
  let m = Metrics()
  func cycle(_ policy: Policy, _ t: Double) {
    let reading = CounterReading.known(source: "vnet0", counters: VMCounters(rxBytes: UInt64(t) * 1000, txBytes: 0,
                                                                            rxPackets: UInt64(t), txPackets: 0),
                                       at: Instant(seconds: t))
    let observation = Observation(vms: [VMObservation(identity: VMIdentity(uuid: "u7", name: "vm7"), placement: .virtio,
                                                      reading: reading)], pools: [:])
    _ = m.engine.update { decide(&$0, policy: policy, observation: observation, now: Instant(seconds: t)) }
  }
  cycle(paper, 1); cycle(paper, 2)
  let high = paper.classes[paper.resolveClass(of: VMIdentity(uuid: "u7", name: "vm7")).classIndex!].name
  #expect(m.render().contains("vfshift_vm_on_vf{vm=\"vm7\",class=\"\(high)\"} 0"))
  cycle(general, 3)
  #expect(m.render().contains("vfshift_vm_on_vf{vm=\"vm7\",class=\"standard\"} 0"))
}

@Test("a second agent on the host refuses to start and names the process holding the lock")
func secondAgentRefuses() throws {
  let scratch = Scratch("lock")
  let lockPath = scratch.file("agent.lock")
  try "4242\n".write(toFile: lockPath, atomically: true, encoding: .utf8)
  // Hold the lock the way a running agent does: flock(2) on the file.
  let fd = open(lockPath, O_RDWR)
  #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
  defer { close(fd) }
  let agent = Process()
  agent.executableURL = URL(fileURLWithPath: vfshiftBinary)
  agent.arguments = ["run", "--policy", "\(TestBed.packageRoot.path)/policies/general.json", "--lock-file", lockPath, "--listen", "off"]
  let err = Pipe()
  agent.standardError = err
  try agent.run()
  try err.fileHandleForWriting.close()
  agent.waitUntilExit()
  let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
  #expect(agent.terminationStatus == 1)
  #expect(message.contains("another vfshift agent already runs on this host (process 4242 holds \(lockPath))"))
}

@Test("usage errors exit 64 with the usage line; help exits 0 on stdout")
func cliConventions() throws {
  func run(_ args: [String]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: vfshiftBinary)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run(); p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
  }
  let (code, _, err) = try run(["whatif", "--bogus"])
  #expect(code == 64)
  #expect(err.contains("error: unknown option '--bogus'") && err.contains("See 'vfshift whatif --help'."))
  for command in [["--help"], ["run", "--help"], ["whatif", "--help"], ["policy", "check", "--help"], ["status", "--help"], ["record", "--help"]] {
    let (c, out, _) = try run(command)
    #expect(c == 0 && out.contains("USAGE"), "\(command)")
  }
  let (badCode, _, badErr) = try run(["policy", "check", "/nonexistent.json"])
  #expect(badCode == 1 && badErr.contains("/nonexistent.json: no such file"))
}

@Test("the unit's hardening, as systemd-analyze security reads it offline: exposure ≤ 3")
func unitHardening() throws {
  let unit = "\(TestBed.packageRoot.path)/deploy/vfshift.service"
  let out = try TestBed.run(["systemd-analyze", "security", "--offline=true", unit])
  let line = try #require(out.split(separator: "\n").first { $0.contains("Overall exposure level") })
  let score = try #require(Double(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).split(separator: " ")[0]))
  print("systemd-analyze: \(line)")
  #expect(score <= 3.0)
}

@Test("the metrics endpoint binds loopback by default and serves /metrics (and / with a link): other paths 404, other methods 405")
func metricsOnlyOnLoopback() throws {
  #expect(AgentConfig(policyPath: "p").metricsListen == "127.0.0.1:9479")
  let listener = try MetricsListener(address: ":0") { Array("vfshift_up 1\n".utf8) }
  defer { listener.stop() }
  #expect(listener.boundAddress.hasPrefix("127.0.0.1:"), "an empty host is loopback: \(listener.boundAddress)")
  let port = String(listener.boundAddress.split(separator: ":")[1])
  let out = try TestBed.run(["python3", "-c", """
    import http.client, sys
    for method, path in [('GET', '/metrics'), ('GET', '/'), ('GET', '/metrics/../etc/passwd'), ('POST', '/metrics'), ('GET', '/status')]:
        c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)
        c.request(method, path)
        r = c.getresponse()
        print(method, path, r.status, repr(r.read().decode()))
    """, port])
  let lines = out.split(separator: "\n").map(String.init)
  #expect(lines.first == "GET /metrics 200 'vfshift_up 1\\n'", "\(lines)")
  #expect(lines.count == 5, "\(lines)")
  #expect(lines.dropFirst().first?.hasPrefix("GET / 200 '<!doctype html>") == true, "\(lines)")
  #expect(lines.dropFirst(2).first == "GET /metrics/../etc/passwd 404 'vfshift serves /metrics\\n'", "\(lines)")
  #expect(lines.dropFirst(3).first == "POST /metrics 405 'only GET and HEAD\\n'", "\(lines)")
  #expect(lines.dropFirst(4).first == "GET /status 404 'vfshift serves /metrics\\n'", "\(lines)")
}

@Test("record: a domain re-created under its old name with a new UUID is a second VM, and the trace still parses")
func recordSameNameNewUUID() throws {
  let path = NSTemporaryDirectory() + "vfshift-record-\(getpid()).trace"
  defer { try? FileManager.default.removeItem(atPath: path) }
  let recorder = try TraceRecorder(path: path, interval: 1, pools: ["p": 2])
  let counters = VMCounters(rxBytes: 1, txBytes: 1, rxPackets: 1, txPackets: 1)
  func observation(_ uuid: String, _ t: Double) -> Observation {
    Observation(vms: [VMObservation(identity: VMIdentity(uuid: uuid, name: "web"), placement: .virtio,
                                    reading: .known(source: "vnet0", counters: counters, at: Instant(seconds: t)))],
                pools: [:])
  }
  recorder.record(observation("uuid-old", 1), now: Instant(seconds: 1))
  recorder.record(observation("uuid-new", 2), now: Instant(seconds: 2))
  try recorder.handle.synchronize()
  let trace = try Trace.parse(String(contentsOfFile: path, encoding: .utf8), file: path)
  #expect(trace.vms.map(\.uuid) == ["uuid-old", "uuid-new"])
  #expect(trace.vms.map(\.name) == ["web", "web"])
  #expect(trace.cycles.map(\.present) == [[0], [1]])
}

@Test("record: the recorded file is what render writes for the trace it parses to (one writer), its source one encoded line")
func recordIsRender() throws {
  let path = NSTemporaryDirectory() + "vfshift-record-render-\(getpid()).trace"
  defer { try? FileManager.default.removeItem(atPath: path) }
  let recorder = try TraceRecorder(path: path, interval: 2, pools: ["p": 2, "a b": 1])
  let c = VMCounters(rxBytes: 5, txBytes: 6, rxPackets: nil, txPackets: 1)
  let web = VMIdentity(uuid: "u-web", name: "web 1"), db = VMIdentity(uuid: "u-db", name: "db", label: "high")
  func vm(_ id: VMIdentity, _ reading: CounterReading) -> VMObservation {
    VMObservation(identity: id, placement: .virtio, reading: reading)
  }
  let known = CounterReading.known(source: "vnet0", counters: c, at: Instant(seconds: 2))
  // db first seen in the second cycle; web gone for one cycle; a stale reading writes no sample.
  recorder.record(Observation(vms: [vm(web, known)], pools: [:]), now: Instant(seconds: 2))
  recorder.record(Observation(vms: [vm(web, .stale), vm(db, .unknown)], pools: [:]), now: Instant(seconds: 4))
  recorder.record(Observation(vms: [vm(db, known)], pools: [:]), now: Instant(seconds: 6))
  recorder.record(Observation(vms: [vm(db, known), vm(web, known)], pools: [:]), now: Instant(seconds: 8))
  try recorder.handle.synchronize()
  let text = try String(contentsOfFile: path, encoding: .utf8)
  let trace = try Trace.parse(text, file: path)
  #expect(trace.render() == text)
  #expect(trace.source == "recorded by vfshift on \(ProcessInfo.processInfo.hostName)")
  #expect(text.contains("\ninterval 2\n"))
  #expect(trace.vms == [web, db])
  #expect(trace.cycles.map(\.present) == [[0], [0, 1], [1], [1, 0]])
  #expect(trace.samples.count == 5, "one per cycle and VM, the stale one left out")
}

@Test("the agent's history of decisions is bounded: a forced move retried for months does not grow it")
func decisionsBounded() throws {
  let agent = try Agent(config: AgentConfig(policyPath: "\(TestBed.packageRoot.path)/policies/paper-multinetwork.json"),
                        log: EventLog(write: { _ in }))
  let vm = VMIdentity(uuid: "u1", name: "vm1")
  let plan = Plan(actions: [.demote(vm: vm, pool: "x540", reason: .classNever(className: "low"))])
  for t in 0..<(3 * Agent.decisionsKept) { agent.recordDecisions(plan, now: Instant(seconds: Double(t))) }
  #expect(agent.decisions.count <= Agent.decisionsKept)
  #expect(agent.decisions.count >= Agent.decisionsKept / 2)
  #expect(agent.decisions.last?.at == Double(3 * Agent.decisionsKept - 1))
}

@Test("a VM on a VF that cannot be measured: a metric per pool, and one log line when it starts and one when it ends")
func unmeasuredSeen() throws {
  let lines = Mutex<[String]>([])
  let agent = try Agent(config: AgentConfig(policyPath: "\(TestBed.packageRoot.path)/policies/paper-multinetwork.json"),
                        log: EventLog(write: { line in lines.withLock { $0.append(line) } }))
  let vm = VMIdentity(uuid: "u7", name: "vm7")
  let policy = agent.policy
  func cycle(_ t: Double, _ reading: CounterReading) {
    let observation = Observation(vms: [VMObservation(identity: vm, placement: .vf(pool: "x540"), reading: reading)],
                                  pools: ["x540": PoolCapacity(total: 2)])
    let plan = agent.engine.update { decide(&$0, policy: policy, observation: observation, now: Instant(seconds: t)) }
    agent.report(plan, observation: observation, now: Instant(seconds: t))
  }
  func known(_ t: Double) -> CounterReading {
    .known(source: "vnet0", counters: VMCounters(rxBytes: UInt64(t) * 3_000_000, txBytes: 0, rxPackets: nil, txPackets: nil),
           at: Instant(seconds: t))
  }
  cycle(1, known(1)); cycle(2, known(2))
  #expect(agent.metrics.render().contains("vfshift_vms_unmeasured{pool=\"x540\"} 0"))
  for t in 3...12 { cycle(Double(t), .unknown) }
  #expect(agent.metrics.render().contains("vfshift_vms_unmeasured{pool=\"x540\"} 1"))
  cycle(13, known(13)); cycle(14, known(14))
  #expect(agent.metrics.render().contains("vfshift_vms_unmeasured{pool=\"x540\"} 0"))
  let measurement = lines.withLock { $0 }.filter { $0.contains("\"measurement\"") }
  #expect(measurement.count == 2, "\(measurement)")
  #expect(measurement.first?.contains("\"measured\":false") == true)
  #expect(measurement.first?.contains("\"why\":\"unknown\"") == true)
  #expect(measurement.last?.contains("\"measured\":true") == true)
  // The hold says why in status and the log: not moved on a rate nobody measured.
  #expect(lines.withLock { $0 }.contains { $0.contains("not-measured") && $0.contains("vm7") })
}

@Test("a plan's actions become steps carrying the observed domain, its pool and NICs; the dry-run actuator logs each and changes nothing")
func stepsAndDryRun() async throws {
  let lines = Mutex<[String]>([])
  let log = EventLog(write: { line in lines.withLock { $0.append(line) } })
  let agent = try Agent(config: AgentConfig(policyPath: "\(TestBed.packageRoot.path)/policies/paper-multinetwork.json"), log: log)
  let vm7 = try domain(twoNICDomainXML)
  let reason = Reason.classNever(className: "low")
  let plan = Plan(actions: [.demote(vm: VMIdentity(uuid: vm7.uuid, name: vm7.name), pool: "x540", reason: reason),
                            .promote(vm: VMIdentity(uuid: "gone", name: "gone"), pool: "x540", reason: reason),
                            .promote(vm: VMIdentity(uuid: vm7.uuid, name: vm7.name), pool: "no-such-pool", reason: reason)])
  let steps = agent.steps(plan, domains: [vm7])
  #expect(steps.count == 1)
  #expect(steps.first?.domain.uuid == vm7.uuid)
  #expect(steps.first?.pool.name == "x540")
  #expect(steps.first?.nics == managedNICs(vm7, policy: agent.policy))
  #expect(steps.first?.nics.vf != nil)
  let dryRun = DryRunActuator(log: log)
  let outcome = await dryRun.apply(steps[0], now: Instant(seconds: 3))
  #expect(outcome == nil)
  #expect(await dryRun.reconcile([vm7], waitingOnGuests: true) == false)
  let logged = lines.withLock { $0 }
  #expect(logged.count == 1)
  #expect(logged.first?.contains("\"event\":\"would-swap\"") == true)
  #expect(logged.first?.contains("\"direction\":\"demote\"") == true)
  #expect(logged.first?.contains("\"vm\":\"vm7\"") == true)
}

@Test("status: a VM whose placement changed is shown in that cycle's file, not at the tenth; a cycle that changes nothing leaves the file")
func statusFollowsPlacement() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vfshift-status-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  var config = AgentConfig(policyPath: "\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  config.statusPath = dir.appendingPathComponent("status.json").path
  let agent = try Agent(config: config, log: EventLog(write: { _ in }))
  let vm = VMIdentity(uuid: "u7", name: "vm7")
  func publish(_ placement: Placement, cycle: Int) throws -> (cycle: Int, placement: String) {
    agent.cycle = cycle
    let reading = CounterReading.known(source: "vnet0", counters: VMCounters(rxBytes: 0, txBytes: 0, rxPackets: nil, txPackets: nil),
                                       at: Instant(seconds: Double(cycle)))
    let observation = Observation(vms: [VMObservation(identity: vm, placement: placement, reading: reading)],
                                  pools: ["x540": PoolCapacity(total: 2)])
    agent.publish(observation, plan: Plan(), poolTotals: ["x540": 2], now: Instant(seconds: Double(cycle)), news: false)
    let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: config.statusPath)))
      as? [String: Any])
    let row = try #require((json["vms"] as? [[String: Any]])?.first)
    return (json["cycle"] as? Int ?? -1, row["placement"] as? String ?? "")
  }
  #expect(try publish(.virtio, cycle: 0) == (0, "virtio"))
  #expect(try publish(.virtio, cycle: 1) == (0, "virtio"), "nothing changed: the file stays")
  // The swap the cycle before decided has finished: the file says so now.
  #expect(try publish(.vf(pool: "x540"), cycle: 2) == (2, "vf:x540"))
  #expect(try publish(.vf(pool: "x540"), cycle: 3) == (2, "vf:x540"))
}
