import Foundation
import Testing
import VFShiftCore
import VFShiftHost
import VFShiftTestSupport

/// Where a domain's VF sits and what can measure it, over sysfs trees and
/// netlink replies laid out as the kernel makes them (Tests/Support/SRIOVFixtures.swift).
@Suite struct VFLocationTests {
  @Test func aVFBoundToVFIOIsFoundByItsPCIAddress() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    let vfs = try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 8)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(vfs[5])), sysfs: SysfsRoot(sys.root))
    #expect(vf.pf == "enp3s0f0np0")
    #expect(vf.pfAddress.description == "0000:03:00.0")
    #expect(vf.index == 5, "the N of the PF's virtfnN that links to it")
    #expect(vf.driver == "vfio-pci")
    #expect(vfs[5] == "0000:03:00.7" && vfs[6] == "0000:03:01.0", "VF offset 2, stride 1 crosses a slot")
  }

  @Test func theSecondPFOfACardNumbersItsVFsFromZero() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 4)
    let second = try sys.addPF("enp3s0f1np1", address: "0000:03:08.1", vfs: 4)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(second[2])), sysfs: SysfsRoot(sys.root))
    #expect(vf.pf == "enp3s0f1np1")
    #expect(vf.index == 2)
  }

  @Test func inSwitchdevModeThePFIsTheUplinkNotARepresentorOnTheSameDevice() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    // Representors enp3s0f0_0… sit in PF/net/ beside the uplink; sorted, "a_0" would not come first
    // by luck for every naming, so the uplink is told by its phys_port_name (p0).
    let vfs = try sys.addPF("eth_up", address: "0000:03:00.0", vfs: 2, switchID: "b8599f0300ab12cd")
    try sys.addNetdev("a_rep", on: "0000:03:00.0", switchID: "b8599f0300ab12cd", portName: "pf0vf9")
    let vf = try virtualFunctionLocation(try #require(PCIAddress(vfs[1])), sysfs: SysfsRoot(sys.root))
    #expect(vf.pf == "eth_up")
  }

  @Test func aFunctionThatIsNotAVFSaysSo() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 2)
    do {
      _ = try virtualFunctionLocation(try #require(PCIAddress("0000:03:00.0")), sysfs: SysfsRoot(sys.root))
      Issue.record("a PF was located as a VF")
    } catch {
      #expect("\(error)".contains("physfn: missing: 0000:03:00.0 is not an SR-IOV VF"), "\(error)")
    }
    do {
      _ = try virtualFunctionLocation(try #require(PCIAddress("0000:3b:02.5")), sysfs: SysfsRoot(sys.root))
      Issue.record("a device that does not exist was located")
    } catch {
      #expect("\(error)".contains("no PCI device 0000:3b:02.5 on this host"), "\(error)")
    }
  }
}

@Suite struct RepresentorTests {
  @Test func theRepresentorSharesTheSwitchIDAndIsNamedPfNvfM() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    let vfs = try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 8, switchID: "b8599f0300ab12cd")
    let root = SysfsRoot(sys.root)
    for n in [0, 3, 7] {
      let vf = try virtualFunctionLocation(try #require(PCIAddress(vfs[n])), sysfs: root)
      #expect(representor(of: vf, sysfs: root) == .found(netdev: "enp3s0f0np0_\(n)"))
    }
  }

  @Test func anotherSwitchsPortOfTheSameNameIsNotIt() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    // Two cards, each its own eswitch (own phys_switch_id), both PF function 0:
    // both have a pf0vf1; only the one on the VF's own switch counts.
    try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 2, switchID: "b8599f0300ab12cd")
    let other = try sys.addPF("enp4s0f0np0", address: "0000:04:00.0", vfs: 2, switchID: "0c42a10300ffee01")
    let root = SysfsRoot(sys.root)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(other[1])), sysfs: root)
    #expect(representor(of: vf, sysfs: root) == .found(netdev: "enp4s0f0np0_1"))
  }

  @Test func thePFNumberIsThePFsPCIFunction() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    // One switch for both ports (a multi-port eswitch): pf0vf2 and pf1vf2 both exist.
    try sys.addPF("p0", address: "0000:03:00.0", vfs: 3, switchID: "b8599f0300ab12cd")
    let second = try sys.addPF("p1", address: "0000:03:08.1", vfs: 3, switchID: "b8599f0300ab12cd")
    let root = SysfsRoot(sys.root)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(second[2])), sysfs: root)
    #expect(representor(of: vf, sysfs: root) == .found(netdev: "p1_2"))
  }

  @Test func legacyModeHasNoRepresentorAndSaysWhy() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    let vfs = try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 4)  // no switchID: legacy SR-IOV
    let root = SysfsRoot(sys.root)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(vfs[1])), sysfs: root)
    #expect(representor(of: vf, sysfs: root) == .none(reason: "PF enp3s0f0np0 has no phys_switch_id (not in switchdev mode)"))
  }

  @Test func aMissingRepresentorIsNamedInTheReason() throws {
    let sys = try SRIOVSysfs()
    defer { sys.remove() }
    let vfs = try sys.addPF("enp3s0f0np0", address: "0000:03:00.0", vfs: 2, switchID: "b8599f0300ab12cd")
    try FileManager.default.removeItem(atPath: "\(sys.root)/class/net/enp3s0f0np0_1")
    let root = SysfsRoot(sys.root)
    let vf = try virtualFunctionLocation(try #require(PCIAddress(vfs[1])), sysfs: root)
    #expect(representor(of: vf, sysfs: root)
      == .none(reason: "no netdev on switch b8599f0300ab12cd of PF enp3s0f0np0 has phys_port_name pf0vf1"))
  }
}

@Suite struct PFVFStatisticsReplyTests {
  static func stats(_ n: Int) -> VFStatsReply.Stats {
    VFStatsReply.Stats(rxPackets: UInt64(1000 + n), txPackets: UInt64(2000 + n), rxBytes: UInt64(1_000_000 * (n + 1)),
                       txBytes: UInt64(500_000 * (n + 1)), broadcast: 7, multicast: 9, rxDropped: UInt64(n), txDropped: 0)
  }

  @Test func eightVFsWithStatisticsGiveEightCountersFromTheVFsSide() throws {
    let reply = VFStatsReply.reply(pf: "enp3s0f0np0", vfs: (0..<8).map { Self.stats($0) })
    #expect(reply.count == 16 + 16 + 16 + 8 + 8 + 4 + 8 * (4 + 192 + 4 + 8 * 12), "message length as the kernel sizes it")
    let map = try parseVFStatistics(reply, pf: "enp3s0f0np0")
    #expect(map.keys.sorted() == Array(0..<8))
    for n in 0..<8 {
      let c = try #require(map[n])
      #expect(c.rxBytes == UInt64(1_000_000 * (n + 1)) && c.txBytes == UInt64(500_000 * (n + 1)), "VF \(n)")
      #expect(c.rxPackets == UInt64(1000 + n) && c.txPackets == UInt64(2000 + n))
      #expect(c.rxDrops == UInt64(n), "IFLA_VF_STATS_RX_DROPPED, not broadcast or multicast")
    }
  }

  @Test func aDriverWithoutPerVFStatisticsGivesNoCountersNotZero() throws {
    // ixgbe has no ndo_get_vf_stats: rtnl_fill_vfinfo writes no IFLA_VF_STATS.
    let map = try parseVFStatistics(VFStatsReply.reply(pf: "enp3s0f0", vfs: Array(repeating: nil, count: 8)))
    #expect(map.isEmpty)
  }
}
