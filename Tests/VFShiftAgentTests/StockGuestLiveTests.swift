import Foundation
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftLibvirt
import VFShiftTestSupport

// Issue #12 on the stock DHCP guests: the management NIC untouched through
// swaps, and fault rows for the level-triggered repair, a human's second
// virtio NIC and kills at each demotion step (rows in the same results file
// as FaultTests; Benchmarks/faults/table renders them).

/// The `<interface>` element of `xml` that carries `alias`, as text.
func interfaceElement(_ xml: String, alias: String) -> String? {
  var rest = Substring(xml)
  while let start = rest.range(of: "<interface ") {
    guard let end = rest.range(of: "</interface>", range: start.upperBound..<rest.endIndex) else { return nil }
    let element = rest[start.lowerBound..<end.upperBound]
    if element.contains("<alias name='\(alias)'/>") { return String(element) }
    rest = rest[end.upperBound...]
  }
  return nil
}

/// Runs an agent on `policy` until `vm` has a swap with this direction done.
func swapOnce(_ f: FaultBed, _ policy: String, direction: String, log: String,
              environment: [String: String] = [:]) async throws -> (vm: String, agent: AgentProcess) {
  let path = try f.policy(policy, name: "\(log).json")
  let agent = try AgentProcess(scratch: f.scratch, policy: path, environment: environment, logName: "\(log).log")
  try await agent.waitFor("a \(direction) done", seconds: 60) {
    agent.swaps.contains { $0.direction == direction && $0.outcome == "done" }
  }
  return (agent.swaps.last { $0.direction == direction }!.vm, agent)
}

@Suite("issue #12 on the stock guests", .serialized, .enabled(if: TestBed.enabled))
struct StockGuestLiveTests {
  @Test("the management NIC's XML, live and inactive, is byte-identical after each of three promote/demote cycles")
  func managementNICByteIdentical() async throws {
    let f = try FaultBed("mgmt")
    let vm = "vfs-g3"
    let alias = try #require(f.bed.guest(named: vm)?.managementAlias)
    let live0 = try #require(interfaceElement(try virsh("dumpxml", vm), alias: alias))
    let inactive0 = try #require(interfaceElement(try virsh("dumpxml", "--inactive", vm), alias: alias))
    var compared = 0
    for cycle in 1...3 {
      for (direction, high) in [("promote", "always"), ("demote", "never")] {
        let (swapped, agent) = try await swapOnce(f, faultPolicy(high: high, name: "m\(cycle)\(direction)"), direction: direction,
                                                 log: "m\(cycle)-\(direction)")
        _ = agent.stop()
        guard swapped == vm || direction == "demote" else { continue }
        for (flag, before) in [(nil, live0), ("--inactive", inactive0)] as [(String?, String)] {
          let now = try flag.map { try virsh("dumpxml", $0, vm) } ?? virsh("dumpxml", vm)
          #expect(interfaceElement(now, alias: alias) == before, "cycle \(cycle) \(direction) \(flag ?? "live"): the management NIC changed")
          compared += 1
        }
      }
    }
    print("management NIC of \(vm) compared byte for byte \(compared) times over 3 promote/demote cycles")
    #expect(compared >= 6)
  }

