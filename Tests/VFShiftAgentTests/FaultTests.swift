import Foundation
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftFiles
import VFShiftLibvirt
import VFShiftTestSupport

// The fault table of docs/reliability.md: each test breaks something on the
// real bed during a live swap and/or at rest, waits for the dust to settle and
// checks the same invariants, then appends one row to the results file that
// Benchmarks/faults/table renders.

/// Where rows go (`VFSHIFT_FAULTS_FILE`, else next to the bed's state).
let faultsResultsPath = ProcessInfo.processInfo.environment["VFSHIFT_FAULTS_FILE"] ?? "/run/vfshift-testbed/faults.jsonl"

/// What is left wrong after a fault, counted.
struct Invariants: CustomStringConvertible {
  var withoutWorkingNIC: [String] = []
  var leakedVFs = 0
  var journals: [String] = []
  var unmanagedTouched = false
  var detail: [String] = []
  var clean: Bool { withoutWorkingNIC.isEmpty && leakedVFs == 0 && journals.isEmpty && !unmanagedTouched }
  var description: String {
    "no working NIC: \(withoutWorkingNIC), leaked VFs: \(leakedVFs), journals: \(journals), unmanaged touched: \(unmanagedTouched); \(detail.joined(separator: "; "))"
  }
}

extension AgentProcess {
  /// For a fault row: whether the agent rode the fault out.
  var state: String { process.isRunning ? "running" : "exited" }
}

/// One fault run on the bed: the lease, a clean start, the unmanaged VM's XML
/// before, and the settle-and-record at the end.
final class FaultBed {
  let bed: TestBedState
  let lease = TestBedLease()
  let scratch: Scratch
  let unmanaged: String
  var unmanagedBefore: String

  init(_ name: String) throws {
    bed = try TestBed.require()
    _ = lease
    try resetAllGuests(bed)
    scratch = Scratch("fault-\(name)")
    unmanaged = bed.guests.first { ($0.label ?? "").isEmpty }?.name ?? "vfs-u1"
    unmanagedBefore = try virsh("dumpxml", unmanaged)
  }

  /// The agent under the fault policy, stopped (once) at `step` when given: the test breaks something there, then resumes it.
  func agent(pausedAt step: SwapStep? = nil) throws -> AgentProcess {
    try AgentProcess(scratch: scratch, policy: try policy(faultPolicy()),
                     environment: step.map { ["VFSHIFT_PAUSE_AT_STEP": $0.rawValue] } ?? [:])
  }

