import Foundation
import Testing
import VFShiftCore
import VFShiftHost

/// Netlink messages built byte for byte from the kernel's UAPI headers, written
/// here independently of the module's own request builder:
/// - linux/netlink.h: struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type;
///   __u16 nlmsg_flags; __u32 nlmsg_seq; __u32 nlmsg_pid; }, NLMSG_ALIGNTO 4,
///   NLMSG_ERROR 2, NLMSG_DONE 3, NLM_F_MULTI 2, NLM_F_DUMP_INTR 0x10, struct nlmsgerr { int error; ... }
/// - linux/rtnetlink.h: struct rtattr { unsigned short rta_len; unsigned short rta_type; },
///   RTA_ALIGNTO 4, struct ifinfomsg (16 bytes), RTM_NEWLINK 16, RTM_NEWSTATS 92
/// - linux/if_link.h: struct if_stats_msg (12 bytes), IFLA_STATS_LINK_64 1,
///   struct rtnl_link_stats64 (u64s, rx_packets first), IFLA_IFNAME 3, IFLA_NUM_VF 21,
///   IFLA_VFINFO_LIST 22, IFLA_STATS64 23, IFLA_VF_INFO 1, IFLA_VF_MAC 1 (struct ifla_vf_mac
///   { __u32 vf; __u8 mac[32]; }), IFLA_VF_VLAN 2, IFLA_VF_STATS 8, IFLA_VF_STATS_RX_PACKETS 0 …
///   IFLA_VF_STATS_PAD 6, IFLA_VF_STATS_RX_DROPPED 7, IFLA_VF_STATS_TX_DROPPED 8
enum Wire {
  static func host<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
  static func pad(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }

  static func attribute(_ type: UInt16, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
    pad(host(UInt16(4 + payload.count)) + host(type | (nested ? 0x8000 : 0)) + payload)
  }

  static func message(_ type: UInt16, flags: UInt16 = 0x2, seq: UInt32 = 7, _ payload: [UInt8]) -> [UInt8] {
    host(UInt32(16 + payload.count)) + host(type) + host(flags) + host(seq) + host(UInt32(0)) + payload
  }

  static func ifinfomsg(index: Int32) -> [UInt8] {
    [0, 0] + host(UInt16(1)) /* ARPHRD_ETHER */ + host(index) + host(UInt32(0x1043)) + host(UInt32(0))
  }

  static func ifStatsMsg(index: UInt32) -> [UInt8] { [0, 0] + host(UInt16(0)) + host(index) + host(UInt32(1)) }

  /// rtnl_link_stats64 with the fields vfshift reads; the rest counts up so a
  /// wrong offset shows.
  static func stats64(rxPackets: UInt64, txPackets: UInt64, rxBytes: UInt64, txBytes: UInt64,
                      rxErrors: UInt64 = 0, txErrors: UInt64 = 0, rxDropped: UInt64 = 0, txDropped: UInt64 = 0,
                      rxMissed: UInt64 = 0) -> [UInt8] {
    var fields = (0..<25).map { UInt64(1_000_000 + $0) }
    fields[0] = rxPackets; fields[1] = txPackets; fields[2] = rxBytes; fields[3] = txBytes
    fields[4] = rxErrors; fields[5] = txErrors; fields[6] = rxDropped; fields[7] = txDropped
    fields[15] = rxMissed
    return fields.flatMap(host)
  }

  static let done = message(3, [0, 0, 0, 0])

  static func error(_ errno: Int32) -> [UInt8] {
    message(2, host(-errno) + message(18, flags: 1, ifinfomsg(index: 0)))
  }

