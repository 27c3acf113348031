import Foundation
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftLibvirt
import VFShiftTestSupport

// Issue #12: failover mode read by the swapper, caps over two pools, the
// level-triggered repair of a VM found with both NICs, and the alias a
// demotion journals. Pure parts only; the live ones are in StockGuestLiveTests.

private let dataMAC = "52:54:00:00:00:07"

private func nicXML(_ nic: String) -> String {
  switch nic {
  case "data": "<interface type='bridge'><mac address='\(dataMAC)'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/><alias name='ua-net0'/></interface>"
  case "data-persistent": "<interface type='bridge'><mac address='\(dataMAC)'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-net0'/></interface>"
  case "data2": "<interface type='bridge'><mac address='52:54:00:00:01:07'/><source bridge='br1'/><target dev='vnet5'/><model type='virtio'/><alias name='ua-net1'/></interface>"
  case "human": "<interface type='bridge'><mac address='52:54:00:aa:00:07'/><source bridge='br0'/><target dev='vnet9'/><model type='virtio'/><alias name='net5'/></interface>"
  case "mgmt": "<interface type='bridge'><mac address='52:54:00:19:00:07'/><source bridge='mgmt0'/><target dev='vnet4'/><model type='virtio'/><alias name='ua-mgmt0'/></interface>"
  case "vf-a": "<interface type='direct'><mac address='\(dataMAC)'/><source network='pool-a' dev='vfsvf0' mode='passthrough'/><target dev='macvtap2'/><model type='virtio'/><alias name='ua-vfshift-vf'/></interface>"
  case "vf-b": "<interface type='direct'><mac address='52:54:00:00:01:07'/><source network='pool-b' dev='vfsvf5' mode='passthrough'/><target dev='macvtap3'/><model type='virtio'/><alias name='ua-vfshift-vf-b'/></interface>"
  case "vf-transient": "<interface type='hostdev' managed='yes'><mac address='\(dataMAC)'/><source network='pool-a'><address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x5'/></source><teaming type='transient' persistent='ua-net0'/><alias name='ua-vfshift-vf'/></interface>"
  default: fatalError(nic)
  }
}

private func vm(_ name: String, _ n: Int, label: String, _ nics: [String], journal: String = "") throws -> DomainInventory {
  try parseDomainXML("""
    <domain type='qemu'><name>\(name)</name><uuid>00000000-0000-4000-8000-00000000000\(n)</uuid>
    <metadata>\(label.isEmpty ? "" : "<vfshift:qos xmlns:vfshift=\"https://vfshift.dev/ns/qos/1\" class=\"\(label)\"/>")\(journal)</metadata>
    <devices>\(nics.map(nicXML).joined())</devices></domain>
    """)
}

private func policy(_ text: String) throws -> Policy { try Policy.parse(text, file: "p.json", defaultName: "p") }

private let onePool = """
  { name: "p", pools: [ { name: "a", network: "pool-a", dataNIC: { bridge: "br0" }, mode: "failover" } ],
    classes: [ { name: "high", priority: 1, match: { metadata: "high" }, vf: "always" },
               { name: "low", priority: 1, match: { metadata: "low" }, vf: "never" },
               { name: "mid", priority: 1, match: { metadata: "mid" }, vf: "eligible",
                 promote: { bytesPerSecond: 10_000_000, packetsPerSecond: 10_000, sustainSeconds: 5 }, demote: { bytesPerSecond: 1_000_000, packetsPerSecond: 1_000, sustainSeconds: 10 } } ] }
  """

private func placement(_ d: DomainInventory, _ p: Policy) -> Placement {
  observe(domains: [d], counters: CounterSnapshot([:]), policy: p, poolTotals: ["a": 2, "b": 2], now: Instant(seconds: 1)).vms[0].placement
}

@Test("two pools: a VM whose data NICs hold VFs of two pools counts against each pool's cap")
func twoPoolCaps() throws {
  let p = try policy("""
    { name: "p", pools: [ { name: "a", network: "pool-a", dataNIC: { bridge: "br0" }, maxInUse: 1 },
                          { name: "b", network: "pool-b", dataNIC: { bridge: "br1" }, maxInUse: 1 } ],
      classes: [ { name: "high", priority: 1, match: { metadata: "high" }, vf: "always", pool: "a" },
                 { name: "storage", priority: 1, match: { metadata: "storage" }, vf: "always", pool: "b" } ] }
    """)
  // s is the storage class's (pool b) and also holds pool a's only VF on its other data NIC.
  let s = try vm("s", 1, label: "storage", ["vf-b", "vf-a", "mgmt"])
  let y = try vm("y", 2, label: "high", ["data", "mgmt"])
  let observation = observe(domains: [s, y], counters: CounterSnapshot([:]), policy: p, poolTotals: ["a": 4, "b": 4],
                            now: Instant(seconds: 1))
  #expect(observation.pools["a"]?.heldByOthers == 1, "pool a's VF on s is in use")
  #expect(observation.pools["b"]?.heldByOthers == 0, "s's own VF counts as its incumbent in b, not twice")
  var state = EngineState()
  let plan = decide(&state, policy: p, observation: observation, now: Instant(seconds: 1))
  #expect(!plan.actions.contains { $0.vm.name == "y" }, "pool a is at its cap of 1: y is not promoted: \(plan.actions)")
  #expect(plan.holds.contains { $0.vm.name == "y" }, "y is held, with the reason")
  // An unmanaged VM holding VFs of both pools counts against both.
  let u = try vm("u", 3, label: "", ["vf-a", "vf-b"])
  let o2 = observe(domains: [u], counters: CounterSnapshot([:]), policy: p, poolTotals: ["a": 4, "b": 4], now: Instant(seconds: 1))
  #expect(o2.pools["a"]?.heldByOthers == 1 && o2.pools["b"]?.heldByOthers == 1)
}

