import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftLibvirt

/// A managed VM of the bed's kind: a data NIC on br0 and a management NIC
/// on mgmt0, in the order given, and optionally a VF from the pool.
private func vm(_ nics: [String]) throws -> DomainInventory {
  let xml = nics.map { nic -> String in
    switch nic {
    case "data": "<interface type='bridge'><mac address='52:54:00:00:00:07'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/><alias name='ua-net0'/></interface>"
    case "mgmt": "<interface type='bridge'><mac address='52:54:00:19:00:07'/><source bridge='mgmt0'/><target dev='vnet4'/><model type='virtio'/><alias name='ua-mgmt0'/></interface>"
    default: "<interface type='direct'><mac address='52:54:00:00:00:07'/><source network='vf-pool' dev='vfsvf0' mode='passthrough'/><target dev='macvtap2'/><model type='virtio'/><alias name='ua-vfshift-vf'/></interface>"
    }
  }.joined()
  return try parseDomainXML("""
    <domain type='qemu'><name>vm7</name><uuid>00000000-0000-4000-8000-000000000007</uuid>
    <metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/></metadata>
    <devices>\(xml)</devices></domain>
    """)
}

private func policy(_ pool: String) throws -> Policy {
  try Policy.parse("""
    { name: "p", pools: [ { name: "x", network: "vf-pool"\(pool) } ],
      classes: [ { name: "high", priority: 1, match: { metadata: "high" }, vf: "always" } ] }
    """, file: "p.json", defaultName: "p")
}

private func placement(_ d: DomainInventory, _ p: Policy) -> Placement {
  observe(domains: [d], counters: CounterSnapshot([:]), policy: p, poolTotals: ["x": 2], now: Instant(seconds: 1)).vms[0].placement
}

@Test("dataNIC by bridge: the data NIC is found wherever libvirt lists it; the management NIC is never the one swapped")
func dataNICByBridge() throws {
  let byBridge = try policy(", dataNIC: { bridge: \"br0\" }")
  for order in [["data", "mgmt"], ["mgmt", "data"]] {
    #expect(managedNICs(try vm(order), policy: byBridge).virtio?.alias == "ua-net0", "\(order)")
  }
  #expect(placement(try vm(["mgmt", "vf"]), byBridge) == .vf(pool: "x"), "a VM on its VF beside its management NIC")
  #expect(placement(try vm(["mgmt", "data", "vf"]), byBridge) == .transitioning(pool: "x"))
  let byAlias = try policy(", dataNIC: { alias: \"ua-net0\" }")
  #expect(managedNICs(try vm(["mgmt", "data"]), policy: byAlias).virtio?.alias == "ua-net0")
  let byOther = try policy(", dataNIC: { bridge: \"mgmt0\" }")
  #expect(managedNICs(try vm(["data", "mgmt"]), policy: byOther).virtio?.alias == "ua-mgmt0", "the policy decides, not the order")
}

@Test("no dataNIC: the first virtio NIC; beside a VF of a mac: same pool only the one with the VF's MAC")
func dataNICDefault() throws {
  let same = try policy("")
  #expect(managedNICs(try vm(["data", "mgmt"]), policy: same).virtio?.alias == "ua-net0")
  #expect(placement(try vm(["vf", "mgmt"]), same) == .vf(pool: "x"), "the management NIC has another MAC")
  #expect(placement(try vm(["mgmt", "data", "vf"]), same) == .transitioning(pool: "x"))
  let new = try policy(", mac: \"new\"")
  #expect(placement(try vm(["vf", "mgmt"]), new) == .transitioning(pool: "x"), "mac: new: no MAC tells the NICs apart")
}

@Test("two virtio NICs on the data bridge: the one the last swap recorded is the data NIC, wherever libvirt lists it")
func dataNICRecordedAlias() throws {
  // A human's NIC on the data bridge listed first, as after a demotion re-attached the data NIC last.
  let human = "<interface type='bridge'><mac address='52:54:00:00:00:08'/><source bridge='br0'/><target dev='vnet5'/><model type='virtio'/><alias name='ua-human'/></interface>"
  let data = "<interface type='bridge'><mac address='52:54:00:00:00:07'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/><alias name='ua-net0'/></interface>"
  func domain(recorded: String?) throws -> DomainInventory {
    try parseDomainXML("""
      <domain type='qemu'><name>vm7</name><uuid>00000000-0000-4000-8000-000000000007</uuid>
      <metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/>\(recorded.map {
        "<d:data-nic xmlns:d='https://vfshift.dev/ns/data-nic/1' alias='\($0)'/>" } ?? "")</metadata>
      <devices>\(human)\(data)</devices></domain>
      """)
  }
  for p in [try policy(""), try policy(", dataNIC: { bridge: \"br0\" }")] {
    #expect(managedNICs(try domain(recorded: "ua-net0"), policy: p).virtio?.alias == "ua-net0", "the recorded alias over the order")
    #expect(managedNICs(try domain(recorded: nil), policy: p).virtio?.alias == "ua-human", "never recorded: the first, as documented")
    #expect(managedNICs(try domain(recorded: "ua-gone"), policy: p).virtio?.alias == "ua-human", "a recorded NIC that is gone: the first")
  }
  #expect(try domain(recorded: "ua-net0").dataNICAlias == "ua-net0")
}

@Test("dataNIC: exactly one of bridge, network, alias; errors name the field")
func dataNICDecoding() throws {
  #expect(try policy(", dataNIC: { network: \"n\" }").pools[0].dataNIC == .network("n"))
  #expect(try policy("").pools[0].dataNIC == nil)
  for (bad, says) in [(", dataNIC: { }", "exactly one of bridge, network, alias, got none"),
                      (", dataNIC: { bridge: \"a\", alias: \"b\" }", "got alias, bridge"),
                      (", dataNIC: { brige: \"a\" }", "did you mean bridge?"),
                      (", dataNIC: \"br0\"", "must be an object")] {
    do {
      _ = try policy(bad)
      Issue.record("accepted \(bad)")
    } catch {
      #expect("\(error)".contains("pools[0].dataNIC") && "\(error)".contains(says), "\(bad): \(error)")
    }
  }
}

@Test("NICs on two pools' data bridges: the VM's class's pool says which one its promotion replaces, in any order")
func dataNICOfTheClassPool() throws {
  // Pool x replaces the NIC on br0, pool y the one on mgmt0 (here a second
  // data bridge); the VM's class wants y.
  let twoPools = try Policy.parse("""
    { name: "p", pools: [ { name: "x", network: "vf-pool", dataNIC: { bridge: "br0" } },
                          { name: "y", network: "vf-pool-y", dataNIC: { bridge: "mgmt0" } } ],
      classes: [ { name: "high", priority: 1, match: { metadata: "high" }, vf: "always", pool: "y" } ] }
    """, file: "p.json", defaultName: "p")
  for order in [["data", "mgmt"], ["mgmt", "data"]] {
    #expect(managedNICs(try vm(order), policy: twoPools).virtio?.alias == "ua-mgmt0", "\(order)")
  }
}
