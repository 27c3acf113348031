import Foundation
import Synchronization
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftFiles
import VFShiftLibvirt
import VFShiftTestSupport

/// The agent end to end on the real test bed: TCG guests, a namespace sending
/// real traffic, a passthrough pool of 2 stand-in VFs capped at 1 by the policy.
@Suite("vfshift run on the real test bed", .serialized, .enabled(if: TestBed.enabled))
struct AgentLiveTests {
  /// Per-swap rows of each run, so the last prints them all side by side.
  static let switchOverRows = Mutex<[String: [String]]>([:])
  /// VFSHIFT_SWITCHOVER's values (Internals/Process.swift) the scenario runs
  /// with: "steered" is the product's, "plain" the switch-over before the cut;
  /// Benchmarks/switch-over adds "quiet" (the old port not learning from the
  /// attach), which is not the product's and may roll a swap back.
  static let switchOvers = ProcessInfo.processInfo.environment["VFSHIFT_PAPER_SWITCHOVERS"]
    .map { $0.split(separator: ",").map(String.init) } ?? ["plain", "steered"]

  @Test("the paper's scenario live: promote on onset, the VF follows the traffic, demote when it stops; low never",
        arguments: AgentLiveTests.switchOvers)
  func paperScenario(switchOver: String) async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    try resetAllGuests(bed)
    let scratch = Scratch("paper")
    let policyPath = scratch.file("policy.json")
    try bedPolicy().write(toFile: policyPath, atomically: true, encoding: .utf8)
    let policy = try loadPolicy(policyPath)
    let g = Dictionary(uniqueKeysWithValues: bed.guests.map { ($0.name, $0) })
    let unmanagedBefore = try virsh("dumpxml", "vfs-u1")
    let pings = try bed.guests.map { try PingMonitor(guest: $0.name, ip: $0.ip, scratch: scratch, intervalSeconds: 0.01) }
    defer { pings.forEach { $0.stop() } }
    // One long-lived TCP connection to each managed guest, never reconnected.
    let managed = bed.guests.filter { $0.label != nil }
    let streams = try managed.map { try TCPStream(guest: $0.name, ip: $0.ip, port: bed.sourcePort ?? 5002, scratch: scratch) }
    defer { streams.forEach { $0.stop() } }
    try await TestBed.waitUntil(deadlineSeconds: 20, poll: 0.1, "every TCP stream connected") { streams.allSatisfy { $0.connected } }
    let mgmtBefore = try managed.map { try interfaceElement(virsh("dumpxml", $0.name), alias: $0.managementAlias ?? "ua-mgmt0") }
    func expectManagementUntouched(_ when: String) throws {
      for (guest, before) in zip(managed, mgmtBefore) {
        let now = interfaceElement(try virsh("dumpxml", guest.name), alias: guest.managementAlias ?? "ua-mgmt0")
        #expect(now != nil && now == before, "\(guest.name): ua-mgmt0 byte-identical \(when)")
      }
    }
    let serialStart = managed.map { (try? FileManager.default.attributesOfItem(atPath: $0.serialLog ?? "")[.size] as? Int) ?? 0 }

    let tracePath = scratch.file("recorded.trace")
    let agent = try AgentProcess(scratch: scratch, policy: policyPath, arguments: ["--record", tracePath],
                                 environment: ["VFSHIFT_SWITCHOVER": switchOver])
    try await agent.waitFor("agent start", seconds: 20) { !agent.events("start").isEmpty }
    let metricsAddress = try #require(agent.events("start").first?["metrics"] as? String)

    // Onset: vfs-g3 (high) turns intensive; vfs-g1 (low) is flooded throughout.
    let flood = try TrafficSource(to: g["vfs-g1"]!.ip, bytesPerSecond: 8e6)
    defer { flood.stop() }
    let g3 = try TrafficSource(to: g["vfs-g3"]!.ip, bytesPerSecond: 5e6)
    defer { g3.stop() }
    try await agent.waitFor("vfs-g3 promoted", seconds: 45) {
      agent.swaps.contains { $0 == ("promote", "vfs-g3", "done") }
    }
    try expectManagementUntouched("after promote vfs-g3")
    let promoted = try liveInventory("vfs-g3")
    #expect(promoted.nics.count == 1)
    #expect(promoted.nics.first?.poolNetwork == "vfs-pool")
    // Metrics are published each cycle: the next one shows the VF in use.
    var scrapeMid = ""
    try await agent.waitFor("metrics show the VF in use", seconds: 10) {
      scrapeMid = (try? scrape(metricsAddress)) ?? ""
      return scrapeMid.contains("vfshift_pool_vfs_used{pool=\"vfs\"} 1")
    }

