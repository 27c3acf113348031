import Foundation
import Testing
import VFShiftCore
@testable import VFShiftLibvirt

/// libvirt's own `test:///` driver: a real libvirt connection, events and
/// metadata included, that needs no daemon. (It cannot hot-plug: those
/// actions are shown on the test bed.)
@Suite struct TestDriverTests {
  static let node = """
    <node>
    <domain type='test'>
      <name>alpha</name><uuid>11111111-2222-3333-4444-555555555501</uuid>
      <metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="low"/></metadata>
      <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
      <devices>
        <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='vfsbr0'/><model type='virtio'/><alias name='ua-net0'/></interface>
        <interface type='direct'><mac address='52:54:00:00:00:02'/><source dev='vethB1' mode='passthrough'/><model type='virtio'/></interface>
      </devices>
    </domain>
    <domain type='test'>
      <name>beta</name><uuid>11111111-2222-3333-4444-555555555502</uuid>
      <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
      <devices>
        <interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:03'/><source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x2'/></source><teaming type='transient' persistent='ua-net0'/></interface>
      </devices>
    </domain>
    </node>
    """

  static func nodeURI() throws -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("vfshift-test-node-\(getpid()).xml")
    try node.write(to: file, atomically: true, encoding: .utf8)
    return "test://\(file.path)"
  }

  @Test func listsAndReadsDomains() throws {
    let c = try LibvirtConnection(uri: try Self.nodeURI())
    let domains = try c.runningDomains().sorted { $0.name < $1.name }
    #expect(domains.map(\.name) == ["alpha", "beta"])
    let alpha = try c.inventory(uuid: "11111111-2222-3333-4444-555555555501")
    #expect(alpha.qosLabel == "low")
    #expect(alpha.nics.map(\.kind) == [.virtioBridge(bridge: "vfsbr0"), .direct(dev: "vethB1", mode: "passthrough")])
    #expect(alpha.nics.map(\.hostDeviceKind) == [.tap, .macvtap])
    #expect(alpha.nics.allSatisfy { $0.hostDevice != nil }, "the driver names every NIC's host device")
    let beta = try c.inventory(uuid: "11111111-2222-3333-4444-555555555502")
    #expect(beta.qosLabel == nil)
    #expect(beta.nics.first?.kind == .hostdevVF(pciAddress: "0000:03:10.2", network: nil))
    #expect(beta.nics.first?.teaming == .transient(persistentAlias: "ua-net0"))
  }

  @Test func errorsCarryFunctionDomainAndLibvirtsMessage() throws {
    let c = try LibvirtConnection(uri: "test:///default")
    do {
      _ = try c.liveXML(uuid: "00000000-0000-0000-0000-00000000dead")
      Issue.record("a domain that does not exist was found")
    } catch {
      #expect(error.isNoDomain)
      #expect(error.function == "virDomainLookupByUUIDString")
      #expect(error.domain == "00000000-0000-0000-0000-00000000dead")
      #expect(error.message.contains("Domain not found"), "\(error)")
    }
    #expect(throws: LibvirtError.self) { try LibvirtConnection(uri: "nosuchdriver:///x") }
  }

  @Test func interfaceStatsComeFromLibvirt() throws {
    let c = try LibvirtConnection(uri: "test:///default")
    let uuid = try #require(try c.runningDomains().first).uuid
    let device = try #require(try c.inventory(uuid: uuid).nics.first?.hostDevice)
    _ = try c.interfaceStats(uuid: uuid, device: device)
    #expect(throws: LibvirtError.self) { try c.interfaceStats(uuid: uuid, device: "nosuchdev0") }
  }

  @Test func journalIsWrittenReadAndCleared() throws {
    let c = try LibvirtConnection(uri: "test:///default")
    let uuid = try #require(try c.runningDomains().first).uuid
    #expect(try c.readJournal(uuid: uuid) == nil)
    let j = SwapJournal(operation: .promote, pool: "vfs-pool", oldAlias: "ua-net0", newAlias: "ua-vfshift-net0",
                        step: .attaching, startedAtUnixMilliseconds: 42, savedInterfaceXML: Fixture.savedBridgeNIC)
    try c.writeJournal(uuid: uuid, j)
    #expect(try c.readJournal(uuid: uuid) == j)
    #expect(try c.inventory(uuid: uuid).journal == j, "the live XML carries it too")
    try c.clearJournal(uuid: uuid)
    try c.clearJournal(uuid: uuid)  // idempotent
    #expect(try c.readJournal(uuid: uuid) == nil)
  }

  /// A metadata change arrives as an event and the inventory re-reads that
  /// one domain, not all of them.
  @Test func inventoryFollowsEventsWithoutFullReads() async throws {
    let c = try LibvirtConnection(uri: try Self.nodeURI())
    let alpha = "11111111-2222-3333-4444-555555555501"
    let events = c.subscribe()
    let inventory = Inventory(connection: c)
    try await inventory.start()
    defer { inventory.stop() }
    #expect(inventory.snapshot().map(\.name) == ["alpha", "beta"])
    #expect(inventory.readCounts == InventoryReadCounts(fullReads: 1, domainReads: 0))
    let generation = inventory.generation

    try c.setQoSLabel(uuid: alpha, className: "high")
    var sawEvent = false
    for await e in events {
      if case .metadataChanged(alpha, VFShiftNamespace.qos) = e { sawEvent = true; break }
    }
    #expect(sawEvent)
    try await waitUntil(seconds: 5) { inventory.domain(uuid: alpha)?.qosLabel == "high" }
    #expect(inventory.generation > generation)
    #expect(inventory.readCounts.fullReads == 1, "an event never costs a full re-read")
    #expect(inventory.readCounts.domainReads >= 1)
    // Nothing happening costs nothing.
    let counts = inventory.readCounts
    for _ in 0..<100 { _ = inventory.snapshot() }
    #expect(inventory.readCounts == counts)
  }
}

/// Polls `condition` until it holds or `seconds` pass (then records an issue).
func waitUntil(seconds: Double, _ what: String = "condition", _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  while ContinuousClock.now < deadline {
    if try condition() { return }
    try await Task.sleep(for: .milliseconds(20))
  }
  if try condition() { return }
  Issue.record("\(what) did not hold within \(seconds) s")
}