  func policy(_ text: String, name: String = "policy.json") throws -> String {
    let path = scratch.file(name)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  /// The invariants as they are now. `skip` leaves VMs out (a guest the test keeps paused on purpose).
  func check(skip: Set<String> = [], ping: Bool = true) throws -> Invariants {
    var out = Invariants()
    var onPool = 0
    for guest in bed.guests {
      let state = (try? virsh("domstate", guest.name))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
      guard state == "running" || state == "paused" else {
        if !skip.contains(guest.name), guest.label?.isEmpty == false { out.withoutWorkingNIC.append(guest.name); out.detail.append("\(guest.name) \(state)") }
        continue
      }
      let inv = try liveInventory(guest.name)
      onPool += inv.nics.filter { $0.poolNetwork != nil }.count
      guard guest.label?.isEmpty == false, !skip.contains(guest.name) else { continue }
      if inv.journal != nil { out.journals.append(guest.name) }
      let pooled = inv.nics.filter { $0.poolNetwork != nil }.count
      // A VF on a managed VM that vfshift has no parked NIC for is one it does not believe it holds.
      if pooled > 0, (try? virsh("metadata", guest.name, ParkedNIC.namespace)) == nil {
        out.leakedVFs += pooled; out.detail.append("\(guest.name) holds a VF with no parked NIC")
      }
      if inv.nics.count != 1 || state != "running" {
        out.withoutWorkingNIC.append(guest.name); out.detail.append("\(guest.name): \(inv.nics.count) NICs, \(state)")
      } else if ping && TestBed.ping(guest.ip, from: bed.namespace, count: 2, intervalSeconds: 0.2).received == 0 {
        out.withoutWorkingNIC.append(guest.name); out.detail.append("\(guest.name) does not answer ping")
      }
    }
    let net = try virsh("net-dumpxml", "vfs-pool")
    let connections = net.range(of: "connections='(\\d+)'", options: .regularExpression)
      .flatMap { Int(net[$0].filter(\.isNumber)) } ?? 0
    if connections != onPool { out.leakedVFs += abs(connections - onPool); out.detail.append("pool connections \(connections), pool NICs \(onPool)") }
    let now = try virsh("dumpxml", unmanaged)
    // What vfshift could touch — the NICs and the metadata — compared as
    // values: a restarted libvirtd re-serialises the rest of the live XML
    // (controller aliases come and go) without anyone touching the domain.
    if touchable(now) != touchable(unmanagedBefore) {
      out.unmanagedTouched = true
      let a = unmanagedBefore.split(separator: "\n"), b = now.split(separator: "\n")
      if let i = a.indices.first(where: { $0 < b.count && a[$0] != b[$0] }) ?? (a.count != b.count ? min(a.count, b.count) : nil) {
        out.detail.append("\(unmanaged) XML line \(i + 1): \(i < a.count ? String(a[i]) : "-") → \(i < b.count ? String(b[i]) : "-")")
      }
    }
    return out
  }

  /// Polls the invariants (without ping, then with) until they hold or 60 s
  /// pass; the seconds from `since` to that moment, nil when they never held.
  func settle(since: ContinuousClock.Instant, skip: Set<String> = [], deadline: Double = 60) async throws -> (Invariants, Double?) {
    let end = ContinuousClock.now + .seconds(deadline)
    var last = Invariants()
    while ContinuousClock.now < end {
      last = try check(skip: skip, ping: false)
      if last.clean {
        let at = ContinuousClock.now
        last = try check(skip: skip, ping: true)
        if last.clean { return (last, (at - since).secondsValue) }
      }
      try await Task.sleep(for: .milliseconds(500))
    }
    return (try check(skip: skip), nil)
  }

  /// Appends the row and asserts the first four columns are 0.
  func record(_ fault: String, _ inv: Invariants, recovery: Double?, agent: String, note: String = "",
              sourceLocation: SourceLocation = #_sourceLocation) {
    var row: [String: Any] = ["fault": fault, "vmsWithoutWorkingNIC": inv.withoutWorkingNIC.count, "leakedVFs": inv.leakedVFs,
                              "journalsLeft": inv.journals.count, "unmanagedTouched": inv.unmanagedTouched ? 1 : 0,
                              "agent": agent, "note": note, "detail": inv.description,
                              "at": ISO8601DateFormatter().string(from: Date())]
    row["recoverySeconds"] = recovery.map { ($0 * 100).rounded() / 100 } ?? NSNull()
    if let data = try? JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]) {
      let dir = (faultsResultsPath as NSString).deletingLastPathComponent
      try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      if !FileManager.default.fileExists(atPath: faultsResultsPath) { FileManager.default.createFile(atPath: faultsResultsPath, contents: nil) }
      if let h = FileHandle(forWritingAtPath: faultsResultsPath) { h.seekToEndOfFile(); h.write(data + Data("\n".utf8)); try? h.close() }
    }
    if !inv.clean || recovery == nil {
      // Keep the agent's logs of a failed row for whoever looks into it.
      let kept = "/tmp/vfshift-faults-kept/\(URL(fileURLWithPath: scratch.path).lastPathComponent)"
      try? FileManager.default.createDirectory(atPath: "/tmp/vfshift-faults-kept", withIntermediateDirectories: true)
      try? FileManager.default.copyItem(atPath: scratch.path, toPath: kept)
      print("fault row kept logs: \(kept)")
    }
    print("fault row: \(fault): \(inv) recovery \(recovery.map { String(format: "%.2f s", $0) } ?? "never")")
    #expect(inv.clean, "\(fault): \(inv)", sourceLocation: sourceLocation)
    #expect(recovery != nil, "\(fault): the invariants held within the deadline", sourceLocation: sourceLocation)
  }

  deinit {
    try? resetAllGuests(bed)
    try? TestBed.poolMembersUp()
  }
}