@Test("failover mode: the settled pair (persistent virtio + transient VF naming it) is a VM on its VF, not a swap half done")
func failoverPairPlacement() throws {
  let p = try policy(onePool)
  #expect(placement(try vm("f", 1, label: "high", ["data-persistent", "vf-transient", "mgmt"]), p) == .vf(pool: "a"))
  #expect(placement(try vm("f", 1, label: "high", ["data-persistent", "mgmt"]), p) == .virtio)
  let journal = SwapJournal(operation: .promote, pool: "pool-a", oldAlias: "ua-net0", newAlias: "ua-vfshift-vf", step: .attaching,
                            startedAtUnixMilliseconds: 1, savedInterfaceXML: nil, failover: true).xmlElement()
    .replacingOccurrences(of: "<journal ", with: "<j:journal xmlns:j=\"https://vfshift.dev/ns/journal/1\" ")
  #expect(placement(try vm("f", 1, label: "high", ["data-persistent", "vf-transient"], journal: journal), p) == .transitioning(pool: "a"),
          "mid-swap (journal) it is transitioning")
  // A VF beside a virtio NIC without the pairing is still two NICs to settle.
  #expect(placement(try vm("f", 1, label: "high", ["data", "vf-a"]), p) == .transitioning(pool: "a"))
  #expect(vmsWithBothNICs([try vm("f", 1, label: "high", ["data-persistent", "vf-transient"])], policy: p).isEmpty,
          "a failover pair is never repaired")
}

@Test("failover mode: the VF half has the virtio NIC's MAC and names its alias; a data NIC without persistent teaming is refused with the reason")
func failoverPromotionXML() throws {
  let p = try policy(onePool)
  let pair = try vm("f", 1, label: "high", ["mgmt", "data-persistent"])
  guard case .success(let s) = Swapper.failoverPromotion(pool: p.pools[0], nics: managedNICs(pair, policy: p)) else {
    Issue.record("refused a persistent data NIC"); return
  }
  let nic = try parseInterfaceXML(s.xml)
  #expect(nic.mac == dataMAC && nic.alias == Swapper.vfAlias && nic.teaming == .transient(persistentAlias: "ua-net0"))
  #expect(s.xml.contains("<source network='pool-a'/>"), "\(s.xml)")
  let plain = try vm("f", 1, label: "high", ["mgmt", "data"])
  guard case .failure(let why) = Swapper.failoverPromotion(pool: p.pools[0], nics: managedNICs(plain, policy: p)) else {
    Issue.record("a data NIC without <teaming type='persistent'/> was paired"); return
  }
  #expect(why.reason.contains("failover mode") && why.reason.contains("ua-net0") && why.reason.contains("teaming type='persistent'"))
}

@Test("failover mode: the VM with both halves, as the swapper would leave it, passes libvirt's domain schema")
func failoverDomainValidates() throws {
  guard DomainSchema.available else {
    if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("missing virt-xml-validate (libvirt-clients)") }
    return
  }
  let p = try policy(onePool)
  let pair = try vm("f", 1, label: "high", ["mgmt", "data-persistent"])
  guard case .success(let s) = Swapper.failoverPromotion(pool: p.pools[0], nics: managedNICs(pair, policy: p)) else {
    Issue.record("refused"); return
  }
  let devices = [nicXML("mgmt"), try InterfaceXML.restorable(nicXML("data-persistent")), s.xml]
  let domain = DomainSchema.domain(devices: devices, type: "kvm", machine: "q35")
  let r = try DomainSchema.validate(domain)
  #expect(r.status == 0, "virt-xml-validate refused:\n\(r.output)\n\(domain)")
  print("virt-xml-validate on the failover pair: status \(r.status) \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))")
}

