import Foundation
import Testing
import VFShiftCore
import VFShiftHost

// Hand-written bad inputs for /proc/net/dev and netlink, each with the exact
// error it must get; with VFSHIFT_BAD_INPUT_TABLE=<dir> set the same rows are
// written there as Markdown for docs/reliability.md (Benchmarks/fuzz/bad-input-table).

struct BadBytes: Sendable, CustomTestStringConvertible {
  var what: String
  var bytes: [UInt8]
  var error: String
  var testDescription: String { what }
}

private func writeTable(_ parser: String, header: String, _ rows: [(String, String, String)]) {
  guard let dir = ProcessInfo.processInfo.environment["VFSHIFT_BAD_INPUT_TABLE"] else { return }
  var out = "| bad input | \(header) | error |\n|---|---|---|\n"
  for (what, input, error) in rows { out += "| \(what) | \(code(input)) | \(code(error, limit: .max)) |\n" }
  try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  _ = FileManager.default.createFile(atPath: "\(dir)/\(parser).md", contents: Data(out.utf8))
}

private func code(_ s: String, limit: Int = 70) -> String {
  var shown = s.replacingOccurrences(of: "\n", with: "⏎").replacingOccurrences(of: "|", with: "\\|")
  if shown.count > limit { shown = String(shown.prefix(limit)) + "…" }
  return shown.isEmpty ? "(empty)" : "`\(shown)`"
}

private func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

// MARK: - /proc/net/dev

private let badInputGoodLine = procLine("eth0", (1, 1, 0, 0), (1, 1, 0, 0))

let badProcNetDev: [BadBytes] = [
  BadBytes(what: "empty file", bytes: [], error: "/proc/net/dev:1: header line 1 of 2 missing or unterminated"),
  BadBytes(what: "second header line missing", bytes: Array("Inter-|   Receive\n".utf8),
           error: "/proc/net/dev:2: header line 2 of 2 missing or unterminated"),
  BadBytes(what: "no ':' after the name", bytes: Array((procHeader + "  eth0 1 2 3\n").utf8),
           error: "/proc/net/dev:3: no ':' after the interface name"),
  BadBytes(what: "empty name", bytes: Array((procHeader + badInputGoodLine + "  : 1\n").utf8),
           error: "/proc/net/dev:4: empty interface name"),
  BadBytes(what: "16-byte name", bytes: Array((procHeader + procLine("abcdefghijklmnop", (1, 1, 0, 0), (1, 1, 0, 0))).utf8),
           error: "/proc/net/dev:3: interface name of 16 bytes, longer than 15 (IFNAMSIZ-1)"),
  BadBytes(what: "line cut short", bytes: Array((procHeader + "  eth0: 1 2 3\n").utf8),
           error: "/proc/net/dev:3: line ends where field 4 of 16 should be a number"),
  BadBytes(what: "file cut mid-line", bytes: Array((procHeader + "  eth0: 1 2").utf8),
           error: "/proc/net/dev:3: file ends where field 3 of 16 should be a number"),
  BadBytes(what: "17 fields", bytes: Array((procHeader + String(badInputGoodLine.dropLast()) + " 7\n").utf8),
           error: "/proc/net/dev:3: more than 16 fields"),
  BadBytes(what: "a letter in a counter", bytes: Array((procHeader + "  eth0: 1 2x\n").utf8),
           error: "/proc/net/dev:3: unexpected byte 0x78 where field 3 of 16 should be a number"),
  BadBytes(what: "negative counter", bytes: Array((procHeader + "  eth0: -1\n").utf8),
           error: "/proc/net/dev:3: unexpected byte 0x2d where field 1 of 16 should be a number"),
  BadBytes(what: "counter of 2^64", bytes: Array((procHeader + "  eth0:18446744073709551616 0\n").utf8),
           error: "/proc/net/dev:3: field 1 does not fit in 64 bits"),
  BadBytes(what: "same name twice", bytes: Array((procHeader + badInputGoodLine + badInputGoodLine).utf8),
           error: "/proc/net/dev:4: interface name repeated"),
  BadBytes(what: "CRLF line ends", bytes: Array((procHeader + badInputGoodLine).replacingOccurrences(of: "\n", with: "\r\n").utf8),
           error: "/proc/net/dev:3: more than 16 fields"),
]