extension Duration {
  var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The bed's policy with the high class pinned (`always`) or barred (`never`),
/// and no dwell or cooldown, so a fault test gets a swap at once.
func faultPolicy(high: String = "always", name: String = "faults", dwell: Int = 0) -> String {
  """
  {
    name: "\(name)",
    intervalSeconds: 1,
    smoothing: { halfLifeSeconds: 2 },
    pools: [ { name: "vfs", network: "vfs-pool", dataNIC: { bridge: "vfsbr0" }, maxInUse: 1 } ],
    classes: [
      { name: "high", priority: 100, match: { metadata: "high" }, vf: "\(high)" },
      { name: "low", priority: 10, match: { metadata: "low" }, vf: "never" },
    ],
    antiFlap: { minDwellSeconds: \(dwell), cooldownSeconds: 0, challengerMargin: 0.25, maxSwapsPerCycle: 2, maxSwapsPerVMPerHour: 1000 },
  }
  """
}

extension AgentProcess {
  /// Waits until the agent stopped itself (VFSHIFT_PAUSE_AT_STEP); returns the VM it was swapping.
  func waitPaused(seconds: Double = 40) async throws -> String {
    try await waitFor("agent paused at its step", seconds: seconds) {
      let stat = (try? String(contentsOfFile: "/proc/\(self.process.processIdentifier)/stat", encoding: .utf8)) ?? ""
      return stat.split(separator: ")").last?.split(separator: " ").first == "T"
    }
    return events("swap-step").last?["vm"] as? String ?? ""
  }
  func resume() { kill(process.processIdentifier, SIGCONT) }
  var pid: Int32 { process.processIdentifier }
  func metric(_ address: String, _ prefix: String) -> Double? {
    guard let text = try? scrape(address) else { return nil }
    return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.split(separator: " ").last ?? "") }
  }
  var metricsAddress: String? { events("start").first?["metrics"] as? String }
}

/// libvirtd killed by its pid (SIGTERM, as an operator or systemd would) and
/// started again as the bed starts it; returns when it answers.
func restartLibvirtd() async throws {
  let pids = try TestBed.run(["pgrep", "-x", "libvirtd"]).split(separator: "\n").compactMap { Int32($0) }
  for pid in pids { kill(pid, SIGTERM) }
  try await TestBed.waitUntil(deadlineSeconds: 20, poll: 0.1, "old libvirtd gone") {
    pids.allSatisfy { kill($0, 0) != 0 }
  }
  try TestBed.startDaemon("/usr/sbin/libvirtd", ["-d"])
  try await TestBed.waitUntil(deadlineSeconds: 30, poll: 0.2, "libvirtd answers again") {
    (try? virsh("list")) != nil
  }
}


func poolNICCount(_ vm: String) -> Int { (try? liveInventory(vm).nics.filter { $0.poolNetwork != nil }.count) ?? 0 }

@Suite("faults on the real test bed", .serialized, .enabled(if: TestBed.enabled))
struct FaultTests {
  @Test("libvirtd restarted between attach and detach, and again at rest")
  func libvirtdRestarted() async throws {
    let f = try FaultBed("libvirtd")
    let agent = try f.agent(pausedAt: .attached)
    defer { _ = agent.stop(signal: SIGKILL) }
    let vm = try await agent.waitPaused()
    let t0 = ContinuousClock.now
    try await restartLibvirtd()
    agent.resume()
    let (inv, rec) = try await f.settle(since: t0)
    f.record("libvirtd restarted mid-swap (between attach and detach)", inv, recovery: rec,
             agent: agent.state, note: "swapping \(vm)")
    #expect(agent.process.isRunning, "the agent rides out the restart; it exited \(agent.process.isRunning ? -1 : agent.process.terminationStatus) (\(agent.process.isRunning ? "" : "\(agent.process.terminationReason)")): \(agent.tail(5))")

    let t1 = ContinuousClock.now
    try await restartLibvirtd()
    let (inv2, rec2) = try await f.settle(since: t1)
    f.record("libvirtd restarted at rest (a VM on a VF)", inv2, recovery: rec2, agent: agent.state)
    #expect(agent.process.isRunning)
  }

  @Test("the guest ignores the unplug (paused before the detach), resumed 15 s later")
  func guestIgnoresUnplugThenResumes() async throws {
    let f = try FaultBed("unplug-later")
    let agent = try f.agent(pausedAt: .guestUsesNew)
    defer { _ = agent.stop(signal: SIGKILL) }
    let vm = try await agent.waitPaused()
    _ = try virsh("suspend", vm)
    let t0 = ContinuousClock.now
    agent.resume()
    try await agent.waitFor("detach pending", seconds: 30) { agent.events("swap-step").contains { $0["step"] as? String == "detach-pending" } }
    #expect(try liveInventory(vm).nics.count == 2, "make before break: both NICs while the guest holds on")
    try await Task.sleep(for: .seconds(3))
    #expect(poolNICCount(vm) == 1, "never a third NIC while the detach is pending")
    _ = try virsh("resume", vm)
    let resumed = ContinuousClock.now
    let (inv, rec) = try await f.settle(since: resumed)
    f.record("guest ignores the unplug, resumed later", inv, recovery: rec, agent: agent.state,
             note: String(format: "%@ paused before the detach; detach-pending after 10 s; resumed %.0f s after the pause; recovery from the resume",
                          vm, (resumed - t0).secondsValue))
  }