  static func vfInfo(vf: UInt32?, stats: [(UInt16, UInt64)]?, nested: Bool = false) -> [UInt8] {
    var inner: [UInt8] = []
    if let vf { inner += attribute(1, host(vf) + [0x02, 0, 0, 0, 0, UInt8(vf)] + [UInt8](repeating: 0, count: 26)) }
    if let vf { inner += attribute(2, host(vf) + host(UInt32(0)) + host(UInt32(0))) }  // IFLA_VF_VLAN
    if let stats {
      var s: [UInt8] = []
      for (type, value) in stats {
        s += attribute(6, [])  // IFLA_VF_STATS_PAD, as nla_put_u64_64bit adds for alignment
        s += attribute(type, host(value))
      }
      inner += attribute(8, s, nested: nested)
    }
    return attribute(1, inner, nested: nested)
  }

  static func vfReply(_ infos: [[UInt8]]?) -> [UInt8] {
    var attrs = attribute(3, Array("enp3s0f0".utf8) + [0]) + attribute(21, host(UInt32(infos?.count ?? 0)))
    if let infos { attrs += attribute(22, infos.flatMap { $0 }, nested: true) }
    return message(16, flags: 0, ifinfomsg(index: 4) + attrs)
  }
}

@Suite struct LinkDumpParserTests {
  @Test func statsDumpGivesIndexAndCounters() throws {
    let part = Wire.message(92, Wire.ifStatsMsg(index: 1) + Wire.attribute(1, Wire.stats64(rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4)))
      + Wire.message(92, Wire.ifStatsMsg(index: 9) + Wire.attribute(0, []) /* IFLA_STATS_UNSPEC pad */
                     + Wire.attribute(1, Wire.stats64(rxPackets: 10, txPackets: 20, rxBytes: 30, txBytes: 40,
                                                      rxErrors: 5, txErrors: 6, rxDropped: 7, txDropped: 8, rxMissed: 100)))
      + Wire.done
    let parsed = try parseLinkDump(part)
    #expect(parsed.done)
    #expect(!parsed.interrupted)
    #expect(parsed.links.map(\.index) == [1, 9])
    #expect(parsed.links[0].counters == InterfaceCounters(rxBytes: 3, rxPackets: 1, txBytes: 4, txPackets: 2))
    // /proc/net/dev's receive "drop" is rx_dropped + rx_missed_errors; netlink must agree.
    #expect(parsed.links[1].counters == InterfaceCounters(rxBytes: 30, rxPackets: 10, rxErrors: 5, rxDrops: 107,
                                                          txBytes: 40, txPackets: 20, txErrors: 6, txDrops: 8))
  }

  @Test func linkDumpGivesNameAndStats64() throws {
    let part = Wire.message(16, Wire.ifinfomsg(index: 5) + Wire.attribute(3, Array("vnet7".utf8) + [0])
                            + Wire.attribute(4, Wire.host(UInt32(1500)))
                            + Wire.attribute(23, Wire.stats64(rxPackets: 1, txPackets: 1, rxBytes: 64, txBytes: 128)))
    let parsed = try parseLinkDump(part)
    #expect(!parsed.done, "no NLMSG_DONE in this datagram: more to come")
    #expect(parsed.links == [LinkCounters(index: 5, name: "vnet7",
                                          counters: InterfaceCounters(rxBytes: 64, rxPackets: 1, txBytes: 128, txPackets: 1))])
  }

  @Test func anInterruptedDumpIsFlagged() throws {
    let part = Wire.message(92, flags: 0x12, Wire.ifStatsMsg(index: 1)) + Wire.done
    #expect(try parseLinkDump(part).interrupted)
  }

  @Test func aKernelErrorCarriesItsErrno() {
    #expect(throws: NetlinkError.kernel(request: "dump", errno: EPERM)) { try parseLinkDump(Wire.error(EPERM)) }
  }

  @Test func malformedMessagesAreErrorsWithTheirOffset() {
    let stats = Wire.attribute(1, Wire.stats64(rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4))
    let good = Wire.message(92, Wire.ifStatsMsg(index: 1) + stats)
    var shortLength = good; shortLength[0] = 8
    var longLength = good; longLength[0] = UInt8(good.count + 4)
    var attributeTooShort = good; attributeTooShort[28] = 2
    var attributePastMessage = good; attributePastMessage[28] = 0xFF; attributePastMessage[29] = 0x0F
    let smallStats = Wire.message(92, Wire.ifStatsMsg(index: 1) + Wire.attribute(1, [UInt8](repeating: 0, count: 40)))
    let rows: [(rule: String, bytes: [UInt8], says: String)] = [
      ("fewer bytes than a header", Array(good[0..<10]), "less than a 16-byte nlmsghdr"),
      ("nlmsg_len shorter than the header", shortLength, "shorter than its own header"),
      ("nlmsg_len past the datagram", longLength, "runs past"),
      ("rta_len shorter than the rtattr", attributeTooShort, "shorter than its header"),
      ("rta_len past the message", attributePastMessage, "runs past its container"),
      ("rtnl_link_stats64 cut short", smallStats, "need at least 64"),
      ("RTM_NEWSTATS without its if_stats_msg", Wire.message(92, [0, 0, 0, 0]), "shorter than nlmsghdr + if_stats_msg"),
      ("NLMSG_ERROR without errno", Wire.message(2, []), "has no errno"),
    ]
    for row in rows {
      do {
        _ = try parseLinkDump(row.bytes)
        Issue.record("\(row.rule): parsed")
      } catch {
        guard case .malformed = error else { Issue.record("\(row.rule): \(error)"); continue }
        #expect("\(error)".contains(row.says), "\(row.rule): \(error)")
      }
    }
  }

  @Test func everyPrefixAndEveryFlippedByteEndsInAResultOrAnError() {
    let part = Wire.message(16, Wire.ifinfomsg(index: 5) + Wire.attribute(3, Array("vnet7".utf8) + [0])
                            + Wire.attribute(23, Wire.stats64(rxPackets: 1, txPackets: 1, rxBytes: 64, txBytes: 128)))
      + Wire.message(92, Wire.ifStatsMsg(index: 1) + Wire.attribute(1, Wire.stats64(rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4)))
      + Wire.done
    for cut in 0...part.count { _ = try? parseLinkDump(Array(part[0..<cut])) }
    for i in part.indices {
      for value: UInt8 in [0x00, 0x03, 0xFF] {
        var b = part; b[i] = value
        _ = try? parseLinkDump(b)
      }
    }
  }
}

