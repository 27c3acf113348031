import VFShiftCore

/// `vfshift doctor`'s checks that sysfs alone answers: a pool's PF, its VFs and
/// their drivers, and the IOMMU groups device assignment needs.
///
/// Paths (under `sysfs.path`), besides those `physicalFunction` reads:
/// - kernel/iommu_groups/N/devices/ADDR (drivers/iommu/iommu.c
///   `iommu_group_add_device`; Documentation/ABI/testing/sysfs-kernel-iommu_groups)
/// - bus/pci/devices/ADDR/iommu_group -> ../../../kernel/iommu_groups/N (same function)
public enum SRIOVReadiness {
  /// The PF of a hostdev pool: present, SR-IOV on, every enabled VF in an IOMMU group.
  public static func physicalFunctionChecks(pool: String, pf netdev: String, sysfs: SysfsRoot = SysfsRoot()) -> [ReadinessCheck] {
    let subject = "pool \(pool)"
    let pf: PhysicalFunction
    do { pf = try physicalFunction(netdev: netdev, sysfs: sysfs) } catch {
      let fix: String = switch error {
      case .noSuchNetdev: "name the PF's netdev in the pool's network (<pf dev='…'/>) or the policy's pool `pf`"
      case .noSRIOV, .notAPCIDevice: "use an SR-IOV capable NIC, with SR-IOV enabled in the firmware"
      default: "see the path named; the kernel's SR-IOV files are inconsistent"
      }
      return [ReadinessCheck(subject, "PF \(netdev) in sysfs", .fail, "\(error)", fix: fix)]
    }
    var checks = [ReadinessCheck(subject, "PF \(netdev) in sysfs", .pass,
                                 "\(pf.address), SR-IOV capable: \(pf.totalVFs) VFs at most")]
    guard pf.enabledVFs > 0 else {
      checks.append(ReadinessCheck(subject, "VFs of \(netdev) enabled", .fail, "sriov_numvfs is 0: SR-IOV is switched off",
                                   fix: "echo N > /sys/class/net/\(netdev)/device/sriov_numvfs (N ≤ \(pf.totalVFs)), e.g. from a udev rule or systemd unit at boot"))
      return checks
    }
    var byDriver: [String: Int] = [:]
    for vf in pf.virtualFunctions { byDriver[vf.driver ?? "no driver", default: 0] += 1 }
    let drivers = byDriver.keys.sorted().map { "\(byDriver[$0]!) \($0)" }.joined(separator: ", ")
    // libvirt's managed hostdev binds a VF to vfio-pci itself at attach; a VF
    // with no driver at all cannot be handed back to the host afterwards.
    let unbound = byDriver["no driver"] ?? 0
    checks.append(ReadinessCheck(subject, "VFs of \(netdev) enabled and bound", unbound == 0 ? .pass : .warn,
                                 "\(pf.enabledVFs) of \(pf.totalVFs) enabled (\(drivers))",
                                 fix: unbound == 0 ? nil : "bind the VFs to their driver (or vfio-pci): libvirt rebinds a managed VF, but one with no driver never comes back to the host"))
    checks.append(iommuCheck(subject: subject, devices: pf.virtualFunctions.map(\.address), sysfs: sysfs))
    return checks
  }

  /// Whether the kernel made IOMMU groups, and (for `devices`) that each device is in one.
  public static func iommuCheck(subject: String, devices: [PCIAddress], sysfs: SysfsRoot = SysfsRoot()) -> ReadinessCheck {
    let groupsDir = "\(sysfs.path)/kernel/iommu_groups"
    let groups = (try? directoryEntries(groupsDir)) ?? []
    let fix = "enable the IOMMU in the firmware (VT-d / AMD-Vi) and on the kernel command line (intel_iommu=on or amd_iommu=on, iommu=pt), then reboot"
    guard !groups.isEmpty else {
      return ReadinessCheck(subject, "IOMMU groups", .fail, "\(groupsDir) is empty or missing: no IOMMU, so no device assignment", fix: fix)
    }
    let outside = devices.filter { !resolves("\(sysfs.path)/bus/pci/devices/\($0)/iommu_group") }
    guard outside.isEmpty else {
      return ReadinessCheck(subject, "IOMMU groups", .fail,
                            "\(outside.count) VF(s) in no IOMMU group: \(outside.map(\.description).joined(separator: ", "))", fix: fix)
    }
    return ReadinessCheck(subject, "IOMMU groups", .pass,
                          devices.isEmpty ? "\(groups.count) groups" : "\(groups.count) groups; each of the \(devices.count) VFs in one")
  }
}