@Test("repair: a managed VM with its VF and its data virtio NIC and no journal keeps what the engine would have it on; unmanaged VMs and other NICs are left alone")
func repairChoice() throws {
  let p = try policy(onePool.replacingOccurrences(of: ", mode: \"failover\"", with: ""))
  let both = { (label: String) in try vm("r", 1, label: label, ["mgmt", "data", "vf-a"]) }
  let found = vmsWithBothNICs([try both("high"), try both("low"), try both(""), try vm("v", 2, label: "high", ["data", "mgmt"])], policy: p)
  #expect(found.map(\.domain.qosLabel) == ["high", "low"], "only managed VMs with both NICs; the unmanaged one is never touched")
  #expect(found.first?.nics.virtio?.alias == "ua-net0", "the data NIC, never the management NIC")
  let state = EngineState()
  let id = { (label: String) in VMIdentity(uuid: "00000000-0000-4000-8000-000000000001", name: "r", label: label) }
  #expect(state.repairOfBothNICs(vm: id("high"), pool: "a", policy: p) == .keepVF, "pinned: keeps its VF")
  #expect(state.repairOfBothNICs(vm: id("low"), pool: "a", policy: p) == .keepVirtio, "barred: keeps its virtio NIC")
  #expect(state.repairOfBothNICs(vm: id("mid"), pool: "a", policy: p) == .keepVF, "not seen yet: kept on its VF, as a VM found on one")
  #expect(state.repairOfBothNICs(vm: id(""), pool: "a", policy: p) == nil, "unmanaged: none")
  #expect(state.repairOfBothNICs(vm: id("high"), pool: "other", policy: p) == .keepVirtio, "a VF of another pool than its class's")
  // The engine's own decision: an eligible VM seen quiet is let go.
  var s2 = EngineState()
  let quiet = VMObservation(identity: id("mid"), placement: .transitioning(pool: "a"), reading: .unknown)
  _ = decide(&s2, policy: p, observation: Observation(vms: [quiet], pools: ["a": PoolCapacity(total: 2)]), now: Instant(seconds: 1))
  _ = decide(&s2, policy: p, observation: Observation(vms: [quiet], pools: ["a": PoolCapacity(total: 2)]), now: Instant(seconds: 2))
  #expect(s2.repairOfBothNICs(vm: id("mid"), pool: "a", policy: p) == .keepVF,
          "found holding both, the engine keeps it intensive until measured otherwise")
}

@Test("a human's second virtio NIC on the data bridge is not the data NIC beside a VF: not counted, parked or removed")
func humanNICLeftAlone() throws {
  let p = try policy(onePool.replacingOccurrences(of: ", mode: \"failover\"", with: ""))
  let onVF = try vm("h", 1, label: "high", ["mgmt", "vf-a", "human"])
  #expect(managedNICs(onVF, policy: p).virtio == nil, "another MAC than the VF's: not the data NIC")
  #expect(placement(onVF, p) == .vf(pool: "a"))
  #expect(vmsWithBothNICs([onVF], policy: p).isEmpty, "nothing to repair")
  let onVirtio = try vm("h", 1, label: "high", ["data", "mgmt", "human"])
  #expect(managedNICs(onVirtio, policy: p).virtio?.alias == "ua-net0", "the first data-bridge NIC stays the data NIC")
}

@Test("demotion: the restored NIC's alias is known (journalled) before the attach, also when the saved XML has none of its own")
func restoredAliasKnownBeforeAttach() throws {
  let own = try InterfaceXML.restorable(nicXML("data"))
  #expect(try InterfaceXML.withUserAlias(own, fallback: Swapper.restoredAlias).alias == "ua-net0")
  #expect(try InterfaceXML.withUserAlias(own, fallback: Swapper.restoredAlias).xml == own, "a user alias: the XML untouched")
  let libvirtChosen = try InterfaceXML.restorable(nicXML("human"))
  #expect(try parseInterfaceXML(libvirtChosen).alias == nil, "restorable drops a libvirt-chosen alias")
  let given = try InterfaceXML.withUserAlias(libvirtChosen, fallback: Swapper.restoredAlias)
  #expect(given.alias == Swapper.restoredAlias)
  #expect(try parseInterfaceXML(given.xml).alias == Swapper.restoredAlias, "the attach asks for the alias the journal names")
  #expect(try parseInterfaceXML(given.xml).mac == "52:54:00:aa:00:07")
  #expect(throws: ActionError.self) { try InterfaceXML.withUserAlias(libvirtChosen, fallback: "net0") }
}

@Test("journal: mode failover round-trips; a journal without it is replace mode; an unknown mode is refused naming the attribute")
func journalMode() throws {
  let j = SwapJournal(operation: .demote, pool: "pool-a", oldAlias: "ua-vfshift-vf", newAlias: "ua-net0", step: .detaching,
                      startedAtUnixMilliseconds: 5, savedInterfaceXML: nil, failover: true)
  #expect(try SwapJournal(xml: j.xmlElement()) == j)
  var r = j; r.failover = false
  #expect(try SwapJournal(xml: r.xmlElement()).failover == false)
  #expect(!r.xmlElement().contains("mode="), "replace mode writes the journal as before")
  do {
    _ = try SwapJournal(xml: j.xmlElement().replacingOccurrences(of: "failover", with: "bond"))
    Issue.record("accepted mode bond")
  } catch { #expect("\(error)".contains("journal@mode")) }
}
