import Foundation
import Testing
import VFShiftHost

/// Builds a sysfs tree in a temporary directory laid out as the kernel lays it
/// for a PCI NIC with SR-IOV. Every path says where the kernel makes it.
struct SysfsTree {
  let root: String
  let fm = FileManager.default

  init() throws {
    root = fm.temporaryDirectory.appendingPathComponent("sysfs-\(UUID().uuidString)").path
    // Driver directories: drivers/base/bus.c `bus_add_driver` makes
    // /sys/bus/pci/drivers/NAME (Documentation/ABI/testing/sysfs-bus-pci).
    for driver in ["vfio-pci", "iavf", "ixgbe"] { try fm.createDirectory(atPath: "\(root)/bus/pci/drivers/\(driver)", withIntermediateDirectories: true) }
    try fm.createDirectory(atPath: "\(root)/class/net", withIntermediateDirectories: true)
  }

  func remove() { try? fm.removeItem(atPath: root) }

  /// /sys/devices/pci0000:00/0000:00:03.0/ADDR: a PCI function's directory
  /// (drivers/pci/probe.c `pci_setup_device` names it "%04x:%02x:%02x.%d").
  func devicePath(_ address: String) -> String { "\(root)/devices/pci0000:00/0000:00:03.0/\(address)" }

  func write(_ path: String, _ text: String) throws { try text.write(toFile: path, atomically: false, encoding: .utf8) }

  func link(_ path: String, to target: String) throws { try fm.createSymbolicLink(atPath: path, withDestinationPath: target) }

  /// A netdev under a PCI function plus its class link:
  /// - DEVICE/net/NAME: the class directory, drivers/base/core.c `get_device_parent`
  /// - /sys/class/net/NAME -> ../../devices/.../net/NAME: `device_add_class_symlinks`
  /// - DEVICE/net/NAME/device -> ../../../ADDR: same function, the "device" link
  func addNetdev(_ name: String, on address: String) throws {
    let dir = "\(devicePath(address))/net/\(name)"
    try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try link("\(dir)/device", to: "../../../\(address)")
    try link("\(root)/class/net/\(name)", to: "../../devices/pci0000:00/0000:00:03.0/\(address)/net/\(name)")
  }

  /// A PF: sriov_totalvfs and sriov_numvfs (Documentation/ABI/testing/sysfs-bus-pci,
  /// drivers/pci/iov.c `sriov_totalvfs_show`/`sriov_numvfs_show`, "%u\n"), and for each
  /// enabled VF a `virtfnN` link to it and its `physfn` link back
  /// (drivers/pci/iov.c `pci_iov_sysfs_link`; Documentation/PCI/pci-iov-howto.rst).
  /// VF addresses follow the SR-IOV capability's First VF Offset 0x80 and
  /// VF Stride 2 (drivers/pci/iov.c `pci_iov_virtfn_devfn`), as an X540 has.
  @discardableResult
  func addPF(_ netdev: String, address: String = "0000:03:00.0", total: Int, enabled: Int,
             driverOfVF: (Int) -> String? = { _ in "iavf" }) throws -> [String] {
    let pf = devicePath(address)
    try fm.createDirectory(atPath: pf, withIntermediateDirectories: true)
    try link("\(pf)/driver", to: "../../../../bus/pci/drivers/ixgbe")
    try addNetdev(netdev, on: address)
    try write("\(pf)/sriov_totalvfs", "\(total)\n")
    try write("\(pf)/sriov_numvfs", "\(enabled)\n")
    var vfs: [String] = []
    for n in 0..<enabled {
      let devfn = 0x80 + 2 * n
      let vf = String(format: "0000:03:%02x.%x", devfn >> 3, devfn & 7)
      vfs.append(vf)
      try fm.createDirectory(atPath: devicePath(vf), withIntermediateDirectories: true)
      try link("\(pf)/virtfn\(n)", to: "../\(vf)")
      try link("\(devicePath(vf))/physfn", to: "../\(address)")
      if let driver = driverOfVF(n) {
        // drivers/base/dd.c `driver_sysfs_add`: DEVICE/driver -> bus/pci/drivers/NAME
        try link("\(devicePath(vf))/driver", to: "../../../../bus/pci/drivers/\(driver)")
        if driver != "vfio-pci" { try addNetdev("\(netdev)v\(n)", on: vf) }
      }
    }
    return vfs
  }
}