func procNetDevError(_ bytes: [UInt8]) -> String {
  do { _ = try parseProcNetDev(bytes); return "accepted" } catch { return error.description }
}

@Test(arguments: badProcNetDev)
func badProcNetDevGetsItsExactError(_ row: BadBytes) {
  #expect(procNetDevError(row.bytes) == row.error, "\(row.what)")
}

@Test("the /proc/net/dev bad-input table")
func procNetDevBadInputTable() {
  let rows = badProcNetDev.map { ($0.what, String(decoding: $0.bytes, as: UTF8.self), procNetDevError($0.bytes)) }
  #expect(rows.allSatisfy { $0.2 != "accepted" })
  writeTable("procnetdev", header: "text", rows)
}

// MARK: - netlink

private let badInputStatsAttribute = Wire.attribute(1, Wire.stats64(rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4))
private let badInputStats = Wire.message(92, Wire.ifStatsMsg(index: 1) + badInputStatsAttribute)
private func patched(_ b: [UInt8], _ at: Int, _ bytes: [UInt8]) -> [UInt8] {
  var b = b; b.replaceSubrange(at..<at + bytes.count, with: bytes); return b
}
private let badVF0Stats: [(UInt16, UInt64)] = [(0, 10), (1, 20), (2, 30), (3, 40)]

/// Rows for `parseLinkDump` (RTM_GETSTATS / RTM_GETLINK dumps).
let badLinkDumps: [BadBytes] = [
  BadBytes(what: "fewer bytes than a header", bytes: Array(badInputStats[0..<10]),
           error: "netlink message malformed at byte 0: 10 bytes left, less than a 16-byte nlmsghdr"),
  BadBytes(what: "nlmsg_len below the header", bytes: patched(badInputStats, 0, [8]),
           error: "netlink message malformed at byte 0: nlmsg_len 8 shorter than its own header"),
  BadBytes(what: "nlmsg_len past the datagram", bytes: patched(badInputStats, 0, [UInt8(badInputStats.count + 4)]),
           error: "netlink message malformed at byte 0: nlmsg_len 236 runs past the 232 bytes received"),
  BadBytes(what: "second message cut short", bytes: badInputStats + Array(Wire.done[0..<12]),
           error: "netlink message malformed at byte 232: 12 bytes left, less than a 16-byte nlmsghdr"),
  BadBytes(what: "rta_len below the rtattr header", bytes: patched(badInputStats, 28, [2, 0]),
           error: "netlink message malformed at byte 28: attribute type 1: rta_len 2 shorter than its header"),
  BadBytes(what: "rta_len past the message", bytes: patched(badInputStats, 28, [0xFF, 0x0F]),
           error: "netlink message malformed at byte 28: attribute type 1: rta_len 4095 runs past its container (204 bytes left)"),
  BadBytes(what: "rtnl_link_stats64 cut short",
           bytes: Wire.message(92, Wire.ifStatsMsg(index: 1) + Wire.attribute(1, [UInt8](repeating: 0, count: 40))),
           error: "netlink message malformed at byte 32: rtnl_link_stats64 of 40 bytes, need at least 64"),
  BadBytes(what: "RTM_NEWSTATS without if_stats_msg", bytes: Wire.message(92, [0, 0, 0, 0]),
           error: "netlink message malformed at byte 0: RTM_NEWSTATS of 20 bytes, shorter than nlmsghdr + if_stats_msg"),
  BadBytes(what: "RTM_NEWLINK without ifinfomsg", bytes: Wire.message(16, [0, 0, 0, 0]),
           error: "netlink message malformed at byte 0: RTM_NEWLINK of 20 bytes, shorter than nlmsghdr + ifinfomsg"),
  BadBytes(what: "NLMSG_ERROR without errno", bytes: Wire.message(2, []),
           error: "netlink message malformed at byte 0: NLMSG_ERROR of 16 bytes has no errno"),
  BadBytes(what: "NLMSG_ERROR of Int32.min (found by fuzz-netlink)", bytes: Wire.message(2, Wire.host(Int32.min)),
           error: "netlink message malformed at byte 16: NLMSG_ERROR error -2147483648 is not a negated errno"),
  BadBytes(what: "kernel error", bytes: Wire.error(19),
           error: "netlink dump: kernel answered ENODEV (19)"),
]