  @Test("fault: VF + virtio and no journal found at start (pinned: the VF kept, the virtio parked; barred: the VF released)")
  func bothNICsFoundAtStart() async throws {
    let f = try FaultBed("both-nics")
    let vm = "vfs-g3"
    let mac = try #require(f.bed.guest(named: vm)?.mac)
    let xml = f.scratch.file("hand-vf.xml")
    try "<interface type='network'><source network='vfs-pool'/><mac address='\(mac)'/><model type='virtio'/><alias name='ua-hand-vf'/></interface>"
      .write(toFile: xml, atomically: true, encoding: .utf8)
    var notes: [String] = []
    var t0 = ContinuousClock.now
    for high in ["always", "never"] {
      _ = try virsh("attach-device", vm, xml, "--live")
      let before = try liveInventory(vm)
      #expect(before.nics.count == 2 && before.journal == nil, "set up by hand: VF + virtio, no journal")
      t0 = ContinuousClock.now
      let agent = try AgentProcess(scratch: f.scratch, policy: try f.policy(faultPolicy(high: high, name: "b-\(high)"), name: "b-\(high).json"),
                                   logName: "both-\(high).log")
      try await TestBed.waitUntil(deadlineSeconds: 40, "\(vm) settled to one NIC") { (try? liveInventory(vm).nics.count) == 1 }
      let after = try liveInventory(vm)
      let repairs = agent.events("reconcile").compactMap { $0["repair"] as? String }
      notes.append("\(high): \(repairs.joined(separator: ",")) → \(after.nics.first?.poolNetwork != nil ? "VF" : "virtio")")
      #expect(after.journal == nil)
      #expect((after.nics.first?.poolNetwork != nil) == (high == "always"), "\(high): \(after.nics.map(\.kind))")
      #expect(repairs == [high == "always" ? "keep-vf" : "keep-virtio"], "one repair: \(repairs)")
      _ = agent.stop()
      if high == "always" {
        // Back to the virtio NIC for the second round, through the agent (its parked NIC).
        let (_, back) = try await swapOnce(f, faultPolicy(high: "never", name: "b-back"), direction: "demote", log: "b-back")
        _ = back.stop()
      }
      try TestBed.poolMembersUp()
    }
    let (inv, rec) = try await f.settle(since: t0)
    f.record("VF + virtio and no journal found at start (VF attached by hand, same MAC)", inv, recovery: rec, agent: "running",
             note: "repair per the engine's decision: \(notes.joined(separator: "; ")); recovery from the barred round's start")
  }

  @Test("fault: a human adds a second virtio NIC to a managed VM on its VF: not counted, parked or removed; the VM still works")
  func humanAddsSecondNIC() async throws {
    let f = try FaultBed("second-nic")
    let (vm, agent) = try await swapOnce(f, faultPolicy(), direction: "promote", log: "second")
    defer { _ = agent.stop() }
    let xml = f.scratch.file("second.xml")
    try "<interface type='bridge'><mac address='52:54:00:aa:12:01'/><source bridge='\(f.bed.bridge)'/><model type='virtio'/><alias name='ua-human-second'/></interface>"
      .write(toFile: xml, atomically: true, encoding: .utf8)
    _ = try virsh("attach-device", vm, xml, "--live")
    let stepsBefore = agent.events("swap-step").count
    // Ten cycles at one second: what the agent would do, it has done.
    let until = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < until { try await Task.sleep(for: .milliseconds(500)) }
    let inv = try liveInventory(vm)
    #expect(inv.nics.contains { $0.alias == "ua-human-second" }, "the human's NIC is still there")
    #expect(inv.nics.contains { $0.poolNetwork != nil }, "the VF is still there")
    #expect(agent.events("swap-step").count == stepsBefore, "no swap step since the human's NIC came")
    let parked = try virsh("metadata", vm, ParkedNIC.namespace)
    #expect(!parked.contains("ua-human-second") && !parked.contains("52:54:00:aa:12:01"), "the human's NIC is not parked")
    let ip = try #require(f.bed.guest(named: vm)?.ip)
    let answered = TestBed.ping(ip, from: f.bed.namespace, count: 3, intervalSeconds: 0.2).received
    #expect(answered > 0, "the VM still works")
    // The human takes it out again; the table's invariants count one NIC per VM.
    _ = try virsh("detach-device-alias", vm, "ua-human-second", "--live")
    let t0 = ContinuousClock.now
    try await TestBed.waitUntil(deadlineSeconds: 20, "human NIC gone") {
      (try? liveInventory(vm).nics.contains { $0.alias == "ua-human-second" }) == false
    }
    let (after, rec) = try await f.settle(since: t0)
    f.record("a human adds a second virtio NIC to a managed VM on its VF", after, recovery: rec, agent: agent.state,
             note: "10 s with it: 0 swap steps, not parked, not removed, VF kept, \(answered)/3 pings; then removed by the human")
  }