@Suite struct PCIAddressTests {
  @Test func parsesAndPrintsTheKernelsForm() throws {
    let a = try #require(PCIAddress("0000:03:10.1"))
    #expect(a.domain == 0 && a.bus == 3 && a.device == 0x10 && a.function == 1)
    #expect(a.description == "0000:03:10.1")
    #expect(PCIAddress("10000:e1:1f.7")?.description == "10000:e1:1f.7", "VMD domains have five digits")
  }

  @Test func rejectsWhatIsNotAPCIAddress() {
    for text in ["", "03:10.1", "0000:03:10", "0000:03:20.0", "0000:03:10.8", "0000:3:10.1", "0000:03:10.1x", "+000:03:10.1", "0000:03:1g.1", "0000:03:10.-1"] {
      #expect(PCIAddress(text) == nil, "\"\(text)\"")
    }
  }
}

@Suite struct SysfsInventoryTests {
  @Test func aPFWithZeroVFsEnabledHasNone() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 64, enabled: 0)
    let pf = try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(pf.address.description == "0000:03:00.0")
    #expect(pf.totalVFs == 64)
    #expect(pf.enabledVFs == 0)
    #expect(pf.virtualFunctions.isEmpty)
  }

  @Test func sevenOfSixtyFourInUse() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    // VFs 0-6 bound to vfio-pci and held by domains, VF 7 on vfio-pci but idle,
    // the rest on the iavf network driver.
    let vfs = try tree.addPF("enp3s0f0", total: 64, enabled: 64, driverOfVF: { $0 < 8 ? "vfio-pci" : "iavf" })
    let pf = try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(pf.virtualFunctions.count == 64)
    #expect(pf.virtualFunctions.map(\.index) == Array(0..<64))
    #expect(pf.virtualFunctions[0].address.description == "0000:03:10.0")
    #expect(pf.virtualFunctions[63].address.description == "0000:03:1f.6")
    #expect(pf.virtualFunctions[5].driver == "vfio-pci")
    #expect(pf.virtualFunctions[5].netdevs.isEmpty)
    #expect(pf.virtualFunctions[9].driver == "iavf")
    #expect(pf.virtualFunctions[9].netdevs == ["enp3s0f0v9"])

    let inDomains = Set(vfs[0..<7].map { PCIAddress($0)! })
    let (used, free) = pf.usage(assignedToDomains: inDomains)
    #expect(used.count == 7)
    #expect(free.count == 57)
    #expect(free.first?.index == 7, "a vfio-pci VF that no domain holds is free")
  }

  @Test func aVFWithNoDriverBoundHasNoDriverName() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 8, enabled: 2, driverOfVF: { $0 == 0 ? nil : "vfio-pci" })
    let pf = try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(pf.virtualFunctions[0].driver == nil)
    #expect(pf.virtualFunctions[1].driver == "vfio-pci")
  }

  @Test func aPFWithSRIOVDisabledIsAClearError() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    // No SR-IOV capability (or disabled in firmware): drivers/pci/iov.c never
    // creates the sriov_* attributes (`sriov_attrs_are_visible`).
    try tree.fm.createDirectory(atPath: tree.devicePath("0000:04:00.0"), withIntermediateDirectories: true)
    try tree.addNetdev("eno1", on: "0000:04:00.0")
    #expect(throws: SysfsError.noSRIOV(netdev: "eno1", path: "\(tree.root)/class/net/eno1/device/sriov_totalvfs")) {
      try physicalFunction(netdev: "eno1", sysfs: SysfsRoot(tree.root))
    }
  }

  @Test func aVirtualNetdevIsNotAPF() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    // A veth or bridge lives under /sys/devices/virtual/net/NAME with no "device" link.
    try tree.fm.createDirectory(atPath: "\(tree.root)/devices/virtual/net/veth0", withIntermediateDirectories: true)
    try tree.link("\(tree.root)/class/net/veth0", to: "../../devices/virtual/net/veth0")
    #expect(throws: SysfsError.notAPCIDevice(netdev: "veth0", path: "\(tree.root)/class/net/veth0/device")) {
      try physicalFunction(netdev: "veth0", sysfs: SysfsRoot(tree.root))
    }
    #expect(throws: SysfsError.noSuchNetdev(name: "eth7", path: "\(tree.root)/class/net/eth7")) {
      try physicalFunction(netdev: "eth7", sysfs: SysfsRoot(tree.root))
    }
  }

  @Test func aDanglingVirtfnLinkIsAnErrorNamingTheLink() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    let vfs = try tree.addPF("enp3s0f0", total: 8, enabled: 4)
    try tree.fm.removeItem(atPath: tree.devicePath(vfs[2]))  // the VF's directory is gone, the link stays
    let path = "\(tree.root)/class/net/enp3s0f0/device/virtfn2"
    #expect(throws: SysfsError.danglingVirtualFunctionLink(path: path, target: "../\(vfs[2])")) {
      try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    }
  }

  @Test func aMissingVirtfnLinkIsAnError() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 8, enabled: 4)
    try tree.fm.removeItem(atPath: "\(tree.devicePath("0000:03:00.0"))/virtfn3")
    #expect(throws: SysfsError.missingVirtualFunctionLink(path: "\(tree.root)/class/net/enp3s0f0/device/virtfn3", enabledVFs: 4)) {
      try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    }
  }

  @Test func anUnreadableFileIsAnErrorWithItsErrnoNeverZero() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 8, enabled: 2)
    let numvfs = "\(tree.devicePath("0000:03:00.0"))/sriov_numvfs"
    // Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE), so the file that
    // cannot be read is made a directory: read(2) fails with EISDIR.
    try tree.fm.removeItem(atPath: numvfs)
    try tree.fm.createDirectory(atPath: numvfs, withIntermediateDirectories: false)
    do {
      let pf = try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
      Issue.record("read an inventory from an unreadable sriov_numvfs: \(pf)")
    } catch {
      guard case .unreadable(let path, let e) = error else { Issue.record("\(error)"); return }
      #expect(path.hasSuffix("/device/sriov_numvfs"))
      #expect(e.errnoName == "EISDIR")
      #expect("\(error)".contains("sriov_numvfs: cannot be read"))
    }
  }

  @Test func aFileThatIsNotACountIsAnErrorQuotingIt() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 8, enabled: 2)
    try tree.write("\(tree.devicePath("0000:03:00.0"))/sriov_totalvfs", "eight\n")
    do {
      _ = try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root))
      Issue.record("parsed \"eight\" as a count")
    } catch {
      guard case .unparseable(_, let content, _) = error else { Issue.record("\(error)"); return }
      #expect(content == "eight")
    }
  }

  @Test func moreVFsEnabledThanTheDeviceHasIsInconsistent() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 2, enabled: 2)
    try tree.write("\(tree.devicePath("0000:03:00.0"))/sriov_numvfs", "3\n")
    #expect(throws: SysfsError.self) { try physicalFunction(netdev: "enp3s0f0", sysfs: SysfsRoot(tree.root)) }
  }

  @Test func theRealSysfsSaysLoopbackIsNoPF() {
    // lo exists everywhere and is virtual: a clear error, not an empty PF.
    #expect(throws: SysfsError.notAPCIDevice(netdev: "lo", path: "/sys/class/net/lo/device")) {
      try physicalFunction(netdev: "lo")
    }
  }
}