  @Test("the guest never lets go: the agent waits, adds no NIC, keeps running; everything else is intact")
  func guestIgnoresUnplugForGood() async throws {
    let f = try FaultBed("unplug-never")
    let agent = try f.agent(pausedAt: .guestUsesNew)
    defer { _ = agent.stop(signal: SIGKILL) }
    let vm = try await agent.waitPaused()
    _ = try virsh("suspend", vm)
    let t0 = ContinuousClock.now
    agent.resume()
    try await agent.waitFor("detach pending", seconds: 30) { agent.events("swap-step").contains { $0["step"] as? String == "detach-pending" } }
    try await Task.sleep(for: .seconds(10))
    #expect(try liveInventory(vm).nics.count == 2, "the paused VM keeps both NICs: nothing more is attached or torn out")
    #expect(agent.events("swap-step").filter { $0["step"] as? String == "attached" }.count == 1, "one attach, no retry storm")
    let (inv, rec) = try await f.settle(since: ContinuousClock.now, skip: [vm])
    f.record("guest ignores the unplug for good", inv, recovery: rec, agent: agent.state,
             note: String(format: "%@ stays paused (left out of the count): keeps VF + virtio and a detach-pending journal until it resumes, 1 attach, no retry; checked %.0f s after the pause; recovery = time to check the others", vm, (ContinuousClock.now - t0).secondsValue))
    #expect(agent.process.isRunning)
  }

  @Test("the VM is destroyed between attach and detach, then started again")
  func vmDestroyedMidSwap() async throws {
    let f = try FaultBed("destroy")
    let agent = try f.agent(pausedAt: .attached)
    defer { _ = agent.stop(signal: SIGKILL) }
    let vm = try await agent.waitPaused()
    let t0 = ContinuousClock.now
    _ = try virsh("destroy", vm)
    agent.resume()
    try await Task.sleep(for: .seconds(2))
    _ = try virsh("start", vm)
    let (inv, rec) = try await f.settle(since: t0)
    f.record("VM destroyed mid-swap, started again", inv, recovery: rec, agent: agent.state,
             note: "\(vm); recovery includes its boot")
    #expect(agent.process.isRunning)
  }

  @Test("a VM holding a VF is shut down and started again")
  func vmRestartedHoldingVF() async throws {
    let f = try FaultBed("restart")
    let agent = try f.agent()
    defer { _ = agent.stop(signal: SIGKILL) }
    try await agent.waitFor("a promotion", seconds: 40) { agent.swaps.contains { $0.direction == "promote" && $0.outcome == "done" } }
    let vm = try #require(agent.swaps.first { $0.direction == "promote" }?.vm)
    let t0 = ContinuousClock.now
    _ = try virsh("destroy", vm)
    try await Task.sleep(for: .seconds(2))
    _ = try virsh("start", vm)
    let (inv, rec) = try await f.settle(since: t0)
    f.record("VM holding a VF shut down and started again", inv, recovery: rec, agent: agent.state,
             note: "\(vm) (virsh destroy + start); recovery includes its boot")
  }