  @Test("fault: a human's NIC on the data bridge, listed first after a demotion: the next promotion swaps the data NIC, never the human's")
  func humanNICOnDataBridgeThroughSwaps() async throws {
    let f = try FaultBed("second-nic-swaps")
    let (vm, up) = try await swapOnce(f, faultPolicy(name: "h-up"), direction: "promote", log: "h-up")
    _ = up.stop()
    let xml = f.scratch.file("human.xml")
    try "<interface type='bridge'><mac address='52:54:00:aa:12:02'/><source bridge='\(f.bed.bridge)'/><model type='virtio'/><alias name='ua-human-data'/></interface>"
      .write(toFile: xml, atomically: true, encoding: .utf8)
    _ = try virsh("attach-device", vm, xml, "--live")
    let humanBefore = try #require(interfaceElement(try virsh("dumpxml", vm), alias: "ua-human-data"))
    let (down, agentDown) = try await swapOnce(f, faultPolicy(high: "never", name: "h-down"), direction: "demote", log: "h-down")
    _ = agentDown.stop()
    #expect(down == vm)
    // libvirt lists the restored data NIC after the human's: only the recorded alias tells them apart.
    let aliases = try liveInventory(vm).nics.compactMap(\.alias)
    #expect(aliases == ["ua-human-data", "ua-net0"], "the human's NIC first, the data NIC re-attached last: \(aliases)")
    let (again, agentAgain) = try await swapOnce(f, faultPolicy(name: "h-again"), direction: "promote", log: "h-again")
    _ = agentAgain.stop()
    try #require(again == vm, "the same VM promoted again")
    let inv = try liveInventory(vm)
    #expect(inv.nics.contains { $0.poolNetwork != nil }, "on its VF")
    #expect(inv.nic(alias: "ua-net0") == nil, "the data NIC was the one swapped out")
    #expect(interfaceElement(try virsh("dumpxml", vm), alias: "ua-human-data") == humanBefore, "the human's NIC byte-identical")
    let vfMAC = inv.nics.first { $0.poolNetwork != nil }?.mac
    #expect(vfMAC == f.bed.guest(named: vm)?.mac, "the VF has the data NIC's MAC, not the human's")
    _ = try virsh("detach-device-alias", vm, "ua-human-data", "--live")
    try await TestBed.waitUntil(deadlineSeconds: 20, "human NIC gone") { (try? liveInventory(vm).nic(alias: "ua-human-data")) == nil }
    let t0 = ContinuousClock.now
    let (_, back) = try await swapOnce(f, faultPolicy(high: "never", name: "h-back"), direction: "demote", log: "h-back")
    _ = back.stop()
    let (after, rec) = try await f.settle(since: t0)
    f.record("a human's NIC on the data bridge through a demotion and a promotion", after, recovery: rec, agent: "restarted",
             note: "listed before the re-attached data NIC; the next promotion swapped ua-net0 (recorded alias), the human's NIC byte-identical")
  }