    // The traffic moves to vfs-g4: after g3's dwell the VF follows it.
    g3.stop()
    let g4 = try TrafficSource(to: g["vfs-g4"]!.ip, bytesPerSecond: 5e6)
    defer { g4.stop() }
    try await agent.waitFor("vfs-g4 promoted", seconds: 60) {
      agent.swaps.contains { $0 == ("promote", "vfs-g4", "done") }
    }
    #expect(agent.swaps.contains { $0 == ("demote", "vfs-g3", "done") })
    try expectManagementUntouched("after demote vfs-g3 and promote vfs-g4")

    // All traffic stops: vfs-g4 lets go after its dwell and release time.
    g4.stop()
    flood.stop()
    try await agent.waitFor("vfs-g4 demoted", seconds: 60) {
      agent.swaps.contains { $0 == ("demote", "vfs-g4", "done") }
    }
    try expectManagementUntouched("after demote vfs-g4")
    try await Task.sleep(for: .seconds(1.5))  // bytes after the last swap
    let scrapeEnd = try scrape(metricsAddress)
    #expect(agent.stop() == 0, "SIGTERM is a clean exit")

    // A low-QoS VM never gets a VF however busy; the unmanaged VM is untouched.
    #expect(!agent.decisions.contains { $0.verb == "promote" && ["vfs-g1", "vfs-g2", "vfs-u1"].contains($0.vm) })
    #expect(try virsh("dumpxml", "vfs-u1") == unmanagedBefore)
    for guest in bed.guests {
      let inv = try liveInventory(guest.name)
      #expect(inv.nics.count == 1, "\(guest.name) ends with exactly one NIC")
      #expect(inv.journal == nil, "\(guest.name) has no journal left")
      #expect(TestBed.ping(guest.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2).received > 0, "\(guest.name) answers")
    }

    // Every TCP connection lived through every swap and kept moving bytes.
    for stream in streams {
      let ended: String? = stream.ended
      #expect(ended == nil, "\(stream.guest): the TCP connection ended: \(ended ?? "")")
    }
    // Each guest's DHCP address stayed its own: every lease the guest took
    // during the run (the serial log) is the address it started with.
    for (guest, start) in zip(managed, serialStart) {
      let log = (try? String(contentsOfFile: guest.serialLog ?? "", encoding: .utf8)) ?? ""
      let bound = log.utf8.count > start ? String(log.utf8.dropFirst(start)) ?? "" : ""
      for line in bound.split(separator: "\n").map(String.init) where line.contains(" dhcp bound ") {
        #expect(line.contains(" \(guest.ip)/"), "\(guest.name): leased another address: \(line)")
      }
    }

