import Foundation
import Testing
import VFShiftCore
import VFShiftHost

extension SysfsTree {
  /// IOMMU group N holding `address`, as drivers/iommu/iommu.c
  /// `iommu_group_add_device` lays it out: /sys/kernel/iommu_groups/N/devices/ADDR
  /// links to the device, and the device's `iommu_group` links back to the
  /// group. /sys/bus/pci/devices/ADDR is the bus's link to the device
  /// (drivers/base/bus.c `bus_add_device`).
  func addIOMMUGroup(_ n: Int, holding address: String) throws {
    let group = "\(root)/kernel/iommu_groups/\(n)"
    try fm.createDirectory(atPath: "\(group)/devices", withIntermediateDirectories: true)
    try link("\(group)/devices/\(address)", to: "../../../../devices/pci0000:00/0000:00:03.0/\(address)")
    try link("\(devicePath(address))/iommu_group", to: "../../../../kernel/iommu_groups/\(n)")
    try fm.createDirectory(atPath: "\(root)/bus/pci/devices", withIntermediateDirectories: true)
    try link("\(root)/bus/pci/devices/\(address)", to: "../../../devices/pci0000:00/0000:00:03.0/\(address)")
  }
}

@Suite("doctor: SR-IOV readiness from sysfs")
struct ReadinessTests {
  func statuses(_ checks: [ReadinessCheck]) -> [String] { checks.map { "\($0.status.rawValue) \($0.check)" } }

  @Test("a PF with its VFs enabled, bound and each in an IOMMU group passes")
  func readyPF() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    let vfs = try tree.addPF("enp3s0f0", total: 63, enabled: 4, driverOfVF: { $0 < 2 ? "vfio-pci" : "iavf" })
    for (i, vf) in vfs.enumerated() { try tree.addIOMMUGroup(20 + i, holding: vf) }
    let checks = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(statuses(checks) == ["PASS PF enp3s0f0 in sysfs", "PASS VFs of enp3s0f0 enabled and bound", "PASS IOMMU groups"])
    #expect(checks[1].detail == "4 of 63 enabled (2 iavf, 2 vfio-pci)")
    #expect(checks.allSatisfy { $0.subject == "pool fast" })
  }

  @Test("SR-IOV switched off: FAIL with the sriov_numvfs to write")
  func numVFsZero() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    try tree.addPF("enp3s0f0", total: 63, enabled: 0)
    let checks = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(statuses(checks) == ["PASS PF enp3s0f0 in sysfs", "FAIL VFs of enp3s0f0 enabled"])
    #expect(checks[1].fix?.contains("/sys/class/net/enp3s0f0/device/sriov_numvfs") == true)
  }

  @Test("no IOMMU groups at all, or a VF outside them: FAIL naming the kernel parameter")
  func noIOMMU() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    let vfs = try tree.addPF("enp3s0f0", total: 8, enabled: 2)
    var checks = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(statuses(checks).last == "FAIL IOMMU groups")
    #expect(checks.last?.fix?.contains("intel_iommu=on") == true)
    try tree.addIOMMUGroup(7, holding: vfs[0])
    checks = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(statuses(checks).last == "FAIL IOMMU groups")
    #expect(checks.last?.detail == "1 VF(s) in no IOMMU group: \(vfs[1])")
  }

  @Test("a VF with no driver bound warns; a netdev that is not a PF fails")
  func unboundAndMissing() throws {
    let tree = try SysfsTree()
    defer { tree.remove() }
    let vfs = try tree.addPF("enp3s0f0", total: 8, enabled: 2, driverOfVF: { $0 == 0 ? nil : "iavf" })
    for (i, vf) in vfs.enumerated() { try tree.addIOMMUGroup(i, holding: vf) }
    let checks = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "enp3s0f0", sysfs: SysfsRoot(tree.root))
    #expect(statuses(checks) == ["PASS PF enp3s0f0 in sysfs", "WARN VFs of enp3s0f0 enabled and bound", "PASS IOMMU groups"])
    let missing = SRIOVReadiness.physicalFunctionChecks(pool: "fast", pf: "eth9", sysfs: SysfsRoot(tree.root))
    #expect(statuses(missing) == ["FAIL PF eth9 in sysfs"])
    #expect(missing[0].detail.contains("no network interface named eth9"))
  }

  @Test("the report: exit decision, text lines with the fix under a FAIL, JSON")
  func report() {
    let r = ReadinessReport(checks: [
      ReadinessCheck("libvirt", "library", .pass, "libvirt 9.0.0"),
      ReadinessCheck("pool p", "IOMMU groups", .fail, "none", fix: "enable it"),
      ReadinessCheck("vm a", "guest agent", .warn, "not configured \"x\"", fix: "add one"),
    ])
    #expect(!r.ready)
    #expect(r.text() == """
      PASS  libvirt: library — libvirt 9.0.0
      FAIL  pool p: IOMMU groups — none
            fix: enable it
      WARN  vm a: guest agent — not configured "x"
            fix: add one
      3 checks: 1 passed, 1 warned, 1 failed — not ready

      """)
    #expect(r.json().hasPrefix(#"{"ready":false,"failed":1,"warned":1,"checks":[{"subject":"libvirt","check":"library","status":"PASS","detail":"libvirt 9.0.0","fix":null}"#))
    #expect(r.json().contains(#""detail":"not configured \"x\"""#))
    #expect(ReadinessReport(checks: [r.checks[2]]).ready, "WARN alone is ready")
  }
}
