import Testing
import VFShiftCore
import VFShiftLibvirt

/// The reply of a real QEMU guest agent (Debian 12's qemu-guest-agent
/// 7.2.22, `qemu-ga -m unix-listen`, run on this machine, which stood in for
/// a guest) to `{"execute":"guest-network-get-interfaces"}`, byte for byte.
/// Its shape is qga/qapi-schema.json's GuestNetworkInterface: `name`,
/// `hardware-address`, `ip-addresses`, and `statistics` where the agent has
/// them (here only for some interfaces: it leaves the member out otherwise).
let realGuestAgentReply = #"{"return": [{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}, {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}], "statistics": {"tx-packets": 29, "tx-errs": 0, "rx-bytes": 3193, "rx-dropped": 0, "rx-packets": 29, "rx-errs": 0, "tx-bytes": 3193, "tx-dropped": 0}, "hardware-address": "00:00:00:00:00:00"}, {"name": "ifb0", "hardware-address": "f6:00:cf:e1:67:63"}, {"name": "ifb1", "hardware-address": "0a:df:be:24:89:f1"}, {"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "192.0.2.2", "prefix": 24}, {"ip-address-type": "ipv6", "ip-address": "fd00::2", "prefix": 64}, {"ip-address-type": "ipv6", "ip-address": "fe80::fc:ff:fe00:1", "prefix": 64}], "statistics": {"tx-packets": 3053, "tx-errs": 0, "rx-bytes": 264964619, "rx-dropped": 0, "rx-packets": 5077, "rx-errs": 0, "tx-bytes": 222426, "tx-dropped": 0}, "hardware-address": "02:fc:00:00:00:01"}, {"name": "vfsbr0", "hardware-address": "02:76:66:73:00:01"}, {"name": "vfssrc-br", "hardware-address": "86:30:62:f7:f2:13"}, {"name": "vfsvfb0", "hardware-address": "0e:c4:b0:71:a2:2a"}, {"name": "vfsvf0", "hardware-address": "06:a2:07:1c:d6:e7"}, {"name": "vfsvfb1", "hardware-address": "2e:29:5b:cd:45:ab"}, {"name": "vfsvf1", "hardware-address": "0e:34:68:d3:ca:3a"}, {"name": "vnet0", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::fc54:ff:fe18:b", "prefix": 64}], "statistics": {"tx-packets": 73, "tx-errs": 0, "rx-bytes": 364, "rx-dropped": 0, "rx-packets": 6, "rx-errs": 0, "tx-bytes": 3582, "tx-dropped": 0}, "hardware-address": "fe:54:00:18:00:0b"}, {"name": "vnet1", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::fc54:ff:fe18:c", "prefix": 64}], "statistics": {"tx-packets": 73, "tx-errs": 0, "rx-bytes": 364, "rx-dropped": 0, "rx-packets": 6, "rx-errs": 0, "tx-bytes": 3582, "tx-dropped": 0}, "hardware-address": "fe:54:00:18:00:0c"}, {"name": "vnet2", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::fc54:ff:fe18:d", "prefix": 64}], "statistics": {"tx-packets": 73, "tx-errs": 0, "rx-bytes": 266, "rx-dropped": 0, "rx-packets": 5, "rx-errs": 0, "tx-bytes": 3554, "tx-dropped": 0}, "hardware-address": "fe:54:00:18:00:0d"}, {"name": "vnet3", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::fc54:ff:fe18:e", "prefix": 64}], "statistics": {"tx-packets": 73, "tx-errs": 0, "rx-bytes": 266, "rx-dropped": 0, "rx-packets": 5, "rx-errs": 0, "tx-bytes": 3554, "tx-dropped": 0}, "hardware-address": "fe:54:00:18:00:0e"}, {"name": "vnet4", "ip-addresses": [{"ip-address-type": "ipv6", "ip-address": "fe80::fc54:ff:fe18:f", "prefix": 64}], "statistics": {"tx-packets": 72, "tx-errs": 0, "rx-bytes": 266, "rx-dropped": 0, "rx-packets": 5, "rx-errs": 0, "tx-bytes": 3484, "tx-dropped": 0}, "hardware-address": "fe:54:00:18:00:0f"}]}"#