    // Per swap: pings lost at 10 ms, the longest TCP gap, the swap's duration.
    print("swap (\(switchOver))".padding(toLength: 29, withPad: " ", startingAt: 0) + "pings sent  lost  longest TCP gap  swap took")
    var rows: [String] = []
    for swap in agent.events("swap") {
      guard let vm = swap["vm"] as? String, let end = unixTime(swap["ts"]), let seconds = swap["seconds"] as? Double,
            let monitor = pings.first(where: { $0.guest == vm }) else { continue }
      let c = monitor.counts(from: end - seconds - 0.5, to: end + 1)
      let stream = streams.first { $0.guest == vm }
      let gap = stream?.longestGap(from: end - seconds, to: end + 0.5) ?? .nan
      if let stream { #expect(stream.bytes(at: end + 1.5) > stream.bytes(at: end), "\(vm): TCP bytes keep flowing after the swap") }
      let row = "\((swap["direction"] as? String ?? "") + " " + vm)".padding(toLength: 29, withPad: " ", startingAt: 0)
            + String(format: "%10d %5d  %12.0f ms  %7.2f s", c.sent, c.lost, gap * 1000, seconds)
      print(row)
      print(swapTimeline(agent, vm: vm, end: end, seconds: seconds, pings: monitor, stream: stream))
      rows.append(row)
    }
    if switchOver != "plain" {
      #expect(agent.events("swap-step").contains { $0["step"] as? String == "steered" }, "the switch-over steered the bridge")
      // From the attach on, the old port sends the DHCP server's replies on to the
      // new NIC (quiet: does not learn) (SwitchOver.swift): every swap before its confirmation.
      let hold = switchOver == "quiet" ? "learning-off" : "dhcp-redirected"
      for vm in ["vfs-g3", "vfs-g4"] {
        let steps = agent.events("swap-step").filter { $0["vm"] as? String == vm }.compactMap { $0["step"] as? String }
        let holds = steps.indices.filter { steps[$0] == hold }, confirms = steps.indices.filter { steps[$0] == "guest-uses-new" }
        #expect(holds.count == confirms.count && zip(holds, confirms).allSatisfy { $0 < $1 }, "\(vm): \(hold) before each confirmation: \(steps)")
      }
    }
    #expect(try bridgePortsLeftChanged().isEmpty, "no bridge port left changed")
    let all = AgentLiveTests.switchOverRows.withLock { all in all[switchOver] = rows; return all }
    let modes = AgentLiveTests.switchOvers
    if modes.allSatisfy({ all[$0] != nil }) {
      print("switch-over, the same scenario swap by swap (\(modes.joined(separator: ", "))): plain = before the cut,"
            + " quiet = the old port not learning from the attach, steered = the product (the DHCP replies redirected from the attach)")
      for i in 0..<(modes.map { all[$0]!.count }.max() ?? 0) {
        for mode in modes { print((mode + ":").padding(toLength: 9, withPad: " ", startingAt: 0) + (i < all[mode]!.count ? all[mode]![i] : "-")) }
      }
    }

    // Record → replay: the same engine on the recorded samples makes the same decisions.
    let trace = try loadTrace(tracePath)
    // At the microsecond: the two clocks' sums may differ in the last bits of a double.
    let replayed = replay(trace, policy: policy).swaps.map { "\($0.verb) \($0.vm) at \(String(format: "%.6f", $0.at.seconds))" }
    let live = agent.decisions.map { "\($0.verb) \($0.vm) at \(String(format: "%.6f", Instant(seconds: $0.t).seconds))" }
    #expect(!live.isEmpty)
    #expect(replayed == live, "whatif on the recorded trace decides as the live agent did")

    // Onset → promotion: within the sustain time plus one cycle of the first
    // interval over the threshold (the engine's clock, not the wall's).
    let onset = try #require(firstIntervalOver(trace, vm: "vfs-g3", bytesPerSecond: 2e6))
    let promotion = try #require(agent.decisions.first { $0.verb == "promote" && $0.vm == "vfs-g3" }?.t)
    print(String(format: "vfs-g3: traffic over threshold from t=%.2f s, promoted at t=%.2f s (%.2f s; sustain 3 s + 1 cycle allowed)",
                 onset, promotion, promotion - onset))
    #expect(promotion - onset <= 3 + 1 + 0.05)

    // Metrics parse as Prometheus text and agree with the log.
    for text in [scrapeMid, scrapeEnd] { try checkPrometheus(text) }
    let promotes = agent.swaps.filter { $0.direction == "promote" && $0.outcome == "done" }.count
    let demotes = agent.swaps.filter { $0.direction == "demote" && $0.outcome == "done" }.count
    #expect(scrapeEnd.contains("vfshift_swaps_total{direction=\"promote\",outcome=\"done\"} \(promotes)"))
    #expect(scrapeEnd.contains("vfshift_swaps_total{direction=\"demote\",outcome=\"done\"} \(demotes)"))
    #expect(scrapeMid.contains("vfshift_pool_vfs_used{pool=\"vfs\"} 1"))
    #expect(scrapeEnd.contains("vfshift_pool_vfs{pool=\"vfs\"} 2"))
  }