  @Test("fault: the agent SIGKILLed at each demotion step, restarted: one NIC, no journal, no leaked VF")
  func killAtEachDemotionStep() async throws {
    let f = try FaultBed("kill-demote")
    let steps: [SwapStep] = [.journal, .attached, .dhcpRedirected, .guestUsesNew, .steered, .detachRequested]
    var t0 = ContinuousClock.now
    var killed: [String] = []
    for step in steps {
      let (_, up) = try await swapOnce(f, faultPolicy(name: "kd-up-\(step.rawValue)"), direction: "promote", log: "kd-up-\(step.rawValue)")
      _ = up.stop()
      let path = try f.policy(faultPolicy(high: "never", name: "kd-\(step.rawValue)"), name: "kd-\(step.rawValue).json")
      let agent = try AgentProcess(scratch: f.scratch, policy: path, environment: ["VFSHIFT_CRASH_AT_STEP": step.rawValue],
                                   logName: "kd-\(step.rawValue).log")
      try await TestBed.waitUntil(deadlineSeconds: 60, "killed at \(step.rawValue)") { !agent.process.isRunning }
      let last = agent.events("swap-step").last
      #expect(last?["swap"] as? String == "demote" && last?["step"] as? String == step.rawValue, "died demoting at \(step.rawValue)")
      killed.append(step.rawValue)
      t0 = ContinuousClock.now
      let restart = try AgentProcess(scratch: f.scratch, policy: path, logName: "kd-restart-\(step.rawValue).log")
      let (inv, _) = try await f.settle(since: t0)
      _ = restart.stop()
      #expect(inv.clean, "after the kill at \(step.rawValue): \(inv)")
      let unlearning = try bridgePortsLeftChanged()
      #expect(unlearning.isEmpty, "after the kill at \(step.rawValue): left changed: \(unlearning)")
    }
    let (inv, rec) = try await f.settle(since: t0)
    f.record("agent SIGKILL at each demotion step (\(killed.joined(separator: ", "))), restarted", inv, recovery: rec, agent: "restarted",
             note: "each: promote, then a demote killed at the step, then a restart settles; recovery = the last restart to settled")
  }

  @Test("fault: the guest never brings the VF up (its driver withheld): rollback, the VM keeps its virtio NIC and address")
  func guestNeverBringsVFUp() async throws {
    let f = try FaultBed("no-driver")
    let guests = GuestConfirmTests()
    let high = f.bed.guests.filter { $0.label == "high" }
    // No driver binds to a virtio device that appears from now on (GuestConfirmTests explains the knob).
    for g in high { try guests.inGuest(g.name, "echo 0 > /sys/bus/virtio/drivers_autoprobe") }
    defer { for g in high { try? guests.inGuest(g.name, "echo 1 > /sys/bus/virtio/drivers_autoprobe") } }
    let before = try Dictionary(uniqueKeysWithValues: high.map { ($0.name, try liveInventory($0.name).nics) })
    let path = try f.policy(faultPolicy(name: "no-driver").replacingOccurrences(of: "maxInUse: 1 }", with: "maxInUse: 1, confirmSeconds: 3 }"))
    let agent = try AgentProcess(scratch: f.scratch, policy: path)
    try await agent.waitFor("a promotion rolled back", seconds: 60) { agent.swaps.contains { $0.outcome == "not-taken" } }
    let t0 = ContinuousClock.now
    let vm = agent.swaps.first { $0.outcome == "not-taken" }!.vm
    let steps = agent.events("swap-step").filter { $0["vm"] as? String == vm }.compactMap { $0["step"] as? String }
    #expect(!steps.contains("detach-requested"), "the virtio NIC was never asked to go: \(steps)")
    // The old port redirected the DHCP replies from the attach and stopped after the rollback.
    #expect(steps.contains("dhcp-redirected") && steps.last { $0.hasPrefix("dhcp-redirect") } == "dhcp-redirect-removed",
            "the old port's redirect put on and taken off: \(steps)")
    #expect(try bridgePortsLeftChanged().isEmpty, "no bridge port left changed after the rollback")
    #expect(try liveInventory(vm).nics == before[vm], "\(vm) has exactly its virtio NIC again")
    let (inv, rec) = try await f.settle(since: t0)
    _ = agent.stop()
    f.record("the guest never brings the VF up (virtio autoprobe off: no driver for the new NIC)", inv, recovery: rec, agent: "running",
             note: "\(vm): \(steps.prefix(4).joined(separator: " → ")); confirmSeconds 3; the virtio NIC and its address kept; recovery from the rollback")
  }
}
