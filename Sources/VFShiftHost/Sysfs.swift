import VFShiftCore

/// Where sysfs is mounted. Passed in, never a global, so tests point it at a
/// tree laid out as the kernel lays it.
public struct SysfsRoot: Sendable, Equatable {
  public let path: String
  public init(_ path: String = "/sys") { self.path = path }
}

/// A PCI function address as the kernel names devices in sysfs
/// (`pci_setup_device` → dev_set_name "%04x:%02x:%02x.%d"): "0000:03:10.1".
public struct PCIAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let domain: UInt32
  public let bus: UInt8
  public let device: UInt8    // 0...31
  public let function: UInt8  // 0...7

  public init?(domain: UInt32, bus: UInt8, device: UInt8, function: UInt8) {
    guard device < 32, function < 8 else { return nil }
    self.domain = domain; self.bus = bus; self.device = device; self.function = function
  }

  /// Parses "DDDD:BB:dd.f" (domain of 4 or more hex digits, as VMD domains
  /// have 5). `nil` for anything else.
  public init?(_ text: String) {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 3 else { return nil }
    let devfn = parts[2].split(separator: ".", omittingEmptySubsequences: false)
    guard devfn.count == 2,
          parts[0].count >= 4, parts[0].count <= 8, parts[1].count == 2, devfn[0].count == 2, devfn[1].count == 1,
          let domain = Self.hex(parts[0], UInt32.self), let bus = Self.hex(parts[1], UInt8.self),
          let device = Self.hex(devfn[0], UInt8.self), let function = Self.hex(devfn[1], UInt8.self)
    else { return nil }
    self.init(domain: domain, bus: bus, device: device, function: function)
  }

  private static func hex<T: FixedWidthInteger>(_ s: Substring, _: T.Type) -> T? {
    guard s.allSatisfy(\.isHexDigit) else { return nil }  // no sign, no prefix
    return T(s, radix: 16)
  }

  public var description: String {
    func h(_ v: UInt64, _ width: Int) -> String {
      let s = String(v, radix: 16)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(h(UInt64(domain), 4)):\(h(UInt64(bus), 2)):\(h(UInt64(device), 2)).\(function)"
  }

  public static func < (a: PCIAddress, b: PCIAddress) -> Bool {
    (a.domain, a.bus, a.device, a.function) < (b.domain, b.bus, b.device, b.function)
  }
}

/// One enabled VF of a PF, as sysfs shows it.
public struct VirtualFunction: Sendable, Equatable {
  /// N of the PF's `virtfnN` link: the VF number netlink's IFLA_VF_* use.
  public let index: Int
  public let address: PCIAddress
  /// The bound driver's name (`vfio-pci`, `iavf`, `ixgbevf`, `mlx5_core`...),
  /// `nil` when no driver is bound.
  public let driver: String?
  /// The VF's netdevs when a network driver is bound; empty for vfio-pci.
  public let netdevs: [String]

  public init(index: Int, address: PCIAddress, driver: String?, netdevs: [String]) {
    self.index = index; self.address = address; self.driver = driver; self.netdevs = netdevs
  }
}

/// An SR-IOV capable PF and its enabled VFs.
public struct PhysicalFunction: Sendable, Equatable {
  public let netdev: String
  public let address: PCIAddress
  /// sriov_totalvfs: how many VFs the device can have.
  public let totalVFs: Int
  /// sriov_numvfs: how many are enabled now (0 = SR-IOV switched off).
  public let enabledVFs: Int
  /// Ordered by index; exactly `enabledVFs` of them.
  public let virtualFunctions: [VirtualFunction]

  /// Splits the VFs by whether a running domain holds their PCI address (the
  /// libvirt side knows that; sysfs does not: a vfio-pci VF may be idle).
  public func usage(assignedToDomains assigned: Set<PCIAddress>) -> (used: [VirtualFunction], free: [VirtualFunction]) {
    (virtualFunctions.filter { assigned.contains($0.address) }, virtualFunctions.filter { !assigned.contains($0.address) })
  }
}

