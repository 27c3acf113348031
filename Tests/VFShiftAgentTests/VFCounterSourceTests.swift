import Foundation
import Synchronization
import Testing
import VFShiftCore
import VFShiftHost
@testable import VFShiftAgent
import VFShiftFiles
import VFShiftLibvirt
import VFShiftTestSupport

/// A VM on VF `n` of the PF at 0000:03:00.0 (VFs at devfn 2 + n, see
/// SRIOVSysfs.addPF), as libvirt's live XML shows a NIC from a
/// `<forward mode='hostdev'>` network.
func vfDomain(_ n: Int, address: String? = nil) throws -> DomainInventory {
  let devfn = 2 + n
  let pci = address.map { a -> String in
    let p = a.split(whereSeparator: { $0 == ":" || $0 == "." }).map(String.init)
    return "domain='0x\(p[0])' bus='0x\(p[1])' slot='0x\(p[2])' function='0x\(p[3])'"
  } ?? String(format: "domain='0x0000' bus='0x03' slot='0x%02x' function='0x%x'", devfn >> 3, devfn & 7)
  return try parseDomainXML("""
    <domain type='qemu'><name>vfvm\(n)</name><uuid>00000000-0000-4000-8000-00000000010\(n)</uuid>
    <metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/></metadata>
    <devices>
    <interface type='hostdev' managed='yes'><mac address='52:54:00:12:00:1\(n)'/>
    <source network='vf-pool'><address type='pci' \(pci)/></source><alias name='ua-vfshift-vf'/></interface>
    </devices></domain>
    """)
}

/// The guest agent of a test: answers from a table, or holds the call until
/// the test lets it go. Counts the calls.
final class ScriptedGuestAgents: GuestAgentTransport, @unchecked Sendable {
  let replies: Mutex<[String: String]>
  let calls = Atomic<Int>(0)
  let gate: DispatchSemaphore?
  init(_ replies: [String: String], holdUntilReleased: Bool = false) {
    self.replies = Mutex(replies)
    gate = holdUntilReleased ? DispatchSemaphore(value: 0) : nil
  }
  func networkInterfaces(uuid: String, timeoutSeconds: Int32) throws -> String {
    calls.add(1, ordering: .sequentiallyConsistent)
    gate?.wait()
    guard let r = replies.withLock({ $0[uuid] }) else {
      throw LibvirtError(function: "virDomainQemuAgentCommand", domain: uuid, code: 86,
                         message: "Guest agent is not responding: QEMU guest agent is not connected")
    }
    return r
  }
}

func guestReply(mac: String, rxBytes: UInt64, txBytes: UInt64) -> String {
  #"{"return":[{"name":"lo","hardware-address":"00:00:00:00:00:00","statistics":{"rx-bytes":0,"rx-packets":0,"rx-errs":0,"rx-dropped":0,"tx-bytes":0,"tx-packets":0,"tx-errs":0,"tx-dropped":0}},"#
    + #"{"name":"eth1","hardware-address":"\#(mac)","statistics":{"rx-bytes":\#(rxBytes),"rx-packets":10,"rx-errs":0,"rx-dropped":0,"tx-bytes":\#(txBytes),"tx-packets":5,"tx-errs":0,"tx-dropped":0}}]}"#
}

func waitFor(_ what: String, seconds: Double = 10, _ condition: () -> Bool) throws {
  let deadline = Date().addingTimeInterval(seconds)
  while !condition() {
    guard Date() < deadline else { throw TestBedError(location: "test", what: what, why: "not within \(seconds) s") }
    usleep(2_000)
  }
}

@Suite struct VFCounterSourceTests {
  let policy: Policy
  init() throws {
    policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/paper-multinetwork.json")
  }

  func policy(_ counters: PoolCounters) -> Policy {
    var p = policy
    p.pools[0].counters = counters
    return p
  }

  static let pfStats: [VFStatsReply.Stats?] = (0..<8).map { (n: Int) -> VFStatsReply.Stats? in
    let k = UInt64(n)
    return VFStatsReply.Stats(rxPackets: 100 + k, txPackets: 50 + k, rxBytes: 10_000 * (k + 1), txBytes: 3_000 * (k + 1))
  }