  @Test("the pool is filled outside vfshift, then freed; a free pool member is deleted")
  func poolExhaustedAndMemberVanished() async throws {
    let f = try FaultBed("pool")
    // Someone else (here: the test, on the unmanaged VM) takes both members.
    for i in 0..<2 {
      let xml = f.scratch.file("outsider\(i).xml")
      try "<interface type='network'><source network='vfs-pool'/><model type='virtio'/><alias name='ua-outsider\(i)'/></interface>"
        .write(toFile: xml, atomically: true, encoding: .utf8)
      _ = try virsh("attach-device", f.unmanaged, xml, "--live")
    }
    defer { for i in 0..<2 { _ = try? virsh("detach-device-alias", f.unmanaged, "ua-outsider\(i)", "--live") } }
    try await TestBed.waitUntil(deadlineSeconds: 10, "outsider NICs in") { poolNICCount(f.unmanaged) == 2 }
    f.unmanagedBefore = try virsh("dumpxml", f.unmanaged)
    let t0 = ContinuousClock.now
    let agent = try f.agent()
    defer { _ = agent.stop(signal: SIGKILL) }
    try await agent.waitFor("start", seconds: 20) { !agent.events("start").isEmpty }
    try await Task.sleep(for: .seconds(8))
    let attempts = agent.events("swap-step").filter { $0["step"] as? String == "journal" }.count
    #expect(attempts == 0, "a full pool is seen as full: no attach tried (\(attempts) tried)")
    let (inv, rec) = try await f.settle(since: ContinuousClock.now)
    f.record("pool exhausted by someone outside vfshift", inv, recovery: rec, agent: agent.state,
             note: String(format: "both members held by the unmanaged VM; %d swap attempts in %.0f s while full; invariants held throughout (recovery = one check)",
                          attempts, (ContinuousClock.now - t0).secondsValue))

    // The outsider lets go (both: the policy's cap of 1 counts VFs others hold); the agent takes one.
    for i in 0..<2 { _ = try virsh("detach-device-alias", f.unmanaged, "ua-outsider\(i)", "--live") }
    try await TestBed.waitUntil(deadlineSeconds: 10, "outsider NICs out") { poolNICCount(f.unmanaged) == 0 }
    try TestBed.poolMembersUp()
    f.unmanagedBefore = try virsh("dumpxml", f.unmanaged)
    try await agent.waitFor("promotion once a member is free", seconds: 30) {
      agent.swaps.contains { $0.direction == "promote" && $0.outcome == "done" }
    }
    // Delete the member nobody holds now (its veth pair goes with it), then
    // force a demote and a promote across it.
    let held = Set(try f.bed.guests.flatMap { g in try liveInventory(g.name).nics.compactMap { nic -> String? in
      if case .poolMember(_, let dev) = nic.kind { return dev }; return nil } })
    let victim = try #require(f.bed.poolMembers.first { !held.contains($0) })
    _ = try TestBed.run(["ip", "link", "del", victim])
    defer { _ = try? TestBed.run([TestBed.scriptsDirectory.appendingPathComponent("up").path]) }
    let t1 = ContinuousClock.now
    try faultPolicy(high: "never", name: "bar").write(toFile: f.scratch.file("policy.json"), atomically: true, encoding: .utf8)
    kill(agent.pid, SIGHUP)
    try await agent.waitFor("demoted", seconds: 30) { agent.swaps.contains { $0.direction == "demote" && $0.outcome == "done" } }
    try faultPolicy(name: "pin").write(toFile: f.scratch.file("policy.json"), atomically: true, encoding: .utf8)
    kill(agent.pid, SIGHUP)
    try await agent.waitFor("promote tried again", seconds: 30) {
      agent.swaps.filter { $0.direction == "promote" }.count >= 2
    }
    let (inv2, rec2) = try await f.settle(since: t1)
    f.record("pool member (veth) deleted", inv2, recovery: rec2, agent: agent.state,
             note: "\(victim) deleted; then a demote and a promote; promote outcome \(agent.swaps.last?.outcome ?? "-")")
  }