/// What went wrong reading the SR-IOV inventory, with the sysfs path. Never
/// turned into a count of 0.
public enum SysfsError: Error, Sendable, Equatable, CustomStringConvertible {
  case noSuchNetdev(name: String, path: String)
  /// A virtual netdev (veth, bridge, tap) has no `device` link, or it does not
  /// point at a PCI function.
  case notAPCIDevice(netdev: String, path: String)
  /// The device has no sriov_totalvfs: no SR-IOV capability, or it is
  /// disabled in firmware so the kernel made no SR-IOV files.
  case noSRIOV(netdev: String, path: String)
  case unreadable(path: String, error: SystemCallError)
  case unparseable(path: String, content: String, expected: String)
  /// `virtfnN` points at a device directory that does not exist.
  case danglingVirtualFunctionLink(path: String, target: String)
  /// sriov_numvfs says N VFs are enabled but `virtfnK` (K < N) is missing.
  case missingVirtualFunctionLink(path: String, enabledVFs: Int)
  case inconsistent(path: String, reason: String)

  public var description: String {
    switch self {
    case .noSuchNetdev(let name, let path): "\(path): no network interface named \(name)"
    case .notAPCIDevice(let netdev, let path): "\(path): \(netdev) is not a PCI device (no PCI 'device' link), so it cannot be an SR-IOV PF"
    case .noSRIOV(let netdev, let path): "\(path): missing, \(netdev) has no SR-IOV capability (or it is disabled in firmware)"
    case .unreadable(let path, let error): "\(path): cannot be read: \(error)"
    case .unparseable(let path, let content, let expected): "\(path): \"\(content)\" is not \(expected)"
    case .danglingVirtualFunctionLink(let path, let target): "\(path): link to \(target), which does not exist (dangling virtfn link)"
    case .missingVirtualFunctionLink(let path, let n): "\(path): missing although sriov_numvfs is \(n)"
    case .inconsistent(let path, let reason): "\(path): \(reason)"
    }
  }
}

/// The SR-IOV inventory of the PF behind netdev `netdev`.
///
/// Paths read (under `sysfs.path`), with where the kernel defines them:
/// - class/net/NAME/device → the PCI function (driver core,
///   drivers/base/core.c `device_add_class_symlinks`)
/// - device/sriov_totalvfs, device/sriov_numvfs (Documentation/ABI/testing/
///   sysfs-bus-pci; drivers/pci/iov.c `sriov_totalvfs_show`, `sriov_numvfs_show`)
/// - device/virtfnN → ../VF (drivers/pci/iov.c `pci_iov_sysfs_link`,
///   Documentation/PCI/pci-iov-howto.rst)
/// - VF/driver → bus/pci/drivers/NAME (drivers/base/dd.c `driver_sysfs_add`)
/// - VF/net/NAME when a network driver is bound (drivers/base/core.c
///   `get_device_parent` makes the class directory)
public func physicalFunction(netdev: String, sysfs: SysfsRoot = SysfsRoot()) throws(SysfsError) -> PhysicalFunction {
  let netPath = "\(sysfs.path)/class/net/\(netdev)"
  guard resolves(netPath) else { throw .noSuchNetdev(name: netdev, path: netPath) }
  let devicePath = "\(netPath)/device"
  let deviceKind: FileKind
  do { deviceKind = try fileKind(devicePath) } catch { throw .unreadable(path: devicePath, error: error) }
  guard deviceKind == .symbolicLink else { throw .notAPCIDevice(netdev: netdev, path: devicePath) }
  let target: String
  do { target = try readSymbolicLink(devicePath) } catch { throw .unreadable(path: devicePath, error: error) }
  guard let address = PCIAddress(lastComponent(target)) else { throw .notAPCIDevice(netdev: netdev, path: devicePath) }

  let totalPath = "\(devicePath)/sriov_totalvfs"
  guard resolves(totalPath) else { throw .noSRIOV(netdev: netdev, path: totalPath) }
  let total = try readCount(totalPath)
  let numPath = "\(devicePath)/sriov_numvfs"
  let enabled = try readCount(numPath)
  guard enabled <= total else {
    throw .inconsistent(path: numPath, reason: "\(enabled) VFs enabled but sriov_totalvfs is \(total)")
  }

  var vfs: [VirtualFunction] = []
  for index in 0..<enabled {
    let link = "\(devicePath)/virtfn\(index)"
    let kind: FileKind
    do { kind = try fileKind(link) } catch { throw .unreadable(path: link, error: error) }
    guard kind == .symbolicLink else { throw .missingVirtualFunctionLink(path: link, enabledVFs: enabled) }
    let vfTarget: String
    do { vfTarget = try readSymbolicLink(link) } catch { throw .unreadable(path: link, error: error) }
    guard resolves(link) else { throw .danglingVirtualFunctionLink(path: link, target: vfTarget) }
    guard let vfAddress = PCIAddress(lastComponent(vfTarget)) else {
      throw .unparseable(path: link, content: vfTarget, expected: "a link to a PCI function (DDDD:BB:DD.F)")
    }
    let driverLink = "\(link)/driver"
    var driver: String? = nil
    do {
      if try fileKind(driverLink) == .symbolicLink { driver = lastComponent(try readSymbolicLink(driverLink)) }
    } catch { throw .unreadable(path: driverLink, error: error) }
    let netDir = "\(link)/net"
    var netdevs: [String] = []
    do {
      if try fileKind(netDir) == .directory { netdevs = try directoryEntries(netDir).sorted() }
    } catch { throw .unreadable(path: netDir, error: error) }
    vfs.append(VirtualFunction(index: index, address: vfAddress, driver: driver, netdevs: netdevs))
  }
  return PhysicalFunction(netdev: netdev, address: address, totalVFs: total, enabledVFs: enabled, virtualFunctions: vfs)
}