/// Rows for `parseVFStatistics` (RTM_GETLINK with RTEXT_FILTER_VF).
let badVFReplies: [BadBytes] = [
  BadBytes(what: "no RTM_NEWLINK in the reply", bytes: Wire.done,
           error: "netlink message malformed at byte 0: reply for PF holds no RTM_NEWLINK message"),
  BadBytes(what: "IFLA_VF_STATS without IFLA_VF_MAC", bytes: Wire.vfReply([Wire.vfInfo(vf: nil, stats: badVF0Stats)]),
           error: "netlink message malformed at byte 68: IFLA_VF_INFO has IFLA_VF_STATS but no IFLA_VF_MAC to say which VF"),
  BadBytes(what: "IFLA_VF_MAC too short for the VF number", bytes: Wire.vfReply([Wire.attribute(1, Wire.attribute(1, [0, 0]))]),
           error: "netlink message malformed at byte 68: IFLA_VF_INFO/IFLA_VF_MAC of 2 bytes, need 4 for the VF number"),
  BadBytes(what: "a VF counter of 4 bytes",
           bytes: Wire.vfReply([Wire.attribute(1, Wire.attribute(1, Wire.host(UInt32(0)) + [UInt8](repeating: 0, count: 32))
                                               + Wire.attribute(8, Wire.attribute(2, Wire.host(UInt32(5)))))]),
           error: "netlink message malformed at byte 112: IFLA_VF_INFO/IFLA_VF_STATS/2 of 4 bytes, expected a u64 (8)"),
  BadBytes(what: "the same VF twice",
           bytes: Wire.vfReply([Wire.vfInfo(vf: 3, stats: badVF0Stats), Wire.vfInfo(vf: 3, stats: badVF0Stats)]),
           error: "netlink message malformed at byte 192: IFLA_VFINFO_LIST: VF 3 reported twice"),
  BadBytes(what: "kernel error", bytes: Wire.error(95),
           error: "netlink RTM_GETLINK PF: kernel answered EOPNOTSUPP (95)"),
]

func linkDumpError(_ bytes: [UInt8]) -> String {
  do { _ = try parseLinkDump(bytes); return "accepted" } catch { return error.description }
}

func vfStatisticsError(_ bytes: [UInt8]) -> String {
  do { _ = try parseVFStatistics(bytes); return "accepted" } catch { return error.description }
}

@Test(arguments: badLinkDumps)
func badLinkDumpGetsItsExactError(_ row: BadBytes) {
  #expect(linkDumpError(row.bytes) == row.error, "\(row.what)")
}

@Test(arguments: badVFReplies)
func badVFReplyGetsItsExactError(_ row: BadBytes) {
  #expect(vfStatisticsError(row.bytes) == row.error, "\(row.what)")
}

@Test("the netlink bad-input table")
func netlinkBadInputTable() {
  let rows = badLinkDumps.map { ("parseLinkDump: \($0.what)", hex($0.bytes), linkDumpError($0.bytes)) }
    + badVFReplies.map { ("parseVFStatistics: \($0.what)", hex($0.bytes), vfStatisticsError($0.bytes)) }
  #expect(rows.allSatisfy { $0.2 != "accepted" })
  writeTable("netlink", header: "bytes (hex)", rows)
}
