import Foundation
import Testing
@testable import VFShiftHost

/// The switch-over's netlink requests, byte for byte as iproute2 sends them
/// (`bridge link set … learning off`, `bridge fdb replace … master dynamic`,
/// `ip link set PF vf N mac 00:00:00:00:00:00`), on a little-endian host.
@Suite struct BridgeSteeringTests {
  @Test func portLearningOff() {
    #expect(Netlink.portLearningMessage(portIndex: 10, learning: false) == [
      0x2c, 0, 0, 0, 0x13, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0,   // nlmsghdr: 44 bytes, RTM_SETLINK, REQUEST|ACK, seq 1
      7, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           // ifinfomsg: AF_BRIDGE, ifindex 10
      0x0c, 0, 0x0c, 0x80,                                       // IFLA_PROTINFO | NLA_F_NESTED
      5, 0, 8, 0, 0, 0, 0, 0,                                    // IFLA_BRPORT_LEARNING = 0, padded
    ])
    #expect(Netlink.portLearningMessage(portIndex: 10, learning: true)[40] == 1)
  }

  @Test func fdbReplaceDynamicMaster() {
    #expect(Netlink.fdbReplaceMessage(mac: [0x52, 0x54, 0, 0x18, 0, 0x0d], portIndex: 10) == [
      0x28, 0, 0, 0, 0x1c, 0, 0x05, 0x05, 1, 0, 0, 0, 0, 0, 0, 0, // RTM_NEWNEIGH, REQUEST|ACK|REPLACE|CREATE
      7, 0, 0, 0, 10, 0, 0, 0, 0x02, 0, 0x04, 0,                  // ndmsg: AF_BRIDGE, ifindex 10, NUD_REACHABLE, NTF_MASTER
      0x0a, 0, 2, 0, 0x52, 0x54, 0, 0x18, 0, 0x0d, 0, 0,          // NDA_LLADDR
    ])
  }

  @Test func vfMACCleared() {
    let expected: [UInt8] = [
      0x60, 0, 0, 0, 0x13, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0,   // 96 bytes, RTM_SETLINK, REQUEST|ACK
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            // ifinfomsg: by name
      0x0d, 0, 3, 0] + Array("enp1s0f0".utf8) + [0, 0, 0, 0] + [ // IFLA_IFNAME, padded
      0x30, 0, 0x16, 0x80,                                       // IFLA_VFINFO_LIST | NESTED
      0x2c, 0, 0x01, 0x80,                                       // IFLA_VF_INFO | NESTED
      0x28, 0, 0x01, 0, 3, 0, 0, 0,                              // IFLA_VF_MAC: vf 3
    ] + [UInt8](repeating: 0, count: 32)                         // mac[32], all zero
    #expect(Netlink.vfMACMessage(pf: "enp1s0f0", vf: 3, mac: [0, 0, 0, 0, 0, 0]) == expected)
  }

  @Test func macText() {
    #expect(macBytes("52:54:00:18:00:0d") == [0x52, 0x54, 0, 0x18, 0, 0x0d])
    #expect(macBytes("52:54:00:18:00") == nil)
    #expect(macBytes("52:54:00:18:00:zz") == nil)
    #expect(macBytes("5:54:00:18:00:0d") == nil)
  }

  @Test func errorsNameTheRequest() {
    #expect(throws: NetlinkError.self) { try setBridgePortLearning("vfs-no-such-port", false) }
    #expect(throws: NetlinkError.self) { try setVFMAC(pf: "eth0", vf: 0, mac: "not-a-mac") }
  }

  /// The bridge side of a device, on a sysfs laid out as the kernel does:
  /// an enslaved device has `master`; a veth's `iflink` is its peer's ifindex.
  @Test func bridgePortFound() throws {
    let root = NSTemporaryDirectory() + "vfshift-brport-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let fm = FileManager.default
    func dev(_ name: String, index: Int, link: Int, master: Bool) throws {
      try fm.createDirectory(atPath: "\(root)/\(name)", withIntermediateDirectories: true)
      try "\(index)\n".write(toFile: "\(root)/\(name)/ifindex", atomically: true, encoding: .utf8)
      try "\(link)\n".write(toFile: "\(root)/\(name)/iflink", atomically: true, encoding: .utf8)
      if master { try fm.createSymbolicLink(atPath: "\(root)/\(name)/master", withDestinationPath: "../br0") }
    }
    try dev("br0", index: 5, link: 5, master: false)
    try dev("vnet4", index: 18, link: 18, master: true)
    try dev("vfsvf0", index: 11, link: 10, master: false)
    try dev("vfsvfb0", index: 10, link: 11, master: true)
    try dev("enp1s0f0v3", index: 30, link: 30, master: false)
    #expect(bridgePort(of: "vnet4", sysfs: root) == "vnet4")
    #expect(bridgePort(of: "vfsvf0", sysfs: root) == "vfsvfb0")
    #expect(bridgePort(of: "enp1s0f0v3", sysfs: root) == nil, "a VF in legacy mode has no bridge port")
    #expect(bridgePort(of: "missing", sysfs: root) == nil)
    // brport/learning: what br_sysfs_if.c exports for a port, nothing for a non-port.
    try fm.createDirectory(atPath: "\(root)/vnet4/brport", withIntermediateDirectories: true)
    try "0\n".write(toFile: "\(root)/vnet4/brport/learning", atomically: true, encoding: .utf8)
    #expect(bridgePortLearns("vnet4", sysfs: root) == false)
    try "1\n".write(toFile: "\(root)/vnet4/brport/learning", atomically: true, encoding: .utf8)
    #expect(bridgePortLearns("vnet4", sysfs: root) == true)
    #expect(bridgePortLearns("enp1s0f0v3", sysfs: root) == nil)
  }

  /// The real kernel: the flag the request sets is the flag sysfs reads back
  /// (a bridge and a veth port this test makes in the host's namespace, as
  /// the agent's steering runs there; removed also when the test fails).
  @Test func learningSetAndReadOnARealBridge() throws {
    guard Requirement.met("learningSetAndReadOnARealBridge") else { return }
    let br = "vfst-br\(getpid() % 10000)", port = "vfst-p\(getpid() % 10000)"
    defer { _ = try? sh("ip link del \(port); ip link del \(br)", check: false) }
    try sh("ip link add \(br) type bridge && ip link add \(port) type veth peer name \(port)x")
    #expect(bridgePortLearns(port) == nil, "not enslaved: not a bridge port")
    try sh("ip link set \(port) master \(br)")
    #expect(bridgePortLearns(port) == true, "a new port learns")
    try setBridgePortLearning(port, false)
    #expect(bridgePortLearns(port) == false)
    #expect(try sh("bridge -d link show dev \(port)").output.contains("learning off"))
    try setBridgePortLearning(port, true)
    #expect(bridgePortLearns(port) == true)
  }
}
