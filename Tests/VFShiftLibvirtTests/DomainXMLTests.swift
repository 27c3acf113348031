import Testing
import VFShiftCore
@testable import VFShiftLibvirt

@Suite struct DomainXMLTests {
  @Test func readsIdentityLabelAndJournal() throws {
    let d = try parseDomainXML(Fixture.guest)
    #expect(d.name == "vfs-g3")
    #expect(d.uuid == "5a1f3e0c-8d2b-4c55-9e0f-0123456789ab")
    #expect(d.qosLabel == "high", "only the element in vfshift's QoS namespace counts, not other:thing")
    let j = try #require(d.journal)
    #expect(j.operation == .promote && j.step == .detaching && j.pool == "vfs-pool")
    #expect(j.oldAlias == "ua-net0" && j.newAlias == "ua-vfshift-net0" && j.startedAtUnixMilliseconds == 1_718_000_000_123)
    let saved = try parseInterfaceXML(try #require(j.savedInterfaceXML))
    #expect(saved.kind == .virtioBridge(bridge: "vfsbr0") && saved.alias == "ua-net0")
  }

  @Test func readsEveryNICField() throws {
    let nics = try parseDomainXML(Fixture.guest).nics
    try #require(nics.count == 4)
    let rows: [(rule: String, nic: NIC, kind: NICKind, model: String?, mac: String, alias: String?,
                host: String?, hostKind: HostDeviceKind?, teaming: Teaming?)] = [
      ("a bridge NIC is a tap the host transmits guest-bound traffic on", nics[0],
       .virtioBridge(bridge: "vfsbr0"), "virtio", "52:54:00:12:00:11", "ua-net0", "vnet4", .tap, nil),
      ("a passthrough pool member is a macvtap named with its pool and member; MAC lower-cased", nics[1],
       .poolMember(network: "vfs-pool", memberDev: "vfsvf1"), "virtio", "52:54:00:ab:cd:ef", "ua-vfshift-net0",
       "macvtap2", .macvtap, nil),
      ("a network NIC keeps the bridge libvirt resolved", nics[2],
       .virtioNetwork(network: "default", bridge: "virbr0"), "e1000", "52:54:00:00:00:99", "net2", "vnet5", .tap, nil),
      ("a hostdev VF has its PCI address and the failover role, no host netdev", nics[3],
       .hostdevVF(pciAddress: "0000:3b:02.5", network: "vf-pool"), nil, "52:54:00:12:00:11", "ua-vf0", nil,
       .virtualFunction, .transient(persistentAlias: "ua-net0")),
    ]
    for row in rows {
      #expect(row.nic.kind == row.kind, "\(row.rule)")
      #expect(row.nic.model == row.model, "\(row.rule)")
      #expect(row.nic.mac == row.mac, "\(row.rule)")
      #expect(row.nic.alias == row.alias, "\(row.rule)")
      #expect(row.nic.hostDevice == row.host, "\(row.rule)")
      #expect(row.nic.hostDeviceKind == row.hostKind, "\(row.rule)")
      #expect(row.nic.teaming == row.teaming, "\(row.rule)")
    }
    #expect(nics[1].poolNetwork == "vfs-pool")
    // The saved element is a whole <interface> that reads back the same.
    #expect(try parseInterfaceXML(nics[1].xml) == nics[1])
  }

  @Test func errorsNameTheElement() {
    let rows: [(rule: String, xml: String, path: String)] = [
      ("a NIC without a MAC is refused, naming which interface",
       Fixture.guest.replacingOccurrences(of: "<mac address='52:54:00:00:00:99'/>", with: ""),
       "domain/devices/interface[3]/mac@address"),
      ("a bridge NIC without a bridge is refused",
       Fixture.guest.replacingOccurrences(of: "<source bridge='vfsbr0'/>\n      <target dev='vnet4'/>", with: "<target dev='vnet4'/>"),
       "domain/devices/interface[1]/source@bridge"),
      ("a bad PCI address names its field",
       Fixture.guest.replacingOccurrences(of: "bus='0x3b'", with: "bus='zz'"),
       "domain/devices/interface[4]/source/address@bus"),
      ("a journal with an unknown step names the attribute",
       Fixture.guest.replacingOccurrences(of: "step=\"detaching\"", with: "step=\"dancing\""),
       "domain/metadata/journal@step"),
      ("no UUID", Fixture.guest.replacingOccurrences(of: "<uuid>5a1f3e0c-8d2b-4c55-9e0f-0123456789ab</uuid>", with: ""),
       "domain/uuid"),
      ("not XML at all", "<<<>>>", "domain"),
      ("not a domain", "<network><name>x</name></network>", "network"),
    ]
    for row in rows {
      #expect(throws: DomainXMLError.self, "\(row.rule)") { try parseDomainXML(row.xml) }
      do {
        _ = try parseDomainXML(row.xml)
      } catch {
        #expect(error.path == row.path, "\(row.rule): \(error)")
      }
    }
  }

  /// Any bytes either parse or throw; none crash. Deterministic mutations of the fixture.
  @Test func mutatedXMLNeverCrashes() {
    var rng = SplitMix64(seed: 0x5EED)
    let base = Array(Fixture.guest.utf8)
    var parsed = 0, refused = 0
    for _ in 0..<2000 {
      var bytes = base
      for _ in 0..<Int(rng.next() % 6 + 1) {
        let i = Int(rng.next() % UInt64(bytes.count))
        switch rng.next() % 4 {
        case 0: bytes.remove(at: i)
        case 1: bytes[i] = UInt8(truncatingIfNeeded: rng.next())
        case 2: bytes.insert(Array("<>'\"&/=".utf8)[Int(rng.next() % 7)], at: i)
        default: bytes = Array(bytes[..<i])
        }
        if bytes.isEmpty { bytes = [0x3c] }
      }
      do {
        _ = try parseDomainXML(String(decoding: bytes, as: UTF8.self))
        parsed += 1
      } catch {
        refused += 1
      }
    }
    #expect(parsed + refused == 2000)
    #expect(refused > 0, "mutations that break the XML must be refused")
  }
}

struct SplitMix64 {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
