import Foundation
import Testing
import VFShiftCore
import VFShiftHost
@testable import VFShiftLibvirt
import VFShiftTestSupport

/// On the real test bed (deploy/testbed/up): libvirtd, TCG guests vfs-g*,
/// bridge vfsbr0, namespace vfs-src at 198.18.0.1, pool network vfs-pool of
/// passthrough veth "VFs". Serialized: the tests share guests and the pool.
/// Each test puts its guest back as it found it, also when it fails.
@Suite(.serialized, .enabled(if: TestBed.enabled)) struct TestBedTests {
  // MARK: inventory

  /// Every NIC field of 3 running guests against virsh's own answers, and the
  /// counter direction rule against /proc/net/dev vs `virsh domifstat`.
  @Test func inventoryMatchesVirsh() async throws {
    let bed = try Bed.require()
    let c = try LibvirtConnection()
    let guests = Array(bed.managed.prefix(3))
    try #require(guests.count == 3, "the bed has \(bed.managed.count) labelled guests")
    // One guest gets a pool member too, so both host device kinds are checked.
    let withPool = guests[0]
    try await withCleanup(c, bed, guests) {
      _ = try await c.attachPoolInterface(uuid: withPool.uuid, network: bed.pool, mac: nil, alias: "ua-vfshift-inv",
                                          deadline: .now + .seconds(20))
      let inventory = Inventory(connection: c)
      try await inventory.start()
      defer { inventory.stop() }
      for g in guests {
        let d = try #require(inventory.domain(uuid: g.uuid), "\(g.name) in the inventory")
        #expect(d.name == g.name)
        #expect(d.qosLabel == g.label, "\(g.name): label from <metadata>")
        // virsh domiflist: Interface Type Source Model MAC, one line per NIC.
        let rows = try sh("virsh -q domiflist \(g.name)").output.split(separator: "\n")
          .map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let aliases = try sh("virsh dumpxml \(g.name) --xpath '//devices/interface/alias/@name'").output
          .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
          .map { $0.replacingOccurrences(of: "name=", with: "").replacingOccurrences(of: "\"", with: "") }
        try #require(rows.count == d.nics.count, "\(g.name): virsh lists \(rows.count) NICs, inventory \(d.nics.count)")
        for (row, nic) in zip(rows, d.nics) {
          try #require(row.count == 5, "domiflist row \(row)")
          #expect(nic.hostDevice == row[0], "\(g.name): host device")
          #expect(nic.mac == row[4], "\(g.name): MAC")
          #expect(nic.model == row[3], "\(g.name): model")
          switch nic.kind {
          case .virtioBridge(let bridge):
            let want = nic.alias == g.managementAlias ? bed.state.managementBridge : bed.bridge
            #expect(row[1] == "bridge" && row[2] == bridge && bridge == want)
            #expect(nic.hostDeviceKind == .tap && row[0].hasPrefix("vnet"))
          case .poolMember(let network, let member):
            // domiflist names the network; the member is in the live XML's source.
            #expect(row[1] == "direct" && row[2] == network && network == bed.pool)
            #expect(try sh("virsh dumpxml \(g.name)").output.contains("dev='\(member)' mode='passthrough'"))
            #expect(nic.hostDeviceKind == .macvtap && row[0].hasPrefix("macvtap"))
          default:
            Issue.record("\(g.name): unexpected NIC kind \(nic.kind)")
          }
        }
        #expect(d.nics.map(\.alias) == aliases, "\(g.name): aliases")
        // Direction: the host counters turned by hostDeviceKind equal libvirt's
        // guest-side counters. Traffic first so there is something to count:
        // with the neighbour forgotten the ping starts with an ARP broadcast,
        // which every port on the data bridge receives, the pool member too
        // (its random MAC has no address to ping, and its DHCP offer may be late).
        _ = try sh("ip netns exec \(bed.namespace) ip neigh flush all")
        _ = try sh("ip netns exec \(bed.namespace) ping -n -q -c 3 -i 0.2 -W 1 \(g.ip)")
        for nic in d.nics {
          let device = try #require(nic.hostDevice)
          let kind = try #require(nic.hostDeviceKind)
          try await expectSameCounters(c, uuid: g.uuid, device: device, kind: kind, guest: g.name)
        }
      }
      #expect(inventory.readCounts.fullReads == 1)
    }
  }

  // MARK: swap with continuous ping

  @Test func promoteAndDemoteWhilePinging() async throws {
    let bed = try Bed.require()
    let c = try LibvirtConnection()
    let g = try #require(bed.managed.first { $0.label == "high" } ?? bed.managed.first)
    try await withCleanup(c, bed, [g]) {
      let before = try c.inventory(uuid: g.uuid)
      let virtio = try #require(before.nic(alias: "ua-net0"))
      let ping = try ContinuousPing(ip: g.ip, namespace: bed.namespace)

      // Promote: journal, attach the pool "VF", see it answer, detach virtio by alias.
      var journal = SwapJournal(operation: .promote, pool: bed.pool, oldAlias: "ua-net0", newAlias: "ua-vfshift-net0",
                                step: .attaching, startedAtUnixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000),
                                savedInterfaceXML: virtio.xml)
      try c.writeJournal(uuid: g.uuid, journal)
      let added = c.subscribe()
      let vf = try await c.attachPoolInterface(uuid: g.uuid, network: bed.pool, mac: virtio.mac, alias: "ua-vfshift-net0",
                                               deadline: .now + .seconds(20))
      guard case .poolMember(bed.pool, let member) = vf.kind else { Issue.record("attached \(vf.kind)"); return }
      #expect(vf.mac == virtio.mac, "same MAC: the guest's DHCP lease carries over")
      #expect(vf.hostDeviceKind == .macvtap && vf.hostDevice?.hasPrefix("macvtap") == true)
      #expect(await firstEvent(added, within: 10) { $0 == .deviceAdded(uuid: g.uuid, alias: "ua-vfshift-net0") } != nil)
      #expect(try sh("virsh dumpxml \(g.name)").output.contains("dev='\(member)' mode='passthrough'"))
      // The guest leases its address on the new NIC (same MAC, same lease),
      // with the virtio NIC still present.
      try await waitFor("the guest holds \(g.ip) on two NICs with \(vf.mac)", seconds: 20) {
        try addressedNICs(g, mac: vf.mac) == 2
      }
      #expect(try bed.ping(g.ip), "the guest answers on the pool NIC")

      journal.step = .detaching
      try c.writeJournal(uuid: g.uuid, journal)
      let removed = c.subscribe()
      let detach = await c.detachInterface(uuid: g.uuid, alias: "ua-net0", deadline: .now + .seconds(20))
      #expect(detach.outcome == .removed(confirmedBy: .event) || detach.outcome == .removed(confirmedBy: .liveXML))
      #expect(await firstEvent(removed, within: 10) { $0 == .deviceRemoved(uuid: g.uuid, alias: "ua-net0") } != nil,
              "DEVICE_REMOVED for ua-net0")
      #expect(try c.inventory(uuid: g.uuid).nics.map(\.alias).filter { $0 != g.managementAlias } == ["ua-vfshift-net0"])
      try c.clearJournal(uuid: g.uuid)
      try await waitFor("guest answers on the pool NIC alone", seconds: 20) { try bed.ping(g.ip) }

      // Demote: restore the saved virtio NIC, detach the pool NIC, give the member back.
      journal = SwapJournal(operation: .demote, pool: bed.pool, oldAlias: "ua-vfshift-net0", newAlias: "ua-net0",
                            step: .attaching, startedAtUnixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000),
                            savedInterfaceXML: virtio.xml)
      try c.writeJournal(uuid: g.uuid, journal)
      let restored = try await c.restoreInterface(uuid: g.uuid, savedXML: virtio.xml, deadline: .now + .seconds(20))
      #expect(restored.alias == "ua-net0" && restored.mac == virtio.mac && restored.kind == virtio.kind)
      #expect(restored.hostDevice?.hasPrefix("vnet") == true)
      try await waitFor("the guest holds \(g.ip) on its restored virtio NIC too", seconds: 20) {
        try addressedNICs(g, mac: virtio.mac) == 2
      }
      journal.step = .detaching
      try c.writeJournal(uuid: g.uuid, journal)
      let removedVF = c.subscribe()
      let back = await c.detachInterface(uuid: g.uuid, alias: "ua-vfshift-net0", deadline: .now + .seconds(20))
      #expect(back.releasedPoolMember == member, "outcome \(back.outcome)")
      #expect(await firstEvent(removedVF, within: 10) { $0 == .deviceRemoved(uuid: g.uuid, alias: "ua-vfshift-net0") } != nil)
      try bed.linkUp(member)
      try c.clearJournal(uuid: g.uuid)
      try await waitFor("guest answers on the virtio NIC again", seconds: 20) { try bed.ping(g.ip) }

      let (sent, received) = try ping.stop()
      print("promote+demote of \(g.name) under ping every 10 ms: \(sent - received) of \(sent) pings lost")
      #expect(sent > 0 && received > 0)
      #expect(try c.inventory(uuid: g.uuid).nics.map(\.alias).filter { $0 != g.managementAlias } == ["ua-net0"])
    }
  }

  // MARK: pool exhausted

  @Test func exhaustedPoolLeavesTheVMAsItWas() async throws {
    let bed = try Bed.require()
    let c = try LibvirtConnection()
    let members = bed.state.poolMembers
    let guests = Array(bed.managed.prefix(members.count + 1))
    try #require(guests.count == members.count + 1, "need \(members.count + 1) guests for a pool of \(members.count)")
    try await withCleanup(c, bed, guests) {
      let countsBefore = try bed.poolConnections()
      for (i, g) in guests.dropLast().enumerated() {
        _ = try await c.attachPoolInterface(uuid: g.uuid, network: bed.pool, mac: nil, alias: "ua-vfshift-fill\(i)",
                                            deadline: .now + .seconds(20))
      }
      let last = guests[guests.count - 1]
      let full = try bed.poolConnections()
      let nicsBefore = try c.inventory(uuid: last.uuid).nics
      do {
        _ = try await c.attachPoolInterface(uuid: last.uuid, network: bed.pool, mac: nil, alias: "ua-vfshift-extra",
                                            deadline: .now + .seconds(20))
        Issue.record("an attach succeeded on a full pool")
      } catch let error as ActionError {
        guard case .libvirt(let e) = error else { Issue.record("expected libvirt's refusal, got \(error)"); return }
        print("full pool: \(e)")
        #expect(e.function == "virDomainAttachDeviceFlags" && e.domain == last.name)
        #expect(e.message.contains("none are available"), "\(e.message)")
      }
      #expect(try c.inventory(uuid: last.uuid).nics == nicsBefore, "the VM keeps exactly the NICs it had")
      #expect(try bed.poolConnections() == full, "the failed attach took nothing from the pool")
      #expect(try bed.ping(last.ip))
      for (i, g) in guests.dropLast().enumerated() {
        let r = await c.detachInterface(uuid: g.uuid, alias: "ua-vfshift-fill\(i)", deadline: .now + .seconds(20))
        if let m = r.releasedPoolMember { try bed.linkUp(m) }
      }
      #expect(try bed.poolConnections() == countsBefore, "connection counts back to what they were")
    }
  }

  // MARK: paused guest

  @Test func pausedGuestDetachPassesItsDeadline() async throws {
    let bed = try Bed.require()
    let c = try LibvirtConnection()
    let g = try #require(bed.managed.last)
    try await withCleanup(c, bed, [g]) {
      let vf = try await c.attachPoolInterface(uuid: g.uuid, network: bed.pool, mac: nil, alias: "ua-vfshift-paused",
                                               deadline: .now + .seconds(20))
      // Let the guest take the device before freezing it.
      try await waitFor("the guest has brought the new NIC up", seconds: 20) {
        var reader = ProcNetDevReader()
        guard let dev = vf.hostDevice, let s = try reader.read()[dev] else { return false }
        return s.txPackets > 0  // the guest's gratuitous ARP
      }
      _ = try sh("virsh suspend \(g.name)", check: true)
      let events = c.subscribe()
      let r = await c.detachInterface(uuid: g.uuid, alias: "ua-vfshift-paused", deadline: .now + .seconds(3))
      #expect(r.outcome == .stillPresentAfterDeadline, "\(r.outcome)")
      #expect(try c.inventory(uuid: g.uuid).nic(alias: "ua-vfshift-paused") != nil, "device still present")
      _ = try sh("virsh resume \(g.name)", check: true)
      let outcome = await c.waitForRemoval(uuid: g.uuid, alias: "ua-vfshift-paused", deadline: .now + .seconds(20))
      #expect(outcome == .removed(confirmedBy: .event) || outcome == .removed(confirmedBy: .liveXML), "\(outcome)")
      let event = await firstEvent(events, within: 10) { $0 == .deviceRemoved(uuid: g.uuid, alias: "ua-vfshift-paused") }
      #expect(event != nil, "DEVICE_REMOVED arrives after resume")
      print("paused \(g.name): detach reported \(r.outcome); after resume: \(outcome), event \(String(describing: event))")
      if case .poolMember(_, let m) = vf.kind { try bed.linkUp(m) }
    }
  }

  // MARK: libvirtd restart

  @Test func reconnectsAfterLibvirtdRestart() async throws {
    let bed = try Bed.require()
    let c = try LibvirtConnection(reconnectPolicy: .init(firstDelay: .milliseconds(100), maximumDelay: .seconds(1)))
    let inventory = Inventory(connection: c)
    try await inventory.start()
    defer { inventory.stop() }
    let before = inventory.snapshot()
    #expect(!before.isEmpty)
    let events = c.subscribe()
    _ = try sh("pkill -x libvirtd")  // SIGTERM, as an operator or systemd would
    let lost = await firstEvent(events, within: 20) { if case .disconnected = $0 { true } else { false } }
    #expect(lost != nil, "disconnected reported")
    #expect(!c.isConnected)
    #expect(throws: LibvirtError.self) { try c.runningDomains() }
    try await waitFor("old libvirtd gone", seconds: 20) { try sh("pgrep -x libvirtd").status != 0 }
    try TestBed.startDaemon("/usr/sbin/libvirtd", ["-d"], environment: ["LIBVIRT_LOG_OUTPUTS=3:file:/var/log/libvirt/libvirtd.log"])
    try await waitFor("libvirtd answers again", seconds: 30) { try sh("virsh -q list").status == 0 }
    let back = await firstEvent(events, within: 30) { $0 == .reconnected }
    #expect(back != nil, "reconnected reported")
    try await waitFor("inventory re-read after reconnect", seconds: 20) {
      !inventory.isStale && inventory.readCounts.fullReads >= 2
    }
    #expect(inventory.snapshot() == before, "same inventory as before the restart")
    #expect(try c.runningDomains().count == before.count)
  }

  // MARK: journal across processes

  @Test func journalOutlivesTheWriter() async throws {
    let bed = try Bed.require()
    let g = try #require(bed.managed.first)
    let uuid = g.uuid
    let journal = SwapJournal(operation: .promote, pool: bed.pool, oldAlias: "ua-net0", newAlias: "ua-vfshift-net0",
                              step: .detachPending, startedAtUnixMilliseconds: 1_718_000_000_000,
                              savedInterfaceXML: Fixture.savedBridgeNIC)
    do {
      // The writer: its own connection, gone before anyone reads.
      let writer = try LibvirtConnection()
      try writer.writeJournal(uuid: uuid, journal)
      writer.close()
    }
    // Another process reads it: virsh, then our parser over what virsh printed.
    let printed = try sh("virsh metadata \(g.name) \(VFShiftNamespace.journal)", check: true).output
    #expect(try SwapJournal(xml: printed) == journal, "virsh printed:\n\(printed)")
    #expect(try sh("virsh dumpxml \(g.name)").output.contains("op=\"promote\""))
    let reader = try LibvirtConnection()
    #expect(try reader.inventory(uuid: uuid).journal == journal)
    try reader.clearJournal(uuid: uuid)
    #expect(try sh("virsh metadata \(g.name) \(VFShiftNamespace.journal)").status != 0, "cleared for other processes too")
  }
}