private func lastComponent(_ path: String) -> String {
  String(path.split(separator: "/").last ?? "")
}

/// A sysfs decimal attribute ("%u\n").
private func readCount(_ path: String) throws(SysfsError) -> Int {
  var buffer: [UInt8] = []
  let n: Int
  do { n = try readWholeFile(path, into: &buffer) } catch { throw .unreadable(path: path, error: error) }
  var text = String(decoding: buffer[0..<n], as: UTF8.self)
  if text.hasSuffix("\n") { text.removeLast() }
  guard !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber), let value = Int(text), value <= 0xFFFF else {
    throw .unparseable(path: path, content: text, expected: "a count of VFs (a decimal number up to 65535)")
  }
  return value
}

/// Where a VF sits: its PF (netdev and PCI address) and its number there,
/// the N of the PF's `virtfnN` that netlink's IFLA_VF_* call the VF.
public struct VFLocation: Sendable, Equatable, Hashable {
  public let address: PCIAddress
  public let pf: String
  public let pfAddress: PCIAddress
  public let index: Int
  /// The VF's bound driver (`vfio-pci` while a guest holds it), nil when none.
  public let driver: String?

  public init(address: PCIAddress, pf: String, pfAddress: PCIAddress, index: Int, driver: String?) {
    self.address = address; self.pf = pf; self.pfAddress = pfAddress; self.index = index; self.driver = driver
  }
}

/// The PF and VF number of the VF at `address` (what a domain's live XML
/// names in `<source><address type='pci' …/>`).
///
/// Paths read (under `sysfs.path`), with where the kernel defines them:
/// - bus/pci/devices/ADDR → the device directory (drivers/pci/probe.c
///   `pci_device_add`, Documentation/ABI/testing/sysfs-bus-pci)
/// - ADDR/physfn → ../PF, only on a VF (drivers/pci/iov.c `pci_iov_sysfs_link`)
/// - PF/virtfnN → ../VF, one per enabled VF (same function)
/// - PF/net/NAME, the PF's netdev (drivers/base/core.c `get_device_parent`)
/// - ADDR/driver → bus/pci/drivers/NAME (drivers/base/dd.c `driver_sysfs_add`)
public func virtualFunctionLocation(_ address: PCIAddress, sysfs: SysfsRoot = SysfsRoot()) throws(SysfsError) -> VFLocation {
  let device = "\(sysfs.path)/bus/pci/devices/\(address)"
  guard resolves(device) else {
    throw .inconsistent(path: device, reason: "no PCI device \(address) on this host")
  }
  let physfn = "\(device)/physfn"
  let kind: FileKind
  do { kind = try fileKind(physfn) } catch { throw .unreadable(path: physfn, error: error) }
  guard kind == .symbolicLink, resolves(physfn) else {
    throw .inconsistent(path: physfn, reason: "missing: \(address) is not an SR-IOV VF")
  }
  let pfTarget: String
  do { pfTarget = try readSymbolicLink(physfn) } catch { throw .unreadable(path: physfn, error: error) }
  guard let pfAddress = PCIAddress(lastComponent(pfTarget)) else {
    throw .unparseable(path: physfn, content: pfTarget, expected: "a link to a PCI function (DDDD:BB:DD.F)")
  }
  let pfNet = "\(physfn)/net"
  let pfNetdevs: [String]
  do { pfNetdevs = try fileKind(pfNet) == .directory ? try directoryEntries(pfNet).sorted() : [] } catch {
    throw .unreadable(path: pfNet, error: error)
  }
  // In switchdev mode the representors share the PF's PCI device (mlx5
  // registers them with it as parent): the PF's own netdev is the uplink,
  // whose phys_port_name is `p<N>`, or, in legacy mode, unreadable.
  let uplinks = pfNetdevs.filter { name in
    guard let port = attributeText("\(pfNet)/\(name)/phys_port_name") else { return true }
    return !(port.hasPrefix("pf") || port.hasPrefix("c"))
  }
  guard let pf = uplinks.first else {
    throw .inconsistent(path: pfNet, reason: "the PF \(pfAddress) of \(address) has no netdev (its network driver is not bound)")
  }
  let entries: [String]
  do { entries = try directoryEntries(physfn + "/") } catch { throw .unreadable(path: physfn, error: error) }
  var index: Int? = nil
  for entry in entries where entry.hasPrefix("virtfn") {
    guard let n = Int(entry.dropFirst(6)), n >= 0 else { continue }
    let link = "\(physfn)/\(entry)"
    guard let target = try? readSymbolicLink(link) else { continue }
    if PCIAddress(lastComponent(target)) == address { index = n; break }
  }
  guard let index else {
    throw .inconsistent(path: physfn, reason: "no virtfnN of PF \(pfAddress) links to \(address)")
  }
  let driverLink = "\(device)/driver"
  var driver: String? = nil
  do {
    if try fileKind(driverLink) == .symbolicLink { driver = lastComponent(try readSymbolicLink(driverLink)) }
  } catch { throw .unreadable(path: driverLink, error: error) }
  return VFLocation(address: address, pf: pf, pfAddress: pfAddress, index: index, driver: driver)
}

