import Foundation

/// SR-IOV hardware this machine does not have, as the kernel presents it:
/// a sysfs tree in a temporary directory, laid out path for path as the
/// kernel lays it (each path says where the kernel makes it), and the
/// rtnetlink reply a PF's driver gives to RTM_GETLINK with RTEXT_FILTER_VF,
/// byte for byte. The only fakes the project allows (README: Standards).
public struct SRIOVSysfs {
  public let root: String
  let fm = FileManager.default
  /// The PCI bridge the NIC sits behind: /sys/devices/pci0000:00/0000:00:02.0
  /// (drivers/pci/probe.c `pci_setup_device` names functions "%04x:%02x:%02x.%d").
  let parent = "devices/pci0000:00/0000:00:02.0"

  public init() throws {
    root = fm.temporaryDirectory.appendingPathComponent("sysfs-sriov-\(UUID().uuidString)").path
    // /sys/bus/pci/drivers/NAME: drivers/base/bus.c `bus_add_driver`.
    for driver in ["vfio-pci", "mlx5_core", "ixgbe", "iavf"] {
      try fm.createDirectory(atPath: "\(root)/bus/pci/drivers/\(driver)", withIntermediateDirectories: true)
    }
    // /sys/bus/pci/devices/ holds one link per PCI device: `bus_add_device`.
    try fm.createDirectory(atPath: "\(root)/bus/pci/devices", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: "\(root)/class/net", withIntermediateDirectories: true)
  }

  public func remove() { try? fm.removeItem(atPath: root) }

  public func devicePath(_ address: String) -> String { "\(root)/\(parent)/\(address)" }

  func write(_ path: String, _ text: String) throws { try text.write(toFile: path, atomically: false, encoding: .utf8) }
  func link(_ path: String, to target: String) throws { try fm.createSymbolicLink(atPath: path, withDestinationPath: target) }

  /// A PCI function: its directory, /sys/bus/pci/devices/ADDR → it
  /// (drivers/base/bus.c `bus_add_device`), and DEVICE/driver → the bound
  /// driver (drivers/base/dd.c `driver_sysfs_add`), when one is bound.
  func addFunction(_ address: String, driver: String?) throws {
    try fm.createDirectory(atPath: devicePath(address), withIntermediateDirectories: true)
    try link("\(root)/bus/pci/devices/\(address)", to: "../../../\(parent)/\(address)")
    if let driver { try link("\(devicePath(address))/driver", to: "../../../../bus/pci/drivers/\(driver)") }
  }

  /// A netdev whose parent device is the PCI function `address`:
  /// DEVICE/net/NAME (drivers/base/core.c `get_device_parent`), its
  /// `device` link back, /sys/class/net/NAME → it (`device_add_class_symlinks`),
  /// and, when given, `phys_switch_id` ("%*phN\n") and `phys_port_name`
  /// ("%s\n") from net/core/net-sysfs.c (Documentation/ABI/testing/
  /// sysfs-class-net). A legacy-mode driver answers their read with
  /// EOPNOTSUPP; here they are then absent, which the reader treats alike.
  public func addNetdev(_ name: String, on address: String, switchID: String? = nil, portName: String? = nil) throws {
    let dir = "\(devicePath(address))/net/\(name)"
    try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try link("\(dir)/device", to: "../../../\(address)")
    try link("\(root)/class/net/\(name)", to: "../../\(parent)/\(address)/net/\(name)")
    if let switchID { try write("\(dir)/phys_switch_id", switchID + "\n") }
    if let portName { try write("\(dir)/phys_port_name", portName + "\n") }
  }

  /// A PF with `vfs` VFs enabled: sriov_totalvfs/sriov_numvfs
  /// (drivers/pci/iov.c), PF/virtfnN → ../VF and VF/physfn → ../PF
  /// (drivers/pci/iov.c `pci_iov_sysfs_link`, Documentation/PCI/pci-iov-howto.rst).
  /// VFs at First VF Offset 2, Stride 1 from the PF's devfn (drivers/pci/iov.c
  /// `pci_iov_virtfn_devfn`), as a ConnectX-5 has them. Each VF is bound to
  /// `vfDriver(n)` (vfio-pci while a guest holds it: no netdev then). With
  /// `switchID` the PF is in switchdev mode: its uplink reports `p<func>`
  /// and a representor `<pf>_<n>` per VF sits on the PF's PCI device with
  /// `pf<func>vf<n>` (Documentation/networking/switchdev.rst; mlx5 registers
  /// representors with the PF as parent, drivers/net/ethernet/mellanox/mlx5/
  /// core/en_rep.c).
  @discardableResult
  public func addPF(_ netdev: String, address: String, vfs: Int, switchID: String? = nil,
                    vfDriver: (Int) -> String? = { _ in "vfio-pci" }) throws -> [String] {
    let bus = String(address.split(separator: ":")[1])
    let function = Int(String(address.split(separator: ".")[1]))!
    let slot = Int(String(address.split(separator: ":")[2].split(separator: ".")[0]), radix: 16)!
    try addFunction(address, driver: "mlx5_core")
    try addNetdev(netdev, on: address, switchID: switchID, portName: switchID == nil ? nil : "p\(function)")
    try write("\(devicePath(address))/sriov_totalvfs", "\(max(vfs, 8))\n")
    try write("\(devicePath(address))/sriov_numvfs", "\(vfs)\n")
    var out: [String] = []
    for n in 0..<vfs {
      let devfn = (slot << 3 | function) + 2 + n
      let vf = String(format: "0000:%@:%02x.%x", bus, devfn >> 3, devfn & 7)
      out.append(vf)
      try addFunction(vf, driver: vfDriver(n))
      try link("\(devicePath(address))/virtfn\(n)", to: "../\(vf)")
      try link("\(devicePath(vf))/physfn", to: "../\(address)")
      if let driver = vfDriver(n), driver != "vfio-pci" { try addNetdev("\(netdev)v\(n)", on: vf) }
      if let switchID { try addNetdev("\(netdev)_\(n)", on: address, switchID: switchID, portName: "pf\(function)vf\(n)") }
    }
    return out
  }
}

