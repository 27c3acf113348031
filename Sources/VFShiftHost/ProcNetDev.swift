import VFShiftCore

/// Why /proc/net/dev could not be read or understood. Line numbers count from 1
/// as an editor shows the file.
public enum ProcNetDevError: Error, Sendable, Equatable, CustomStringConvertible {
  case unreadable(SystemCallError)
  case malformed(path: String, line: Int, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let e): "/proc/net/dev: \(e)"
    case .malformed(let path, let line, let reason): "\(path):\(line): \(reason)"
    }
  }
}

/// Parses the text of /proc/net/dev (format of net/core/net-procfs.c,
/// `dev_seq_printf_stats`): two header lines, then one line per interface,
/// `%6s:` name right-aligned and glued to the first number once the number is
/// wide, then 8 receive and 8 transmit fields. The reader keeps only bytes,
/// packets, errs and drop of each direction.
///
/// Pure and total: any input gives a snapshot or a `.malformed` error naming
/// the line; it never traps. Public so a fuzz target can call it.
public func parseProcNetDev(_ bytes: [UInt8], path: String = "/proc/net/dev") throws(ProcNetDevError) -> CounterSnapshot {
  var parser = ProcNetDevParser()
  return try withByteView(bytes) { view throws(ProcNetDevError) in try parser.parse(view, path: path) }
}

/// Parser state kept between cycles: last cycle's names (as packed keys and as
/// the shared `InterfaceNames`) so that an unchanged interface set costs no
/// String and no hashing.
struct ProcNetDevParser {
  private var lastKeys: [NameKey] = []
  private var lastNames: InterfaceNames? = nil
  private var keys: [NameKey] = []
  private var nameRanges: [Range<Int>] = []

  /// Fields per line after the name: 8 receive, 8 transmit.
  private static let fieldCount = 16

  mutating func parse(_ bytes: ByteView, path: String) throws(ProcNetDevError) -> CounterSnapshot {
    let n = bytes.count
    var counters: [InterfaceCounters] = []
    counters.reserveCapacity(lastKeys.count)
    keys.removeAll(keepingCapacity: true)
    nameRanges.removeAll(keepingCapacity: true)

    var i = 0
    var line = 1
    // Two header lines; the kernel always writes them, even with no interfaces.
    for header in 1...2 {
      while i < n && bytes[i] != 0x0A { i += 1 }
      guard i < n else {
        throw .malformed(path: path, line: header, reason: "header line \(header) of 2 missing or unterminated")
      }
      i += 1
      line += 1
    }

    var fields = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    while i < n {
      // Name: leading blanks, then bytes up to ':'.
      while i < n && bytes[i] == 0x20 { i += 1 }
      let nameStart = i
      while i < n && bytes[i] != 0x3A && bytes[i] != 0x0A { i += 1 }
      guard i < n && bytes[i] == 0x3A else {
        throw .malformed(path: path, line: line, reason: "no ':' after the interface name")
      }
      let nameLength = i - nameStart
      guard nameLength > 0 else { throw .malformed(path: path, line: line, reason: "empty interface name") }
      // IFNAMSIZ is 16 with the NUL, so a kernel name has at most 15 bytes.
      guard nameLength <= 15 else {
        throw .malformed(path: path, line: line, reason: "interface name of \(nameLength) bytes, longer than 15 (IFNAMSIZ-1)")
      }
      i += 1  // ':'

      var field = 0
      while field < Self.fieldCount {
        while i < n && bytes[i] == 0x20 { i += 1 }
        guard i < n && bytes[i] &- 0x30 < 10 else {
          let what = i < n && bytes[i] == 0x0A ? "line ends" : i < n ? "unexpected byte 0x\(String(bytes[i], radix: 16))" : "file ends"
          throw .malformed(path: path, line: line, reason: "\(what) where field \(field + 1) of \(Self.fieldCount) should be a number")
        }
        var value: UInt64 = 0
        repeat {
          let (m, o1) = value.multipliedReportingOverflow(by: 10)
          let (s, o2) = m.addingReportingOverflow(UInt64(bytes[i] &- 0x30))
          guard !o1 && !o2 else {
            throw .malformed(path: path, line: line, reason: "field \(field + 1) does not fit in 64 bits")
          }
          value = s
          i += 1
        } while i < n && bytes[i] &- 0x30 < 10
        switch field {
        case 0: fields.0 = value    // rx bytes
        case 1: fields.1 = value    // rx packets
        case 2: fields.2 = value    // rx errs
        case 3: fields.3 = value    // rx drop
        case 8: fields.4 = value    // tx bytes
        case 9: fields.5 = value    // tx packets
        case 10: fields.6 = value   // tx errs
        case 11: fields.7 = value   // tx drop
        default: break
        }
        field += 1
      }
      while i < n && bytes[i] == 0x20 { i += 1 }
      if i < n {
        guard bytes[i] == 0x0A else {
          throw .malformed(path: path, line: line, reason: "more than \(Self.fieldCount) fields")
        }
        i += 1
      }
      keys.append(bytes.nameKey(nameStart, length: nameLength))
      nameRanges.append(nameStart..<(nameStart + nameLength))
      counters.append(InterfaceCounters(rxBytes: fields.0, rxPackets: fields.1, rxErrors: fields.2, rxDrops: fields.3,
                                        txBytes: fields.4, txPackets: fields.5, txErrors: fields.6, txDrops: fields.7))
      line += 1
    }

    let names: InterfaceNames
    if let last = lastNames, keys == lastKeys {
      names = last
    } else {
      guard let fresh = InterfaceNames(nameRanges.map { bytes.string($0.lowerBound, length: $0.count) }) else {
        let seen = duplicateLine(keys)
        throw .malformed(path: path, line: seen + 2 + 1, reason: "interface name repeated")
      }
      names = fresh
      lastNames = fresh
      swap(&lastKeys, &keys)
    }
    return CounterSnapshot(interfaces: names, counters: counters)
  }

  private func duplicateLine(_ keys: [NameKey]) -> Int {
    var seen = Set<NameKey>()
    for (i, k) in keys.enumerated() where !seen.insert(k).inserted { return i }
    return keys.count
  }
}

/// Reads every interface's counters from /proc/net/dev: one open + read to EOF
/// + close per cycle into a buffer kept between cycles, parsed in place.
///
/// Reads the network namespace of whoever opens `path`: "/proc/net/dev" is the
/// process's (its main thread's) namespace; a thread that entered another
/// namespace with setns(2) must use "/proc/thread-self/net/dev".
public struct ProcNetDevReader: CounterReader {
  public let path: String
  private var buffer: [UInt8]
  private var parser = ProcNetDevParser()

  public init(path: String = "/proc/net/dev") {
    self.path = path
    self.buffer = [UInt8](repeating: 0, count: 64 << 10)
  }

  public mutating func read() throws(ProcNetDevError) -> CounterSnapshot {
    let count: Int
    do { count = try readWholeFile(path, into: &buffer) } catch { throw .unreadable(error) }
    let path = self.path
    return try withByteView(buffer, count: count) { view throws(ProcNetDevError) in
      try parser.parse(view, path: path)
    }
  }
}
