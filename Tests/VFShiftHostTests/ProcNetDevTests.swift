import Foundation
import Testing
import VFShiftCore
@testable import VFShiftHost

/// Text as net/core/net-procfs.c writes it: `dev_seq_show` prints the two
/// header lines, `dev_seq_printf_stats` one line per interface with
/// "%6s:%8llu %7llu %4llu %4llu %4llu %5llu %10llu %9llu %8llu %7llu %4llu %4llu %4llu %5llu %7llu %10llu\n".
let procHeader = """
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed

"""

func procLine(_ name: String, _ rx: (UInt64, UInt64, UInt64, UInt64), _ tx: (UInt64, UInt64, UInt64, UInt64)) -> String {
  func r(_ v: Any, _ w: Int) -> String { let s = "\(v)"; return String(repeating: " ", count: max(0, w - s.count)) + s }
  return r(name, 6) + ":" + r(rx.0, 8) + " " + r(rx.1, 7) + " " + r(rx.2, 4) + " " + r(rx.3, 4) + " " + r(0, 4) + " " + r(0, 5)
    + " " + r(0, 10) + " " + r(0, 9) + " " + r(tx.0, 8) + " " + r(tx.1, 7) + " " + r(tx.2, 4) + " " + r(tx.3, 4)
    + " " + r(0, 4) + " " + r(0, 5) + " " + r(0, 7) + " " + r(0, 10) + "\n"
}

@Suite struct ProcNetDevParserTests {
  @Test func parsesEveryInterfaceWithTheEightCountersKept() throws {
    let text = procHeader
      + "    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n"
      + procLine("vnet12", (1_000, 10, 1, 2), (2_000, 20, 3, 4))
    let s = try parseProcNetDev(Array(text.utf8))
    #expect(s.count == 2)
    #expect(s["lo"] == InterfaceCounters(rxBytes: 3193, rxPackets: 29, txBytes: 3193, txPackets: 29))
    #expect(s["vnet12"] == InterfaceCounters(rxBytes: 1_000, rxPackets: 10, rxErrors: 1, rxDrops: 2,
                                             txBytes: 2_000, txPackets: 20, txErrors: 3, txDrops: 4))
    #expect(s.names == ["lo", "vnet12"], "the kernel's order is kept")
  }

  @Test func aWideCounterGluedToTheNameIsSplitAtTheColon() throws {
    // %6s:%8llu leaves no blank once the name has 6+ bytes and the count 8+ digits.
    let text = procHeader + procLine("macvtap3", (123_456_789_012, 5, 0, 0), (9, 1, 0, 0))
    #expect(text.contains("macvtap3:123456789012"))
    let s = try parseProcNetDev(Array(text.utf8))
    #expect(s["macvtap3"]?.rxBytes == 123_456_789_012)
    #expect(s["macvtap3"]?.txBytes == 9)
  }

  @Test func fifteenByteNamesAndCountersNearTwoToTheSixtyFour() throws {
    let name = "abcdefghijklmno"  // IFNAMSIZ - 1
    let text = procHeader + procLine(name, (UInt64.max, 1, 0, 0), (UInt64.max - 1, 2, 0, 0))
    let s = try parseProcNetDev(Array(text.utf8))
    #expect(s[name]?.rxBytes == UInt64.max)
    #expect(s[name]?.txBytes == UInt64.max - 1)
  }

  @Test func noInterfacesIsAnEmptySnapshot() throws {
    #expect(try parseProcNetDev(Array(procHeader.utf8)).isEmpty)
  }

  @Test func malformedInputNamesTheLine() {
    let good = procLine("eth0", (1, 1, 0, 0), (1, 1, 0, 0))
    let rows: [(rule: String, text: String, line: Int, reason: String)] = [
      ("a file without the second header line is rejected at line 2", "Inter-|   Receive\n", 2, "header line 2"),
      ("a line without ':' is rejected", procHeader + good + "eth1 1 2 3\n", 4, "no ':'"),
      ("a line cut short is rejected at the field that is missing", procHeader + "  eth0: 1 2 3\n", 3, "field 4 of 16"),
      ("a 17th field is rejected", procHeader + String(good.dropLast()) + " 7\n", 3, "more than 16"),
      ("a count beyond 64 bits is rejected", procHeader + procLine("eth0", (1, 1, 0, 0), (1, 1, 0, 0))
        .replacingOccurrences(of: "eth0:       1", with: "eth0:18446744073709551616"), 3, "64 bits"),
      ("a name longer than IFNAMSIZ-1 is rejected", procHeader + procLine("abcdefghijklmnop", (1, 1, 0, 0), (1, 1, 0, 0)), 3, "longer than 15"),
      ("a repeated name is rejected at its second line", procHeader + good + good, 4, "repeated"),
      ("letters where a number should be are rejected", procHeader + "  eth0: 1 2 x\n", 3, "unexpected byte 0x78"),
      ("an empty name is rejected", procHeader + "  : 1\n", 3, "empty interface name"),
    ]
    for row in rows {
      #expect(throws: ProcNetDevError.self, "\(row.rule)") { try parseProcNetDev(Array(row.text.utf8)) }
      do {
        _ = try parseProcNetDev(Array(row.text.utf8))
      } catch {
        guard case .malformed(_, let line, let reason) = error else { Issue.record("\(row.rule): \(error)"); continue }
        #expect(line == row.line, "\(row.rule): \(error)")
        #expect(reason.contains(row.reason), "\(row.rule): \(error)")
      }
    }
  }

  @Test func anyPrefixOfAValidFileParsesOrFailsWithoutTrapping() {
    let text = Array((procHeader + procLine("vnet0", (10, 1, 0, 0), (20, 2, 0, 0)) + procLine("vnet1", (1, 1, 0, 0), (2, 2, 0, 0))).utf8)
    var parsed = 0
    for cut in 0...text.count {
      if (try? parseProcNetDev(Array(text[0..<cut]))) != nil { parsed += 1 }
    }
    // A prefix ending right after a full line (or after its last digit) is valid.
    #expect(parsed >= 2)
  }
}