@Suite struct GuestAgentReplyTests {
  @Test func aRealReplyGivesEachInterfaceWithItsMACAndCounters() throws {
    let interfaces = try parseGuestNetworkInterfaces(realGuestAgentReply)
    #expect(interfaces.count == 15)
    #expect(interfaces.map(\.name).prefix(4) == ["lo", "ifb0", "ifb1", "eth0"])
    let eth0 = try #require(interfaces.first { $0.name == "eth0" })
    #expect(eth0.mac == "02:fc:00:00:00:01")
    #expect(eth0.counters == VMCounters(rxBytes: 264964619, txBytes: 222426, rxPackets: 5077, txPackets: 3053),
            "the guest's own counters: rx is what the guest received")
    #expect(interfaces.first { $0.name == "ifb0" }?.counters == nil, "no statistics member: unknown, not zero")
    #expect(eth0.ipv4 == ["192.0.2.2"], "IPv4 only: what a swap's confirmation looks for")
    #expect(interfaces.first { $0.name == "vnet0" }?.ipv4 == [], "a link-local IPv6 address alone is no address")
  }

  @Test func theVFNICIsFoundByItsMAC() throws {
    let interfaces = try parseGuestNetworkInterfaces(realGuestAgentReply)
    let found = try guestCounters(interfaces, mac: "02:FC:00:00:00:01").get()
    #expect(found.name == "eth0")
    #expect(found.counters.rxBytes == 264964619)
    #expect(throws: GuestAgentReplyError(path: "return", problem: "no guest interface has MAC 52:54:00:aa:bb:cc")) {
      try guestCounters(interfaces, mac: "52:54:00:aa:bb:cc").get()
    }
    #expect(throws: GuestAgentReplyError(path: "return", problem: "guest interface ifb0 (f6:00:cf:e1:67:63) has no statistics")) {
      try guestCounters(interfaces, mac: "f6:00:cf:e1:67:63").get()
    }
  }

  @Test func twoGuestInterfacesWithTheVFsMACAreAmbiguous() throws {
    // A failover pair in the guest: the net_failover master and its VF share the MAC.
    let reply = #"{"return":[{"name":"eth0","hardware-address":"52:54:00:12:00:11","statistics":{"rx-bytes":1,"rx-packets":1,"rx-errs":0,"rx-dropped":0,"tx-bytes":1,"tx-packets":1,"tx-errs":0,"tx-dropped":0}},{"name":"eth1","hardware-address":"52:54:00:12:00:11"}]}"#
    let interfaces = try parseGuestNetworkInterfaces(reply)
    #expect(throws: GuestAgentReplyError(path: "return", problem: "guest interfaces eth0, eth1 all have MAC 52:54:00:12:00:11")) {
      try guestCounters(interfaces, mac: "52:54:00:12:00:11").get()
    }
  }

  @Test(arguments: [
    (#"{"error":{"class":"CommandNotFound","desc":"The command guest-network-get-interfaces has not been found"}}"#,
     "guest agent reply: error: the agent refused: The command guest-network-get-interfaces has not been found"),
    (#"{"return":{}}"#, "guest agent reply: return: is an object, not an array"),
    (#"{"return":[{"hardware-address":"52:54:00:12:00:11"}]}"#, "guest agent reply: return[0].name: missing or not a string"),
    (#"{"return":[{"name":"eth0","statistics":{"rx-bytes":-1,"rx-packets":0,"tx-bytes":0,"tx-packets":0}}]}"#,
     "guest agent reply: return[0].statistics.rx-bytes: is not a counter (a whole number ≥ 0)"),
    (#"{"return":[{"name":"eth0","statistics":{"rx-bytes":1}}]}"#, "guest agent reply: return[0].statistics.tx-bytes: missing"),
    (#"{"return":[{"name":"eth0","#, "guest agent reply: line 1"),
  ])
  func aBadReplyIsAnErrorSayingWhere(reply: String, message: String) {
    do {
      let parsed = try parseGuestNetworkInterfaces(reply)
      Issue.record("parsed \(parsed)")
    } catch {
      #expect("\(error)".hasPrefix(message), "\(error)")
    }
  }
}
