import Foundation
import Testing
@testable import VFShiftHost

/// The DHCP-reply redirect's rtnetlink requests byte for byte (UAPI layouts
/// in DHCPRedirect.swift, a little-endian host), and the real kernel taking
/// them: `tc` reads back the filter the requests made and the redirected
/// datagrams arrive where the filter sends them.
@Suite struct DHCPRedirectTests {
  @Test func clsactAdd() {
    #expect(Netlink.clsactAddMessage(portIndex: 10) == [
      0x30, 0, 0, 0, 0x24, 0, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0,  // 48 bytes, RTM_NEWQDISC, REQUEST|ACK|EXCL|CREATE
      0, 0, 0, 0, 10, 0, 0, 0,                                     // tcmsg: AF_UNSPEC, ifindex 10
      0, 0, 0xff, 0xff, 0xf1, 0xff, 0xff, 0xff, 0, 0, 0, 0,        // handle ffff:0, parent TC_H_CLSACT, info 0
      0x0b, 0, 1, 0] + Array("clsact".utf8) + [0, 0])              // TCA_KIND "clsact", padded
    #expect(Netlink.clsactDeleteMessage(portIndex: 10) == [
      0x24, 0, 0, 0, 0x25, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0,     // 36 bytes, RTM_DELQDISC, REQUEST|ACK
      0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0xff, 0xff, 0xf1, 0xff, 0xff, 0xff, 0, 0, 0, 0,
    ])
  }

  @Test func u32MirredFilter() {
    let expected: [UInt8] = [
      0x9c, 0, 0, 0, 0x2c, 0, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0,  // 156 bytes, RTM_NEWTFILTER, REQUEST|ACK|EXCL|CREATE
      0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0,                         // tcmsg: ifindex 10, handle 0 (the kernel picks)
      0xf3, 0xff, 0xff, 0xff,                                      // parent: clsact egress
      0x08, 0x00, 0xf5, 0x00,                                      // info: prio 245, protocol htons(ETH_P_IP)
      8, 0, 1, 0] + Array("u32".utf8) + [0] + [                    // TCA_KIND "u32"
      0x70, 0, 0x02, 0x80,                                         // TCA_OPTIONS | NESTED
      0x38, 0, 0x07, 0x80,                                         //   TCA_U32_ACT | NESTED
      0x34, 0, 0x01, 0x80,                                         //     action 1 | NESTED
      0x0b, 0, 1, 0] + Array("mirred".utf8) + [0, 0] + [           //       TCA_ACT_KIND "mirred", padded
      0x24, 0, 0x02, 0x80,                                         //       TCA_ACT_OPTIONS | NESTED
      0x20, 0, 0x02, 0,                                            //         TCA_MIRRED_PARMS
      0, 0, 0, 0, 0, 0, 0, 0,                                      //           index, capab
      4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                          //           action TC_ACT_STOLEN, refcnt, bindcnt
      1, 0, 0, 0, 12, 0, 0, 0,                                     //           eaction TCA_EGRESS_REDIR, ifindex 12
      0x34, 0, 0x05, 0,                                            //   TCA_U32_SEL
      0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           //     flags TERMINAL, nkeys 2
      0x00, 0xff, 0, 0, 0, 0x11, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0,     //     be mask 00ff0000, be val 00110000 at 8
      0xff, 0xff, 0xff, 0xff, 0, 0x43, 0, 0x44, 20, 0, 0, 0, 0, 0, 0, 0, // ffffffff, 00430044 at 20
    ]
    #expect(Netlink.dhcpRedirectAddMessage(portIndex: 10, toIndex: 12) == expected)
    #expect(Netlink.dhcpRedirectDeleteMessage(portIndex: 10) == [
      0x24, 0, 0, 0, 0x2d, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0,     // RTM_DELTFILTER, REQUEST|ACK
      0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0xf3, 0xff, 0xff, 0xff, 0x08, 0x00, 0xf5, 0x00,
    ])
    #expect(Netlink.filterDumpMessage(portIndex: 10, parent: Netlink.clsactEgress)[4...7] == [0x2e, 0, 0x01, 0x03],
            "RTM_GETTFILTER, REQUEST|DUMP")
  }

  @Test func filterDumpParsed() throws {
    func filter(prio: UInt16) -> [UInt8] {
      Netlink.request(type: Netlink.RTM_NEWTFILTER, flags: Netlink.NLM_F_MULTI, sequence: 1,
                      family: Netlink.tcmsg(index: 10, parent: Netlink.clsactEgress, info: UInt32(prio) << 16 | 8),
                      attributes: [(Netlink.TCA_KIND, Netlink.cString("u32"))])
    }
    let done = Netlink.request(type: Netlink.NLMSG_DONE, flags: Netlink.NLM_F_MULTI, sequence: 1, family: [0, 0, 0, 0])
    let parsed = try parseFilterDump(filter(prio: 245) + filter(prio: 10) + done)
    #expect(parsed.priorities == [245, 10] && parsed.done)
    #expect(try parseFilterDump(filter(prio: 3)).done == false)
    // A kernel's "no such qdisc" ends the dump with an error, which is told apart.
    let error = Netlink.request(type: Netlink.NLMSG_ERROR, flags: 0, sequence: 1, family: [0xea, 0xff, 0xff, 0xff])
    #expect(throws: NetlinkError.kernel(request: "RTM_GETTFILTER", errno: 22)) { try parseFilterDump(error) }
    #expect(throws: NetlinkError.self) { try parseFilterDump(Array(filter(prio: 245).prefix(30))) }
  }

  @Test func qdiscKindParsed() throws {
    func qdisc(_ index: Int32, parent: UInt32, _ kind: String) -> [UInt8] {
      Netlink.request(type: Netlink.RTM_NEWQDISC, flags: Netlink.NLM_F_MULTI, sequence: 1,
                      family: Netlink.tcmsg(index: index, handle: Netlink.clsactHandle, parent: parent),
                      attributes: [(Netlink.TCA_KIND, Netlink.cString(kind))])
    }
    let done = Netlink.request(type: Netlink.NLMSG_DONE, flags: Netlink.NLM_F_MULTI, sequence: 1, family: [0, 0, 0, 0])
    let part = try parseQdiscDump(qdisc(3, parent: 0xFFFF_FFFF, "noqueue") + qdisc(10, parent: Netlink.TC_H_CLSACT, "ingress") + done)
    #expect(part.done && part.qdiscs.map(\.kind) == ["noqueue", "ingress"])
    #expect(part.qdiscs.last?.index == 10 && part.qdiscs.last?.parent == Netlink.TC_H_CLSACT)
    #expect(throws: NetlinkError.self) { try parseQdiscDump(Array(qdisc(10, parent: 1, "clsact").prefix(40))) }
  }

  /// Two veth pairs, their host ends `old` and `new`, the other ends in a
  /// namespace this test makes; UDP sent from the host out of `old`. Removed
  /// also when the test fails.
  @Test func redirectsOnlyDHCPRepliesOnTheRealKernel() async throws {
    guard Requirement.met("redirectsOnlyDHCPRepliesOnTheRealKernel"),
          FileManager.default.isExecutableFile(atPath: "/usr/sbin/tc"),
          FileManager.default.isExecutableFile(atPath: "/usr/bin/nc") else {
      if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("needs /usr/sbin/tc and /usr/bin/nc (netcat-openbsd)") }
      else { FileHandle.standardError.write("skipped: redirectsOnlyDHCPRepliesOnTheRealKernel needs tc and nc\n".data(using: .utf8)!) }
      return
    }
    let n = getpid() % 10000, ns = "vfst-rd\(n)", old = "vfst-o\(n)", new = "vfst-n\(n)"
    defer { _ = try? sh("ip link del \(old); ip link del \(new); ip netns del \(ns)", check: false) }
    try sh("""
      ip netns add \(ns) && ip link add \(old) type veth peer name \(old)i netns \(ns) && \
      ip link add \(new) type veth peer name \(new)i netns \(ns) && \
      ip addr add 198.19.251.1/30 dev \(old) && ip link set \(old) up && ip link set \(new) up && \
      ip -n \(ns) addr add 198.19.251.2/30 dev \(old)i && ip -n \(ns) link set \(old)i up && ip -n \(ns) link set \(new)i up
      """)
    func received(_ dev: String) throws -> Int {
      Int(try sh("ip netns exec \(ns) cat /sys/class/net/\(dev)/statistics/rx_packets").output
        .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
    func send(from port: Int, to dport: Int, count: Int) throws {
      for _ in 0..<count { try sh("echo x | nc -u -w0 -p \(port) 198.19.251.2 \(dport)") }
    }
    // ARP first, so that what follows is the datagrams alone.
    try sh("ping -c 1 -W 2 198.19.251.2")

    #expect(try redirectDHCPReplies(from: old, to: new) == .onOwnQdisc)
    #expect(hasDHCPRedirect(old) == true && hasDHCPRedirect(new) == false)
    let shown = try sh("tc -d filter show dev \(old) egress").output
    #expect(shown.contains("pref 245 u32"), "\(shown)")
    #expect(shown.contains("match 00110000/00ff0000 at 8") && shown.contains("match 00430044/ffffffff at 20"), "\(shown)")
    #expect(shown.contains("Egress Redirect to device \(new)"), "\(shown)")

    let (oldBefore, newBefore) = (try received("\(old)i"), try received("\(new)i"))
    try send(from: 67, to: 68, count: 5)
    try await waitUntil("5 replies arrive on the new NIC's side") { try received("\(new)i") >= newBefore + 5 }
    #expect(try received("\(old)i") == oldBefore, "none of them on the old")
    try send(from: 5067, to: 68, count: 3)  // not from the server's port: stays
    try await waitUntil("the other datagrams arrive on the old NIC's side") { try received("\(old)i") >= oldBefore + 3 }
    #expect(try received("\(new)i") == newBefore + 5)

    #expect(try removeDHCPRedirect(old) == true)
    #expect(hasDHCPRedirect(old) == false)
    #expect(!(try sh("tc qdisc show dev \(old)").output.contains("clsact")), "the qdisc vfshift added is gone")
    #expect(try removeDHCPRedirect(old) == false, "nothing left to remove")

    // Someone else's clsact with a filter of their own: kept as found.
    try sh("tc qdisc add dev \(old) clsact && tc filter add dev \(old) ingress prio 7 protocol ip u32 match u32 0 0 flowid 1:1")
    #expect(try redirectDHCPReplies(from: old, to: new) == .onExistingClsact)
    #expect(try removeDHCPRedirect(old) == true)
    let left = try sh("tc filter show dev \(old) ingress").output
    #expect(left.contains("pref 7 u32"), "the other filter stays: \(left)")
    #expect(try sh("tc qdisc show dev \(old)").output.contains("clsact"), "and its qdisc")
    try sh("tc qdisc del dev \(old) clsact")

    // libvirt's inbound bandwidth limit puts an `ingress` qdisc there: refused, untouched.
    try sh("tc qdisc add dev \(old) ingress")
    #expect(throws: NetlinkError.refused(device: old, reason: "its ingress qdisc is ingress, not clsact; left as it is")) {
      try redirectDHCPReplies(from: old, to: new)
    }
    #expect(try sh("tc qdisc show dev \(old)").output.contains("qdisc ingress ffff:"))
  }
}

/// Polls `condition` every 20 ms until it holds or 5 s have gone.
private func waitUntil(_ what: String, _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + .seconds(5)
  while ContinuousClock.now < deadline {
    if try condition() { return }
    try await Task.sleep(for: .milliseconds(20))
  }
  Issue.record("not within 5 s: \(what)")
}