  @Test("dry run: the same decisions are logged and every guest's XML is byte-identical afterwards")
  func dryRun() async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    try resetAllGuests(bed)
    let scratch = Scratch("dry")
    let policyPath = scratch.file("policy.json")
    try bedPolicy().write(toFile: policyPath, atomically: true, encoding: .utf8)
    let before = try bed.guests.map { try virsh("dumpxml", $0.name) }
    let agent = try AgentProcess(scratch: scratch, policy: policyPath, arguments: ["--dry-run"])
    let g3 = try TrafficSource(to: bed.guests.first { $0.name == "vfs-g3" }!.ip, bytesPerSecond: 5e6)
    defer { g3.stop() }
    try await agent.waitFor("a dry-run promotion of vfs-g3", seconds: 45) {
      agent.events("decision").contains { $0["decision"] as? String == "promote" && $0["vm"] as? String == "vfs-g3"
        && $0["dryRun"] as? Bool == true }
    }
    g3.stop()
    #expect(agent.stop() == 0)
    #expect(agent.events("swap").isEmpty && agent.events("swap-step").isEmpty)
    let after = try bed.guests.map { try virsh("dumpxml", $0.name) }
    #expect(before == after)
  }

  @Test("reload: SIGHUP with a valid policy takes effect; with an invalid one the errors are logged and the old policy stays")
  func reload() async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    try resetAllGuests(bed)
    let scratch = Scratch("reload")
    let policyPath = scratch.file("policy.json")
    try bedPolicy(name: "first").write(toFile: policyPath, atomically: true, encoding: .utf8)
    let agent = try AgentProcess(scratch: scratch, policy: policyPath)
    defer { _ = agent.stop() }
    try await agent.waitFor("start", seconds: 20) { !agent.events("start").isEmpty }

    // Valid and different: the high class is now pinned, so g3 and g4 want a
    // VF with no traffic at all; the cap of 1 lets one have it.
    try bedPolicy(name: "second", highVF: "always").write(toFile: policyPath, atomically: true, encoding: .utf8)
    kill(agent.process.processIdentifier, SIGHUP)
    try await agent.waitFor("reload applied", seconds: 15) {
      agent.events("reload").contains { $0["outcome"] as? String == "applied" && $0["policy"] as? String == "second" }
    }
    try await agent.waitFor("a pinned VM promoted under the new policy", seconds: 30) {
      agent.swaps.contains { $0.direction == "promote" && $0.outcome == "done" }
    }

    try "{ name: \"third\", classes: [ { name: 1 } ] ".write(toFile: policyPath, atomically: true, encoding: .utf8)
    kill(agent.process.processIdentifier, SIGHUP)
    try await agent.waitFor("reload refused", seconds: 15) {
      agent.events("reload").contains { $0["outcome"] as? String == "refused" }
    }
    let refused = try #require(agent.events("reload").last { $0["outcome"] as? String == "refused" })
    #expect((refused["errors"] as? String ?? "").contains("policy.json:1"))
    #expect(refused["kept"] as? String == "second")
    #expect(agent.process.isRunning)
    let swapsBefore = agent.swaps.count
    try await Task.sleep(for: .seconds(3))
    #expect(agent.swaps.count == swapsBefore, "the kept policy is stable: nothing flaps after the refused reload")
    #expect(agent.stop() == 0)
    try resetAllGuests(bed)
  }

  @Test("crash safety: SIGKILL at each swap step, then a restart reconciles: one NIC each, no leaked member, no journal",
        arguments: [SwapStep.journal, .attached, .dhcpRedirected, .steered, .detachRequested])
  func crashAtStep(_ step: SwapStep) async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    try resetAllGuests(bed)
    let scratch = Scratch("crash-\(step)")
    let policyPath = scratch.file("policy.json")
    try bedPolicy(highVF: "always").write(toFile: policyPath, atomically: true, encoding: .utf8)
    let crashing = try AgentProcess(scratch: scratch, policy: policyPath, environment: ["VFSHIFT_CRASH_AT_STEP": step.rawValue],
                                    logName: "crash.log")
    crashing.process.waitUntilExit()
    #expect(crashing.process.terminationReason == .uncaughtSignal && crashing.process.terminationStatus == SIGKILL,
            "the agent died at step \(step): \(crashing.tail(5))")
    #expect(crashing.events("swap-step").last?["step"] as? String == step.rawValue)

    let restarted = try AgentProcess(scratch: scratch, policy: policyPath, logName: "restart.log")
    defer { _ = restarted.stop() }
    try await restarted.waitFor("reconcile and one cycle", seconds: 40) {
      restarted.events("swap").contains { $0["outcome"] as? String == "done" } || !restarted.events("reconcile").isEmpty
    }
    try await restarted.waitFor("settled: a pinned VM holds the one VF", seconds: 40) {
      (try? bed.guests.filter { try liveInventory($0.name).nics.contains { $0.poolNetwork != nil } }.count) == 1
    }
    #expect(restarted.stop() == 0)
    var onPool = 0
    for guest in bed.guests {
      let inv = try liveInventory(guest.name)
      #expect(inv.nics.count == 1, "\(guest.name): exactly one NIC after reconcile")
      #expect(inv.journal == nil, "\(guest.name): journal cleared")
      onPool += inv.nics.filter { $0.poolNetwork != nil }.count
      #expect(TestBed.ping(guest.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2).received > 0, "\(guest.name) answers ping")
    }
    let net = try virsh("net-dumpxml", "vfs-pool")
    let connections = net.range(of: "connections='(\\d+)'", options: .regularExpression).map { String(net[$0]) } ?? "connections='0'"
    #expect(connections == "connections='\(onPool)'", "no pool member held by a VM that does not use it")
    // A kill after the bridge was steered leaves no port of the bridge unlearning.
    let unlearning = try bridgePortsLeftChanged()
    #expect(unlearning.isEmpty, "bridge ports left changed: \(unlearning)")
    if step == .journal {
      // Killed before the old port was quieted: the rollback has nothing to give back, and says nothing.
      // (The restarted agent's own swap, from its journal step on, puts on and takes off its own.)
      let steps = restarted.events("swap-step").compactMap { $0["step"] as? String }
      let reconciling = steps.prefix { $0 != SwapStep.journal.rawValue }
      let restored = reconciling.filter { ["learning-restored", "dhcp-redirect-removed"].contains($0) }
      #expect(restored.isEmpty, "a port restored that was never changed: \(steps)")
    }
    try resetAllGuests(bed)
  }
}