  @Test("auto: in switchdev mode each VF is read from its representor in the same dump, turned round; no PF request")
  func autoTakesTheRepresentor() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 8, switchID: "b8599f0300ab12cd")
    let domains = try (0..<8).map { try vfDomain($0) }
    var snapshot: [String: InterfaceCounters] = [:]
    for n in 0..<8 { snapshot["enp3s0f0np0_\(n)"] = InterfaceCounters(rxBytes: UInt64(7 * n), rxPackets: 1, txBytes: UInt64(1_000 * n), txPackets: 2) }
    let counters = CounterSnapshot(snapshot)
    let pfRequests = Atomic<Int>(0)
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: nil, pfStatistics: { _ in
      pfRequests.add(1, ordering: .sequentiallyConsistent); return [:]
    })
    let now = Instant(seconds: 3)
    let m = sources.measure(domains: domains, policy: policy(.auto), counters: counters, now: now, generation: 1)
    #expect(pfRequests.load(ordering: .sequentiallyConsistent) == 0, "the PF is asked only when no representor can say")
    let obs = observe(domains: domains, counters: counters, policy: policy(.auto), poolTotals: ["x540": 8], now: now, measurements: m)
    #expect(obs.vms.map(\.identity.uuid) == domains.map(\.uuid))
    for n in 0..<8 where n < obs.vms.count {
      #expect(sources.choices[domains[n].uuid] == TrafficSourceChoice(source: .representor))
      #expect(obs.vms[n].reading == .known(source: "enp3s0f0np0_\(n)",
                                           counters: VMCounters(rxBytes: UInt64(1_000 * n), txBytes: UInt64(7 * n), rxPackets: 2, txPackets: 1), at: now),
              "what the representor transmits the VF receives")
    }
  }

  @Test("auto: in legacy mode the PF's IFLA_VF_STATS measure every VF, one request per PF per cycle")
  func autoFallsToThePFOnce() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 8)
    let domains = try (0..<8).map { try vfDomain($0) }
    let reply = VFStatsReply.reply(pf: "enp3s0f0np0", vfs: Self.pfStats)
    let pfRequests = Atomic<Int>(0)
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: nil, pfStatistics: { pf in
      pfRequests.add(1, ordering: .sequentiallyConsistent)
      return try parseVFStatistics(reply, pf: pf)
    })
    let now = Instant(seconds: 9)
    for cycle in 1...2 {
      let m = sources.measure(domains: domains, policy: policy(.auto), counters: CounterSnapshot(), now: now, generation: 1)
      #expect(pfRequests.load(ordering: .sequentiallyConsistent) == cycle, "one RTM_GETLINK for the PF per cycle, not one per VM")
      for n in 0..<8 {
        #expect(sources.choices[domains[n].uuid]?.source == .pf)
        let k = UInt64(n)
        let expected = VFMeasurement.counters(source: "enp3s0f0np0/vf\(n)",
                                              VMCounters(rxBytes: 10_000 * (k + 1), txBytes: 3_000 * (k + 1), rxPackets: 100 + k, txPackets: 50 + k),
                                              at: now)
        #expect(m[domains[n].uuid] == expected, "IFLA_VF_STATS counts from the VF's side: rx is the guest's receive")
      }
    }
  }

  @Test("auto: a driver that answers without IFLA_VF_STATS passes the VM on to the guest agent, and the reason says so")
  func autoPassesOnWithoutStats() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0", address: "0000:03:00.0", vfs: 8)
    let domains = try (0..<8).map { try vfDomain($0) }
    let reply = VFStatsReply.reply(pf: "enp3s0f0", vfs: Array(repeating: nil, count: 8))
    let agents = ScriptedGuestAgents([domains[3].uuid: guestReply(mac: "52:54:00:12:00:13", rxBytes: 4_000_000, txBytes: 12)])
    let poller = GuestAgentPoller(transport: agents, timeoutSeconds: 1, clock: { Instant(seconds: 20) })
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: poller, pfStatistics: { pf in try parseVFStatistics(reply, pf: pf) })
    let p = policy(.auto)
    let first = sources.measure(domains: domains, policy: p, counters: CounterSnapshot(), now: Instant(seconds: 20), generation: 1)
    #expect(first[domains[3].uuid] == .unknown, "the guest agent's first answer comes with the next cycle")
    let reason = try #require(sources.choices[domains[3].uuid]?.reason)
    #expect(reason.contains("host: a VF passed to the guest has no host netdev"), "\(reason)")
    #expect(reason.contains("representor: PF enp3s0f0 has no phys_switch_id (not in switchdev mode)"), "\(reason)")
    #expect(reason.contains("pf: the driver of PF enp3s0f0 sends no IFLA_VF_STATS for VF 3"), "\(reason)")
    #expect(reason.contains("guestAgent: not asked yet"), "\(reason)")
    try waitFor("all eight guest agents answered") { agents.calls.load(ordering: .sequentiallyConsistent) == 8
      && poller.slots.withLock { $0.values.allSatisfy { $0.answer != nil } } }
    let second = sources.measure(domains: domains, policy: p, counters: CounterSnapshot(), now: Instant(seconds: 21), generation: 1)
    #expect(sources.choices[domains[3].uuid] == TrafficSourceChoice(source: .guestAgent))
    #expect(second[domains[3].uuid] == .counters(source: "guest:52:54:00:12:00:13/eth1",
                                                VMCounters(rxBytes: 4_000_000, txBytes: 12, rxPackets: 10, txPackets: 5), at: Instant(seconds: 20)))
    let other = try #require(sources.choices[domains[5].uuid])
    #expect(other.source == .unknown)
    #expect(other.reason?.contains("guestAgent: virDomainQemuAgentCommand on domain '\(domains[5].uuid)': Guest agent is not responding") == true,
            "\(other.reason ?? "")")
  }

  @Test("counters: pf is that source only: without per-VF statistics the VM is unknown, the guest agent is not asked")
  func anExplicitSourceDoesNotFallBack() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0", address: "0000:03:00.0", vfs: 2)
    let domains = try (0..<2).map { try vfDomain($0) }
    let reply = VFStatsReply.reply(pf: "enp3s0f0", vfs: [nil, nil])
    let agents = ScriptedGuestAgents([:])
    let poller = GuestAgentPoller(transport: agents, timeoutSeconds: 1, clock: { Instant(seconds: 1) })
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: poller, pfStatistics: { pf in try parseVFStatistics(reply, pf: pf) })
    let m = sources.measure(domains: domains, policy: policy(.pf), counters: CounterSnapshot(), now: Instant(seconds: 1), generation: 1)
    #expect(m[domains[0].uuid] == .unknown)
    #expect(sources.choices[domains[0].uuid]?.reason == "counters pf: pf: the driver of PF enp3s0f0 sends no IFLA_VF_STATS for VF 0")
    #expect(poller.slots.withLock { $0.isEmpty }, "no guest agent asked")
  }

  @Test("a VF whose address is no VF in sysfs is unknown, with the sysfs path that says why")
  func aVFMissingFromSysfsIsUnknown() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0", address: "0000:03:00.0", vfs: 1)
    let d = try vfDomain(0, address: "0000:3b:02.5")
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: nil, pfStatistics: { _ in [:] })
    _ = sources.measure(domains: [d], policy: policy(.representor), counters: CounterSnapshot(), now: Instant(seconds: 1), generation: 1)
    #expect(sources.choices[d.uuid]?.reason == "counters representor: representor: \(sys.root)/bus/pci/devices/0000:3b:02.5: no PCI device 0000:3b:02.5 on this host")
  }

  @Test("the stand-in pool: auto and host read the macvtap; guestAgent does not, it asks the guest")
  func theStandInPool() throws {
    let vm = try parseDomainXML(twoNICDomainXML.replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
    let counters = CounterSnapshot(["macvtap2": InterfaceCounters(rxBytes: 700, rxPackets: 7, txBytes: 30, txPackets: 3)])
    let agents = ScriptedGuestAgents([vm.uuid: guestReply(mac: "52:54:00:aa:00:07", rxBytes: 650, txBytes: 28)])
    let poller = GuestAgentPoller(transport: agents, timeoutSeconds: 1, clock: { Instant(seconds: 4) })
    let sources = VFCounterSources(sysfs: SysfsRoot("/nonexistent"), poller: poller, pfStatistics: { _ in [:] })
    for counters_ in [PoolCounters.auto, .host] {
      let m = sources.measure(domains: [vm], policy: policy(counters_), counters: counters, now: Instant(seconds: 4), generation: 1)
      #expect(m[vm.uuid] == .hostDevice("macvtap2", .macvtap), "\(counters_)")
    }
    _ = sources.measure(domains: [vm], policy: policy(.guestAgent), counters: counters, now: Instant(seconds: 4), generation: 1)
    try waitFor("the guest agent answered") { poller.slots.withLock { $0[vm.uuid]?.answer != nil } }
    let m = sources.measure(domains: [vm], policy: policy(.guestAgent), counters: counters, now: Instant(seconds: 5), generation: 1)
    #expect(m[vm.uuid] == .counters(source: "guest:52:54:00:aa:00:07/eth1", VMCounters(rxBytes: 650, txBytes: 28, rxPackets: 10, txPackets: 5),
                                    at: Instant(seconds: 4)))
    let obs = observe(domains: [vm], counters: counters, policy: policy(.guestAgent), poolTotals: ["x540": 2], now: Instant(seconds: 5), measurements: m)
    #expect(obs.vms[0].reading.counters?.0.rxBytes == 650, "the guest's counters, not the macvtap's")
  }

  @Test("a guest agent that does not answer never holds the cycle: measure returns, the VM is unknown until it does, and it is asked once at a time")
  func aSilentGuestNeverBlocks() throws {
    let vm = try parseDomainXML(twoNICDomainXML.replacingOccurrences(of: #"<interface type='bridge'>.*?</interface>"#, with: "", options: .regularExpression))
    let agents = ScriptedGuestAgents([vm.uuid: guestReply(mac: "52:54:00:aa:00:07", rxBytes: 1, txBytes: 1)], holdUntilReleased: true)
    let poller = GuestAgentPoller(transport: agents, timeoutSeconds: 1, clock: { Instant(seconds: 7) })
    let sources = VFCounterSources(sysfs: SysfsRoot("/nonexistent"), poller: poller, pfStatistics: { _ in [:] })
    let p = policy(.guestAgent)
    // The transport is held: were measure to wait on it, this test would never get past the loop.
    for _ in 0..<5 {
      let m = sources.measure(domains: [vm], policy: p, counters: CounterSnapshot(), now: Instant(seconds: 7), generation: 1)
      #expect(m[vm.uuid] == .unknown)
    }
    try waitFor("the one request reached the guest") { agents.calls.load(ordering: .sequentiallyConsistent) == 1 }
    #expect(sources.choices[vm.uuid]?.reason?.contains("guestAgent: no answer yet, asked 0.0 s ago (timeout 1 s)") == true,
            "\(sources.choices[vm.uuid]?.reason ?? "")")
    #expect(agents.calls.load(ordering: .sequentiallyConsistent) == 1, "no second request while the first is out")
    agents.gate?.signal()
    try waitFor("the answer arrived") { poller.slots.withLock { $0[vm.uuid]?.answer != nil } }
    let m = sources.measure(domains: [vm], policy: p, counters: CounterSnapshot(), now: Instant(seconds: 8), generation: 1)
    #expect(sources.choices[vm.uuid]?.source == .guestAgent)
    #expect(m[vm.uuid] != .unknown)
    agents.gate?.signal()  // the request that measure just started
  }

  @Test("a VF from a hostdev pool network, as libvirt's live XML shows it (type='hostdev', no network name), is found in its pool by its PCI address")
  func aHostdevNetworkVFIsAttributedToItsPool() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    let vfs = try sys.addPF("enp3s0f0", address: "0000:03:00.0", vfs: 4)
    // src/conf/domain_conf.c virDomainNetDefFormat: for a NIC of a hostdev network the live
    // XML reports the actual device: <source> holds only the VF's address.
    let live = try vfDomain(2).nics[0].xml.replacingOccurrences(of: #" network="vf-pool""#, with: "")
    var vm = try vfDomain(2)
    vm.nics[0] = try parseInterfaceXML(live)
    #expect(vm.nics[0].kind == .hostdevVF(pciAddress: vfs[2], network: nil))
    #expect(managedNICs(vm, policy: policy).vf == nil, "without its network the VF belongs to no pool")
    let sources = VFCounterSources(sysfs: SysfsRoot(sys.root), poller: nil, pfStatistics: { _ in [:] })
    let byPF = sources.attributingPools([vm], pools: [HostdevPool(network: "vf-pool", pf: "enp3s0f0", members: [])])
    #expect(byPF[0].nics[0].kind == .hostdevVF(pciAddress: vfs[2], network: "vf-pool"))
    #expect(managedNICs(byPF[0], policy: policy).pool == "x540")
    let byMember = sources.attributingPools([vm], pools: [HostdevPool(network: "vf-pool", pf: nil, members: [PCIAddress(vfs[2])!])])
    #expect(byMember[0].nics[0].kind == .hostdevVF(pciAddress: vfs[2], network: "vf-pool"))
    let untouched = [try vfDomain(1)]
    let same = sources.attributingPools(untouched, pools: [HostdevPool(network: "vf-pool", pf: "enp3s0f0", members: [])])
    let identical = same.span.isIdentical(to: untouched.span)
    #expect(identical, "nothing to fill in: the same array, so observe keeps its cache")
    #expect(pciAddress(poolMember: "0x0000:0x03:0x00:0x4") == PCIAddress(vfs[2]))
  }

  @Test("the metrics say which source measures each VM on a VF, and why one is unknown")
  func metricsCarryTheSource() {
    let metrics = Metrics()
    metrics.observeCounterSources([(vm: "vm3", source: "unknown", reason: "counters pf: pf: no \"stats\""), (vm: "vm1", source: "guestAgent", reason: nil)])
    let text = metrics.render()
    #expect(text.contains(#"vfshift_vm_counter_source{vm="vm1",source="guestAgent",reason=""} 1"#), "\(text)")
    #expect(text.contains(#"vfshift_vm_counter_source{vm="vm3",source="unknown",reason="counters pf: pf: no \"stats\""} 1"#), "\(text)")
  }

  @Test("status JSON names the counter source of each VM and why one is unknown")
  func statusCarriesTheSource() throws {
    let status = AgentStatus(policy: "p", dryRun: true, pid: 1, cycle: 2, intervalSeconds: 1, updatedAt: "t", pools: [],
                             vms: [StatusRow(vm: "vm3", className: "high", placement: "vf:x540", bytesPerSecond: nil, packetsPerSecond: nil,
                                             intensive: false, decision: "keep", counterSource: "unknown",
                                             counterSourceReason: "counters pf: pf: no stats"),
                                   StatusRow(vm: "vm4", className: "high", placement: "virtio", bytesPerSecond: 5, packetsPerSecond: 1,
                                             intensive: false, decision: "keep", counterSource: "host")])
    let text = String(decoding: status.json, as: UTF8.self)
    #expect(text.contains(#""counterSource":"unknown","counterSourceReason":"counters pf: pf: no stats""#), "\(text)")
    let back = try JSONDecoder().decode(AgentStatus.self, from: Data(status.json))
    #expect(back.vms.map(\.counterSource) == ["unknown", "host"])
  }
}