/// rtnetlink replies as the kernel writes them (include/uapi/linux/netlink.h,
/// rtnetlink.h, if_link.h; net/core/rtnetlink.c `rtnl_fill_ifinfo`,
/// `rtnl_fill_vf`, `rtnl_fill_vfinfo`), little-endian x86_64: no
/// IFLA_VF_STATS_PAD (nla_put_u64_64bit pads only where unaligned access is
/// slow), nests opened with nla_nest_start_noflag (no NLA_F_NESTED).
public enum VFStatsReply {
  public struct Stats: Sendable {
    public var rxPackets, txPackets, rxBytes, txBytes, broadcast, multicast, rxDropped, txDropped: UInt64
    public init(rxPackets: UInt64, txPackets: UInt64, rxBytes: UInt64, txBytes: UInt64,
                broadcast: UInt64 = 0, multicast: UInt64 = 0, rxDropped: UInt64 = 0, txDropped: UInt64 = 0) {
      self.rxPackets = rxPackets; self.txPackets = txPackets; self.rxBytes = rxBytes; self.txBytes = txBytes
      self.broadcast = broadcast; self.multicast = multicast; self.rxDropped = rxDropped; self.txDropped = txDropped
    }
  }

  static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
  static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
    let a = le(UInt16(4 + payload.count)) + le(type) + payload
    return a + [UInt8](repeating: 0, count: (4 - a.count % 4) % 4)  // NLA_ALIGN
  }

  /// One IFLA_VF_INFO as `rtnl_fill_vfinfo` writes it: MAC, BROADCAST, VLAN,
  /// RATE, TX_RATE, SPOOFCHK, LINK_STATE, RSS_QUERY_EN, TRUST, VLAN_LIST,
  /// then IFLA_VF_STATS only when the driver has `ndo_get_vf_stats`.
  static func vfInfo(_ vf: UInt32, mac: [UInt8], stats: Stats?) -> [UInt8] {
    var a: [UInt8] = []
    a += attribute(1, le(vf) + mac + [UInt8](repeating: 0, count: 32 - mac.count))          // IFLA_VF_MAC: ifla_vf_mac
    a += attribute(13, [UInt8](repeating: 0xff, count: 6) + [UInt8](repeating: 0, count: 26)) // IFLA_VF_BROADCAST
    a += attribute(2, le(vf) + le(UInt32(0)) + le(UInt32(0)))                                // IFLA_VF_VLAN
    a += attribute(6, le(vf) + le(UInt32(0)) + le(UInt32(0)))                                // IFLA_VF_RATE
    a += attribute(3, le(vf) + le(UInt32(0)))                                                // IFLA_VF_TX_RATE
    a += attribute(4, le(vf) + le(UInt32(1)))                                                // IFLA_VF_SPOOFCHK
    a += attribute(5, le(vf) + le(UInt32(0)))                                                // IFLA_VF_LINK_STATE auto
    a += attribute(7, le(vf) + le(UInt32(0)))                                                // IFLA_VF_RSS_QUERY_EN
    a += attribute(9, le(vf) + le(UInt32(0)))                                                // IFLA_VF_TRUST
    // IFLA_VF_VLAN_LIST { IFLA_VF_VLAN_INFO: ifla_vf_vlan_info, 16 bytes with its tail padding }
    a += attribute(12, attribute(1, le(vf) + le(UInt32(0)) + le(UInt32(0)) + [0x81, 0x00, 0, 0]))
    if let s = stats {
      var st: [UInt8] = []
      st += attribute(0, le(s.rxPackets)); st += attribute(1, le(s.txPackets))
      st += attribute(2, le(s.rxBytes)); st += attribute(3, le(s.txBytes))
      st += attribute(4, le(s.broadcast)); st += attribute(5, le(s.multicast))
      st += attribute(7, le(s.rxDropped)); st += attribute(8, le(s.txDropped))
      a += attribute(8, st)                                                                  // IFLA_VF_STATS
    }
    return attribute(1, a)                                                                   // IFLA_VF_INFO
  }

  /// The RTM_NEWLINK (16) answering RTM_GETLINK for `pf` (ifindex `index`):
  /// nlmsghdr, ifinfomsg, IFLA_IFNAME, IFLA_MTU, IFLA_NUM_VF, IFLA_VFINFO_LIST.
  /// `stats[n]` nil for every VF: a driver without per-VF statistics.
  public static func reply(pf: String, index: Int32 = 4, vfs: [Stats?], sequence: UInt32 = 1) -> [UInt8] {
    var infos: [UInt8] = []
    for (n, s) in vfs.enumerated() { infos += vfInfo(UInt32(n), mac: [0x02, 0, 0, 0, 0x10, UInt8(n)], stats: s) }
    var payload = [UInt8(0), 0] + le(UInt16(1)) + le(index) + le(UInt32(0x11043)) + le(UInt32(0))  // ifinfomsg
    payload += attribute(3, Array(pf.utf8) + [0])     // IFLA_IFNAME
    payload += attribute(4, le(UInt32(1500)))         // IFLA_MTU
    payload += attribute(21, le(UInt32(vfs.count)))   // IFLA_NUM_VF
    payload += attribute(22, infos)                   // IFLA_VFINFO_LIST
    return le(UInt32(16 + payload.count)) + le(UInt16(16)) + le(UInt16(0)) + le(sequence) + le(UInt32(0)) + payload
  }
}
