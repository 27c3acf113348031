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