/// The first interval (start time) in which `vm` moved at least `bytesPerSecond`.
func firstIntervalOver(_ trace: Trace, vm: String, bytesPerSecond: Double) -> Double? {
  guard let index = trace.vms.firstIndex(where: { $0.name == vm }) else { return nil }
  var last: (String, VMCounters, Instant)?
  for sample in trace.samples where Int(sample.vm) == index {
    guard case let .known(source, counters, at) = sample.reading else { continue }
    if let (s, c, t) = last, s == source, at > t {
      let rate = Double(counters.rxBytes + counters.txBytes - c.rxBytes - c.txBytes) / (at - t)
      if rate >= bytesPerSecond { return t.seconds }
    }
    last = (source, counters, at)
  }
  return nil
}

func scrape(_ address: String) throws -> String {
  let parts = address.split(separator: ":")
  let out = try TestBed.run(["python3", "-c", """
    import http.client, sys
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
    c.request('GET', '/metrics')
    r = c.getresponse()
    assert r.status == 200, r.status
    sys.stdout.write(r.read().decode())
    """, String(parts[0]), String(parts[1])])
  return out
}

/// Every sample line is `name{label="v",...} number`, every family has HELP and TYPE.
func checkPrometheus(_ text: String) throws {
  var typed = Set<String>()
  for line in text.split(separator: "\n") {
    if line.hasPrefix("# TYPE ") { typed.insert(String(line.split(separator: " ")[2])); continue }
    if line.hasPrefix("#") { continue }
    let regex = #"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$"#
    #expect(line.range(of: regex, options: .regularExpression) != nil, "not Prometheus text: \(line)")
    let name = String(line.prefix { $0 != "{" && $0 != " " })
    let family = ["_bucket", "_sum", "_count"].reduce(name) { n, s in n.hasSuffix(s) && typed.contains(String(n.dropLast(s.count))) ? String(n.dropLast(s.count)) : n }
    #expect(typed.contains(family), "\(name) has no # TYPE")
  }
}