@Suite struct ProcNetDevReaderTests {
  func temporaryFile() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("procnetdev-\(UUID().uuidString)").path
  }

  @Test func interfacesAppearAndVanishBetweenCycles() throws {
    let path = temporaryFile()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var reader = ProcNetDevReader(path: path)

    try (procHeader + procLine("vnet0", (1, 1, 0, 0), (2, 2, 0, 0)) + procLine("vnet1", (3, 3, 0, 0), (4, 4, 0, 0)))
      .write(toFile: path, atomically: true, encoding: .utf8)
    let first = try reader.read()
    #expect(first.names == ["vnet0", "vnet1"])

    // Same interfaces, new counters: the name table is the one of last cycle.
    try (procHeader + procLine("vnet0", (5, 5, 0, 0), (6, 6, 0, 0)) + procLine("vnet1", (7, 7, 0, 0), (8, 8, 0, 0)))
      .write(toFile: path, atomically: true, encoding: .utf8)
    let second = try reader.read()
    #expect(second["vnet1"]?.txBytes == 8)
    #expect(second.interfaces == first.interfaces)

    // vnet0 went away, vnet2 came: the snapshot follows, no stale entry.
    try (procHeader + procLine("vnet1", (9, 9, 0, 0), (10, 10, 0, 0)) + procLine("vnet2", (11, 11, 0, 0), (12, 12, 0, 0)))
      .write(toFile: path, atomically: true, encoding: .utf8)
    let third = try reader.read()
    #expect(third.names == ["vnet1", "vnet2"])
    #expect(third["vnet0"] == nil)
    #expect(third["vnet2"]?.rxBytes == 11)

    // Same count, one name changed in place (a rename): caught, not reused.
    try (procHeader + procLine("vnet1", (9, 9, 0, 0), (10, 10, 0, 0)) + procLine("vnet3", (11, 11, 0, 0), (12, 12, 0, 0)))
      .write(toFile: path, atomically: true, encoding: .utf8)
    #expect(try reader.read().names == ["vnet1", "vnet3"])
  }

  @Test func aMissingFileIsAnErrorThatNamesItAndItsErrno() {
    var reader = ProcNetDevReader(path: "/nonexistent/proc/net/dev")
    do {
      _ = try reader.read()
      Issue.record("reading a missing file succeeded")
    } catch {
      #expect("\(error)".contains("/nonexistent/proc/net/dev"))
      #expect("\(error)".contains("ENOENT"))
    }
  }

  @Test func theRealFileParses() throws {
    var reader = ProcNetDevReader()
    let s = try reader.read()
    #expect(s["lo"] != nil, "every namespace has lo")
  }

  @Test func aFileLargerThanTheFirstBufferIsReadWhole() throws {
    let path = temporaryFile()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let lines = (0..<2_000).map { procLine("vnet\($0)", (UInt64($0), 1, 0, 0), (2, 2, 0, 0)) }.joined()
    try (procHeader + lines).write(toFile: path, atomically: true, encoding: .utf8)
    var reader = ProcNetDevReader(path: path)
    let s = try reader.read()
    #expect(s.count == 2_000)
    #expect(s["vnet1999"]?.rxBytes == 1999)
  }
}

/// The fallback policy of the agent's reader. Netlink is made to fail on
/// purpose here (the kernel will not fail on request); the fallback it lands
/// on is the real /proc/net/dev.
@Suite struct HostCounterReaderFallbackTests {
  struct RefusingNetlink: CounterReader {
    func read() throws -> CounterSnapshot {
      throw NetlinkError.system(SystemCallError(call: "recv", subject: "netlink", errno: ENOBUFS))
    }
  }

  @Test func netlinkThatCannotOpenFallsBackToProcAndSaysWhy() throws {
    let reader = HostCounterReader(preferred: .netlink, procPath: "/proc/net/dev", openNetlink: {
      throw NetlinkError.system(SystemCallError(call: "socket", subject: "AF_NETLINK, NETLINK_ROUTE", errno: EPROTONOSUPPORT))
    })
    #expect(reader.source == .procNetDev)
    #expect(reader.fallbackReason?.contains("EPROTONOSUPPORT") == true)
    #expect(try reader.read()["lo"] != nil)
  }

  @Test func netlinkThatFailsDuringAReadFallsBackForGood() throws {
    let reader = HostCounterReader(preferred: .netlink, procPath: "/proc/net/dev", openNetlink: { RefusingNetlink() })
    #expect(reader.source == .netlink)
    let snapshot = try reader.read()
    #expect(snapshot["lo"] != nil, "the cycle still has counters, from /proc/net/dev")
    #expect(reader.source == .procNetDev)
    #expect(reader.fallbackReason?.contains("recv(netlink) failed: ENOBUFS") == true)
  }

  @Test func procCanBeChosenOutright() {
    let reader = HostCounterReader(preferred: .procNetDev)
    #expect(reader.source == .procNetDev)
    #expect(reader.fallbackReason == nil)
  }
}