// MARK: - Test bed access

/// The bed as `deploy/testbed/up` left it (VFShiftTestSupport brings it up).
struct Bed {
  typealias Guest = TestBedState.Guest
  let state: TestBedState
  var guests: [Guest] { state.guests }
  /// Guests with a QoS label: the ones vfshift manages.
  var managed: [Guest] { state.managedGuests }
  /// Exclusive use of the bed for as long as the test holds this value.
  var lease: TestBedLease
  var pool: String { state.poolNetwork }
  var bridge: String { state.bridge }
  var namespace: String { state.namespace }

  /// The running bed; throws why not (the suite is only enabled when the bed
  /// can come up, or always with CI=true, so a missing bed fails there).
  static func require() throws -> Bed { Bed(state: try TestBed.require(), lease: TestBedLease()) }

  func ping(_ ip: String) throws -> Bool {
    try sh("ip netns exec \(namespace) ping -n -q -c 1 -W 1 \(ip)").status == 0
  }

  func linkUp(_ dev: String) throws {
    _ = try sh("ip link set dev \(dev) up", check: true)
  }

  /// `connections` of each member in `virsh net-dumpxml`, absent = 0.
  func poolConnections() throws -> [String: Int] {
    let xml = try sh("virsh net-dumpxml \(pool)", check: true).output
    var out: [String: Int] = [:]
    for line in xml.split(separator: "\n") where line.contains("<interface dev=") {
      let dev = matches(String(line), #"dev='([^']+)'"#).first ?? "?"
      out[dev] = matches(String(line), #"connections='(\d+)'"#).first.flatMap { Int($0) } ?? 0
    }
    return out
  }
}

func matches(_ s: String, _ pattern: String) -> [String] {
  guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
  return re.matches(in: s, range: NSRange(s.startIndex..., in: s)).compactMap {
    Range($0.range(at: 1), in: s).map { String(s[$0]) }
  }
}

@discardableResult
/// How many of the guest's NICs hold its data address on `mac`, as its guest agent shows them.
func addressedNICs(_ g: TestBedState.Guest, mac: String) throws -> Int {
  let reply = try sh("virsh -q qemu-agent-command \(g.name) '{\"execute\":\"guest-network-get-interfaces\"}'", check: true)
  return try parseGuestNetworkInterfaces(reply.output).filter { $0.mac == mac && $0.ipv4.contains(g.ip) }.count
}

func sh(_ command: String, check: Bool = false) throws -> (status: Int32, output: String) {
  let r = try runTool("/bin/sh", ["-c", command])
  if check && r.status != 0 {
    throw TestBedCommandError(command: command, status: r.status, output: r.output)
  }
  return r
}

func sh0(_ command: String) -> String { (try? sh(command).output) ?? "" }

struct TestBedCommandError: Error, CustomStringConvertible {
  var command: String
  var status: Int32
  var output: String
  var description: String { "`\(command)` exited \(status): \(output)" }
}

/// Puts each guest in its initial state (`deploy/testbed/reset-guest`: resumed,
/// one virtio NIC `ua-net0`, no metadata but its label, pool members up), runs
/// `body`, and resets them again, also when `body` fails.
func withCleanup(_ c: LibvirtConnection, _ bed: Bed, _ guests: [Bed.Guest],
                 _ body: () async throws -> Void) async throws {
  for g in guests { try TestBed.resetGuest(g.name) }
  var failure: (any Error)?
  do { try await body() } catch { failure = error }
  for g in guests {
    do { try TestBed.resetGuest(g.name) } catch { failure = failure ?? error }
  }
  if let failure { throw failure }
}

/// The first event matching `predicate` within `seconds`, or nil.
func firstEvent(_ stream: AsyncStream<DomainEvent>, within seconds: Int,
                _ predicate: @escaping @Sendable (DomainEvent) -> Bool) async -> DomainEvent? {
  await withTaskGroup(of: DomainEvent?.self) { group in
    group.addTask {
      for await e in stream where predicate(e) { return e }
      return nil
    }
    group.addTask {
      try? await Task.sleep(for: .seconds(seconds))
      return nil
    }
    let first = await group.next() ?? nil
    group.cancelAll()
    return first
  }
}

func waitFor(_ what: String, seconds: Double, _ condition: () throws -> Bool) async throws {
  try await waitUntil(seconds: seconds, what, condition)
}

/// /proc/net/dev's host-side counters, turned by the device kind, equal
/// libvirt's guest-side ones. Retried until a quiet moment where the host
/// counters did not move between the two reads around libvirt's.
func expectSameCounters(_ c: LibvirtConnection, uuid: String, device: String, kind: HostDeviceKind,
                        guest: String) async throws {
  var reader = ProcNetDevReader()
  for _ in 0..<50 {
    let a = try reader.read()[device]
    let viaLibvirt = try c.interfaceStats(uuid: uuid, device: device)
    let b = try reader.read()[device]
    guard let a, a == b else {
      try await Task.sleep(for: .milliseconds(50))
      continue
    }
    let viaProc = kind.vmCounters(a)
    #expect(viaProc.rxBytes == viaLibvirt.rxBytes && viaProc.txBytes == viaLibvirt.txBytes,
            "\(guest) \(device) (\(kind)): /proc turned \(viaProc) vs libvirt \(viaLibvirt)")
    #expect(viaProc.rxBytes > 0, "\(guest) \(device): the guest received the pings")
    return
  }
  Issue.record("\(guest) \(device): counters never stood still for a comparison")
}

/// `ping -i 0.01` from the namespace until stopped; counts what got through.
final class ContinuousPing {
  let process = Process()
  let pipe = Pipe()
  init(ip: String, namespace: String) throws {
    process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
    process.arguments = ["netns", "exec", namespace, "ping", "-n", "-q", "-i", "0.01", "-W", "1", ip]
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
  }
  deinit { if process.isRunning { process.terminate() } }

  func stop() throws -> (sent: Int, received: Int) {
    process.interrupt()
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard let sent = matches(out, #"(\d+) packets transmitted"#).first.flatMap({ Int($0) }),
          let received = matches(out, #"(\d+) received"#).first.flatMap({ Int($0) }) else {
      throw TestBedCommandError(command: "ping", status: process.terminationStatus, output: out)
    }
    return (sent, received)
  }
}