  @Test("agent SIGKILLed at random points and at each swap step, ≥ 50 times, restarted each time")
  func killLoop() async throws {
    let f = try FaultBed("kill-loop")
    let policyPath = try f.policy(faultPolicy())
    var kills = 0, iteration = 0, midSwap = 0
    let steps: [SwapStep] = [.journal, .attached, .detachRequested]
    var rng = SystemRandomNumberGenerator()
    let began = ContinuousClock.now
    while kills < 52 {
      // Alternate pinned and barred so every start has a swap to do.
      try faultPolicy(high: iteration % 2 == 0 ? "always" : "never", name: "k\(iteration)")
        .write(toFile: policyPath, atomically: true, encoding: .utf8)
      let atStep = iteration % 2 == 1 ? steps[(iteration / 2) % 3] : nil
      let agent = try AgentProcess(scratch: f.scratch, policy: policyPath,
                                   environment: atStep.map { ["VFSHIFT_CRASH_AT_STEP": $0.rawValue] } ?? [:], logName: "kill\(iteration).log")
      if atStep != nil {
        let deadline = ContinuousClock.now + .seconds(15)
        while agent.process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
      } else {
        try await Task.sleep(for: .milliseconds(Int.random(in: 200...2500, using: &rng)))
      }
      if agent.process.isRunning { kill(agent.pid, SIGKILL) }
      agent.process.waitUntilExit()
      if agent.process.terminationReason == .uncaughtSignal && agent.process.terminationStatus == SIGKILL {
        kills += 1
        // Mid-swap: a journal was written and the swap had not ended when it died.
        let steps = agent.events("swap-step").compactMap { $0["step"] as? String }
        if let last = steps.last, !["done", "attach-failed", "rolled-back", "refused", "detach-pending"].contains(last) { midSwap += 1 }
      }
      iteration += 1
      #expect(ContinuousClock.now - began < .seconds(240), "the loop stays under 4 minutes")
      if ContinuousClock.now - began > .seconds(240) { break }
    }
    let t0 = ContinuousClock.now
    try faultPolicy(name: "final").write(toFile: policyPath, atomically: true, encoding: .utf8)
    let agent = try AgentProcess(scratch: f.scratch, policy: policyPath, logName: "final.log")
    defer { _ = agent.stop() }
    let (inv, rec) = try await f.settle(since: t0)
    f.record("agent SIGKILL at random points and at each swap step (\(kills) kills)", inv, recovery: rec,
             agent: agent.process.isRunning ? "restarted, running" : "exited",
             note: "\(iteration) starts in \(String(format: "%.0f", (t0 - began).secondsValue)) s, \(midSwap) kills mid-swap (a journal written, the swap not ended), half of them at an exact step; recovery = last restart to settled")
    #expect(kills >= 50)
  }

  @Test("two agents on one host: the second refuses, naming the holder; the first carries on")
  func twoAgents() async throws {
    let f = try FaultBed("two")
    let policyPath = try f.policy(faultPolicy())
    let first = try AgentProcess(scratch: f.scratch, policy: policyPath, logName: "first.log")
    defer { _ = first.stop() }
    try await first.waitFor("start", seconds: 20) { !first.events("start").isEmpty }
    let t0 = ContinuousClock.now
    let second = try AgentProcess(scratch: f.scratch, policy: policyPath, logName: "second.log")
    second.process.waitUntilExit()
    #expect(second.process.terminationStatus == 1)
    #expect(second.tail().contains("process \(first.pid) holds"), "names the holder: \(second.tail(3))")
    let (inv, rec) = try await f.settle(since: t0)
    f.record("two agents started on one host", inv, recovery: rec, agent: first.process.isRunning ? "first running" : "exited",
             note: "second exited \(second.process.terminationStatus) naming process \(first.pid); see also secondAgentRefuses")
  }