/// Why a VF has no representor to read, or its name.
public enum RepresentorLookup: Sendable, Equatable {
  case found(netdev: String)
  case none(reason: String)
}

/// The representor netdev of a VF in switchdev mode: the netdev that shares
/// its PF's `phys_switch_id` and whose `phys_port_name` is `pf<N>vf<M>`, N
/// the PF's number on the switch (its PCI function: mlx5, ice and nfp give
/// devlink's `pci_vf.pf` that way) and M the VF number.
///
/// From Documentation/networking/switchdev.rst ("Port representors",
/// "Switch ID": ports of one switch report the same phys_switch_id) and
/// Documentation/networking/devlink/devlink-port.rst (PCI VF ports are
/// named `pfNvfM`, net/devlink/port.c `__devlink_port_phys_port_name_get`;
/// `c<C>pfNvfM` names an external controller's VF, another host's, so it
/// never matches). Both files
/// are `class/net/NAME/phys_switch_id` and `…/phys_port_name`
/// (net/core/net-sysfs.c, Documentation/ABI/testing/sysfs-class-net); a
/// driver in legacy SR-IOV mode answers their read with EOPNOTSUPP, which
/// is read here as "no switch", like a file that is not there.
public func representor(of vf: VFLocation, sysfs: SysfsRoot = SysfsRoot()) -> RepresentorLookup {
  let net = "\(sysfs.path)/class/net"
  guard let switchID = attributeText("\(net)/\(vf.pf)/phys_switch_id"), !switchID.isEmpty else {
    return .none(reason: "PF \(vf.pf) has no phys_switch_id (not in switchdev mode)")
  }
  let wanted = "pf\(vf.pfAddress.function)vf\(vf.index)"
  guard let names = try? directoryEntries(net) else { return .none(reason: "\(net) cannot be listed") }
  var found: [String] = []
  for name in names where name != vf.pf {
    guard let port = attributeText("\(net)/\(name)/phys_port_name"), port == wanted,
          attributeText("\(net)/\(name)/phys_switch_id") == switchID else { continue }
    found.append(name)
  }
  switch found.count {
  case 1: return .found(netdev: found[0])
  case 0: return .none(reason: "no netdev on switch \(switchID) of PF \(vf.pf) has phys_port_name \(wanted)")
  default: return .none(reason: "\(found.sorted().joined(separator: ", ")) all claim \(wanted) on switch \(switchID)")
  }
}

/// A sysfs text attribute without its newline, nil when it is missing or
/// cannot be read (EOPNOTSUPP for the switch attributes of a legacy driver).
func attributeText(_ path: String) -> String? {
  var buffer: [UInt8] = []
  guard let n = try? readWholeFile(path, into: &buffer) else { return nil }
  var text = String(decoding: buffer[0..<n], as: UTF8.self)
  while text.hasSuffix("\n") { text.removeLast() }
  return text
}