/// The guest-agent source against the bed's real guests (qemu-ga in their
/// initramfs, virtio-serial, libvirt's virDomainQemuAgentCommand).
@Suite("guest agent counters on the real test bed", .serialized, .enabled(if: TestBed.enabled))
struct GuestAgentLiveTests {
  @Test("a guest streamed at 3 MB/s: the rate read through its guest agent, off the loop, is within 20 % of the paced rate")
  func guestAgentRateMatchesThePacedRate() async throws {
    let bed = try TestBed.require()
    let lease = TestBedLease()
    defer { withExtendedLifetime(lease) {} }
    let guest = try #require(bed.managedGuests.last)
    let connection = try LibvirtConnection()
    defer { connection.close() }
    let live = try parseDomainXML(try connection.liveXML(uuid: guest.uuid))
    let nic = try #require(live.nics.first { $0.mac == guest.mac && $0.hostDevice != nil }, "the data NIC, which the guest agent can be matched to")
    let started = ContinuousClock.now
    let poller = GuestAgentPoller(transport: connection, timeoutSeconds: 5, clock: {
      let d = ContinuousClock.now - started
      return Instant(seconds: Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    })
    /// One answer: asked, then waited for with a deadline (the agent's loop never waits; a test may).
    func sample() throws -> (VMCounters, Instant) {
      poller.ask([guest.uuid])
      var answer: GuestAgentPoller.Answer? = nil
      try waitFor("the guest agent of \(guest.name) answered", seconds: 15) {
        if case .success(let a) = poller.take(guest.uuid) { answer = a; return true }
        return false
      }
      let interfaces = try answer!.interfaces.get()
      return (try guestCounters(interfaces, mac: nic.mac).get().counters, answer!.at)
    }
    let traffic = try TrafficSource(to: guest.ip, bytesPerSecond: 3e6)
    defer { traffic.stop() }
    let (warm, _) = try sample()
    var (c1, t1) = try sample()
    let deadline = Date().addingTimeInterval(20)
    while c1.rxBytes < warm.rxBytes + 1_000_000 {  // the stream is flowing
      guard Date() < deadline else { Issue.record("no traffic reached \(guest.name) in 20 s"); return }
      (c1, t1) = try sample()
    }
    try await Task.sleep(for: .seconds(4))  // the measurement window, not a wait for an event
    let (c2, t2) = try sample()
    let rate = Double(c2.rxBytes - c1.rxBytes) / (t2 - t1)
    #expect(abs(rate - 3e6) / 3e6 <= 0.2, "guest agent says \(rate) B/s into \(guest.name), paced at 3e6")
  }
}