  @Test("wall clock set back and forward during a run: rates stay sane, no swap")
  func clockJumps() async throws {
    let f = try FaultBed("clock")
    let g3 = try #require(f.bed.guests.first { $0.name == "vfs-g3" })
    let agent = try AgentProcess(scratch: f.scratch, policy: try f.policy(bedPolicy()))
    defer { _ = agent.stop() }
    try await agent.waitFor("start", seconds: 20) { !agent.events("start").isEmpty }
    let address = try #require(agent.metricsAddress)
    // Under the 2 MB/s promote threshold: a spike from a clock jump would show.
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: 1e6)
    defer { traffic.stop() }
    let rateKey = "vfshift_vm_receive_transmit_bytes_per_second{vm=\"vfs-g3\""
    try await agent.waitFor("a steady rate", seconds: 20) { (agent.metric(address, rateKey) ?? 0) > 5e5 }
    // Restore from the monotonic clock, whatever happens.
    let wall0 = Date().timeIntervalSince1970, mono0 = ContinuousClock.now
    func restore() { _ = try? TestBed.run(["date", "-s", "@\(String(format: "%.3f", wall0 + (ContinuousClock.now - mono0).secondsValue))"]) }
    defer { restore() }
    var rates: [Double] = []
    for offset in [-600.0, 600.0] {
      _ = try TestBed.run(["date", "-s", "@\(String(format: "%.3f", wall0 + (ContinuousClock.now - mono0).secondsValue + offset))"])
      let end = ContinuousClock.now + .seconds(5)
      while ContinuousClock.now < end {
        if let r = agent.metric(address, rateKey) { rates.append(r) }
        try await Task.sleep(for: .milliseconds(300))
      }
    }
    restore()
    let restored = ContinuousClock.now
    #expect(abs(Date().timeIntervalSince1970 - (wall0 + (ContinuousClock.now - mono0).secondsValue)) < 1, "clock restored")
    traffic.stop()
    print("vfs-g3 rates during the jumps (B/s): min \(rates.min() ?? -1) max \(rates.max() ?? -1) n \(rates.count)")
    #expect(!rates.isEmpty && rates.allSatisfy { $0 >= 0 && $0 < 2e6 }, "no negative or spiked rate: \(rates)")
    #expect(agent.events("swap-step").isEmpty, "no spurious swap")
    let (inv, rec) = try await f.settle(since: restored)
    f.record("wall clock set back 10 min, then forward 10 min", inv, recovery: rec,
             agent: agent.state,
             note: String(format: "vfs-g3 at 1 MB/s: rate %.2f–%.2f MB/s over %d scrapes, 0 swaps", (rates.min() ?? 0) / 1e6, (rates.max() ?? 0) / 1e6, rates.count))
  }

  @Test("the virtio NIC detached and re-attached by hand: the tap is re-created, no spiked rate, no swap")
  func tapRecreated() async throws {
    let f = try FaultBed("tap")
    let g3 = try #require(f.bed.guests.first { $0.name == "vfs-g3" })
    let agent = try AgentProcess(scratch: f.scratch, policy: try f.policy(bedPolicy()))
    defer { _ = agent.stop() }
    try await agent.waitFor("start", seconds: 20) { !agent.events("start").isEmpty }
    let address = try #require(agent.metricsAddress)
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: 1e6)
    defer { traffic.stop() }
    let rateKey = "vfshift_vm_receive_transmit_bytes_per_second{vm=\"vfs-g3\""
    try await agent.waitFor("a steady rate", seconds: 20) { (agent.metric(address, rateKey) ?? 0) > 5e5 }
    let before = try liveInventory("vfs-g3").nics[0]
    let xml = f.scratch.file("nic.xml")
    // A fixed tap name, so the second round re-creates the device under the same name (counters back at 0).
    try InterfaceXML.restorable(before.xml).replacingOccurrences(of: "</interface>", with: "<target dev='vfsg3tap'/></interface>")
      .write(toFile: xml, atomically: true, encoding: .utf8)
    var t0 = ContinuousClock.now
    var rates: [Double] = []
    for _ in 0..<2 {
      _ = try virsh("detach-device-alias", "vfs-g3", before.alias ?? "ua-net0", "--live")
      try await TestBed.waitUntil(deadlineSeconds: 10, "NIC gone") { (try? liveInventory("vfs-g3").nics.isEmpty) == true }
      _ = try virsh("attach-device", "vfs-g3", xml, "--live")
      try await TestBed.waitUntil(deadlineSeconds: 10, "NIC back") { (try? liveInventory("vfs-g3").nics.count) == 1 }
      t0 = ContinuousClock.now
      let end = ContinuousClock.now + .seconds(4)
      while ContinuousClock.now < end {
        if let r = agent.metric(address, rateKey) { rates.append(r) }
        try await Task.sleep(for: .milliseconds(300))
      }
    }
    let after = try liveInventory("vfs-g3").nics[0]
    traffic.stop()
    #expect(after.hostDevice == "vfsg3tap")
    #expect(rates.allSatisfy { $0 >= 0 && $0 < 2e6 }, "no negative or spiked rate: \(rates)")
    #expect(agent.events("swap-step").isEmpty, "no swap from a counter reset")
    let (inv, rec) = try await f.settle(since: t0)
    f.record("interface re-created with the same name (virtio NIC detached + re-attached by hand, twice)", inv, recovery: rec,
             agent: agent.state,
             note: String(format: "tap %@ → %@ → the same name again; rate %.2f–%.2f MB/s at 1 MB/s; 0 swaps; recovery includes 4 s of rate sampling after the re-attach", before.hostDevice ?? "-", after.hostDevice ?? "-",
                          (rates.min() ?? 0) / 1e6, (rates.max() ?? 0) / 1e6))
  }

  @Test("someone else demotes a managed VM by hand, three times: the agent re-plans, its swaps stay bounded")
  func humanHotplug() async throws {
    let f = try FaultBed("human")
    let agent = try f.agent()
    defer { _ = agent.stop() }
    try await agent.waitFor("a promotion", seconds: 40) { agent.swaps.contains { $0.direction == "promote" && $0.outcome == "done" } }
    var t0 = ContinuousClock.now
    var human = 0
    for round in 1...3 {
      try await agent.waitFor("promoted (round \(round))", seconds: 30) {
        agent.swaps.filter { $0.direction == "promote" && $0.outcome == "done" }.count >= round
      }
      let vm = agent.swaps.last { $0.direction == "promote" }!.vm
      // The human: plug a virtio NIC of their own, unplug the VF. With the
      // VM's MAC, as a human who means to keep its address does: the stock
      // guest's address is its DHCP lease, and a new MAC is a new lease.
      let xml = f.scratch.file("human\(round).xml")
      let mac = try #require(f.bed.guest(named: vm)?.mac)
      try "<interface type='bridge'><mac address='\(mac)'/><source bridge='\(f.bed.bridge)'/><model type='virtio'/><alias name='ua-human\(round)'/></interface>"
        .write(toFile: xml, atomically: true, encoding: .utf8)
      _ = try virsh("attach-device", vm, xml, "--live")
      _ = try virsh("detach-device-alias", vm, Swapper.vfAlias, "--live")
      human += 1
      // The VF is out — or already back, if the agent re-promoted between two
      // polls (a poll is a `virsh dumpxml`; under load one can miss the gap).
      try await TestBed.waitUntil(deadlineSeconds: 20, "VF out") {
        poolNICCount(vm) == 0 || agent.swaps.filter { $0.direction == "promote" && $0.outcome == "done" }.count > round
      }
      try TestBed.poolMembersUp()
      t0 = ContinuousClock.now
    }
    let (inv, rec) = try await f.settle(since: t0)
    try await Task.sleep(for: .seconds(5))
    let promotes = agent.swaps.filter { $0.direction == "promote" }.count
    #expect(promotes <= human + 1, "at most one re-promotion per human change: \(promotes) promotions for \(human) changes")
    f.record("someone else hot-plugs a virtio NIC and unplugs the VF (3 times)", inv, recovery: rec,
             agent: agent.state,
             note: "\(promotes) promotions for \(human) human changes (each time the human's NIC is parked in place of the old one); recovery from the last change")
  }
}