@Suite struct VFStatisticsParserTests {
  let vf0: [(UInt16, UInt64)] = [(0, 10), (1, 20), (2, 1_000), (3, 2_000), (4, 1), (5, 2), (7, 3), (8, 4)]
  let vf1: [(UInt16, UInt64)] = [(0, 11), (1, 21), (2, 1_100), (3, 2_100)]

  @Test func eachVFInfoGivesTheCountersOfItsVFNumber() throws {
    let reply = Wire.vfReply([Wire.vfInfo(vf: 0, stats: vf0), Wire.vfInfo(vf: 1, stats: vf1, nested: true)])
    let map = try parseVFStatistics(reply)
    #expect(map.count == 2)
    #expect(map[0] == InterfaceCounters(rxBytes: 1_000, rxPackets: 10, rxDrops: 3, txBytes: 2_000, txPackets: 20, txDrops: 4))
    #expect(map[1] == InterfaceCounters(rxBytes: 1_100, rxPackets: 11, txBytes: 2_100, txPackets: 21),
            "a kernel without IFLA_VF_STATS_*_DROPPED leaves drops at 0")
  }

  @Test func aVFWithoutStatisticsIsLeftOutNotZero() throws {
    let reply = Wire.vfReply([Wire.vfInfo(vf: 0, stats: vf0), Wire.vfInfo(vf: 1, stats: nil)])
    let map = try parseVFStatistics(reply)
    #expect(map.keys.sorted() == [0], "VF 1's rate is unknown, so it has no entry")
  }

  @Test func aDeviceWithoutVFsGivesAnEmptyMap() throws {
    #expect(try parseVFStatistics(Wire.vfReply(nil)).isEmpty)
    #expect(try parseVFStatistics(Wire.vfReply([])).isEmpty)
  }

  @Test func aKernelErrorIsReportedWithItsErrno() {
    #expect(throws: NetlinkError.kernel(request: "RTM_GETLINK eth9", errno: ENODEV)) {
      try parseVFStatistics(Wire.error(ENODEV), pf: "eth9")
    }
  }

  @Test func malformedVFAttributesAreClearErrors() {
    let statsWithoutMAC = Wire.vfReply([Wire.vfInfo(vf: nil, stats: vf0)])
    let fourByteCounter = Wire.vfReply([Wire.attribute(1, Wire.attribute(1, Wire.host(UInt32(0)) + [UInt8](repeating: 0, count: 32))
                                                       + Wire.attribute(8, Wire.attribute(2, Wire.host(UInt32(5)))))])
    let shortMAC = Wire.vfReply([Wire.attribute(1, Wire.attribute(1, [0, 0]))])
    let twice = Wire.vfReply([Wire.vfInfo(vf: 3, stats: vf1), Wire.vfInfo(vf: 3, stats: vf1)])
    var listPastMessage = Wire.vfReply([Wire.vfInfo(vf: 0, stats: vf0)])
    // The IFLA_VFINFO_LIST header sits after nlmsghdr, ifinfomsg, IFLA_IFNAME
    // ("enp3s0f0\0": 4 + 9, aligned to 16) and IFLA_NUM_VF (8).
    let listAt = 16 + 16 + 16 + 8
    listPastMessage[listAt] = 0xF0; listPastMessage[listAt + 1] = 0x0F
    let rows: [(rule: String, bytes: [UInt8], says: String)] = [
      ("IFLA_VF_STATS without IFLA_VF_MAC cannot say which VF", statsWithoutMAC, "no IFLA_VF_MAC"),
      ("a VF counter must be a u64", fourByteCounter, "expected a u64"),
      ("IFLA_VF_MAC too short for the VF number", shortMAC, "need 4 for the VF number"),
      ("the same VF twice", twice, "VF 3 reported twice"),
      ("IFLA_VFINFO_LIST longer than its message", listPastMessage, "runs past its container"),
      ("a reply with no RTM_NEWLINK", Wire.done, "holds no RTM_NEWLINK"),
      ("RTM_NEWLINK without its ifinfomsg", Wire.message(16, [0, 0, 0, 0]), "shorter than nlmsghdr + ifinfomsg"),
    ]
    for row in rows {
      do {
        let map = try parseVFStatistics(row.bytes)
        Issue.record("\(row.rule): parsed \(map)")
      } catch {
        guard case .malformed = error else { Issue.record("\(row.rule): \(error)"); continue }
        #expect("\(error)".contains(row.says), "\(row.rule): \(error)")
      }
    }
  }

  @Test func everyTruncationAndEveryFlippedByteEndsInAResultOrAnError() {
    let reply = Wire.vfReply([Wire.vfInfo(vf: 0, stats: vf0), Wire.vfInfo(vf: 1, stats: vf1)])
    var outcomes = (parsed: 0, failed: 0)
    for cut in 0...reply.count {
      var b = Array(reply[0..<cut])
      // Also keep nlmsg_len consistent with the cut, so the inner attributes are what is truncated.
      if cut >= 4 { b.replaceSubrange(0..<4, with: Wire.host(UInt32(cut))) }
      if (try? parseVFStatistics(b)) != nil { outcomes.parsed += 1 } else { outcomes.failed += 1 }
    }
    for i in reply.indices {
      for value: UInt8 in [0x00, 0x01, 0x80, 0xFF] {
        var b = reply; b[i] = value
        _ = try? parseVFStatistics(b)
      }
    }
    #expect(outcomes.failed > 0)
    #expect(outcomes.parsed > 0)
  }
}