@Test("counters near 2^64 wrap and a device re-created under the same name: never a negative or spiked rate")
func counterWrapEngine() throws {
  let scratch = Scratch("wrap")
  let path = scratch.file("p.json")
  try bedPolicy().write(toFile: path, atomically: true, encoding: .utf8)
  let policy = try loadPolicy(path)
  var state = EngineState()
  let id = VMIdentity(uuid: "u3", name: "vfs-g3", label: "high")
  var rx = UInt64.max - 5_000_000, tx = UInt64.max - 3_000_000
  var rates: [Double] = []
  var actions = 0
  func step(_ t: Double, source: String = "vnet3") {
    let obs = Observation(vms: [VMObservation(identity: id, placement: .virtio,
                                              reading: .known(source: source, counters: VMCounters(rxBytes: rx, txBytes: tx, rxPackets: 0, txPackets: 0),
                                                              at: Instant(seconds: t)))],
                          pools: ["vfs": PoolCapacity(total: 2)])
    actions += decide(&state, policy: policy, observation: obs, now: Instant(seconds: t)).actions.count
    if let r = state.rate(of: "u3")?.bytesPerSecond { rates.append(r) }
  }
  var t = 0.0
  for _ in 0..<4 { step(t); rx &+= 1_000_000; tx &+= 1_000; t += 1 }   // rx wraps past 2^64 here
  for _ in 0..<3 { step(t); rx &+= 1_000_000; t += 1 }
  rx = 0; tx = 0                                                       // re-created, same name
  for _ in 0..<3 { step(t); rx += 1_000_000; t += 1 }
  #expect(rates.allSatisfy { $0 >= 0 && $0 <= 1_001_000 }, "rates \(rates)")
  #expect(actions == 0, "no promotion from a wrap or a reset")
}

/// The parts of a domain's live XML that vfshift acts on: each NIC's kind,
/// MAC, alias and model, the QoS label, the journal, and the metadata element.
func touchable(_ xml: String) -> String {
  guard let inv = try? parseDomainXML(xml) else { return xml }
  let nics = inv.nics.map { "\($0.kind) \($0.mac) \($0.alias ?? "-") \($0.model ?? "-")" }.joined(separator: "; ")
  let metadata = xml.range(of: "<metadata>[\\s\\S]*</metadata>", options: .regularExpression).map { String(xml[$0]) } ?? ""
  return "\(nics) | \(inv.qosLabel ?? "-") | \(String(describing: inv.journal)) | \(metadata)"
}
