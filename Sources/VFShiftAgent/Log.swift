import Foundation
import VFShiftCore

/// One structured log line per decision and per swap step, as JSON on stderr
/// (journald keeps stderr of a unit), so operators can grep and ship them.
public struct EventLog: Sendable {
  public var write: @Sendable (String) -> Void

  public init(write: @escaping @Sendable (String) -> Void = { line in writeLine(line, to: STDERR_FILENO) }) {
    self.write = write
  }

  public func emit(_ event: String, _ fields: [String: LogValue]) {
    var all = fields
    all["event"] = .string(event)
    all["ts"] = .string(logTimestamp())
    write(LogValue.object(all).json)
  }
}

/// One line in one write(2) (so lines of two threads never interleave), without Foundation.
@usableFromInline func writeLine(_ line: String, to fd: Int32) {
  var bytes = Array(line.utf8)
  bytes.append(UInt8(ascii: "\n"))
  _ = writeAll(fd, bytes)
}

public enum LogValue: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
  case string(String)
  case number(Double)
  case bool(Bool)
  case null
  case object([String: LogValue])
  case array([LogValue])

  public init(stringLiteral value: String) { self = .string(value) }
  public init(floatLiteral value: Double) { self = .number(value) }
  public init(integerLiteral value: Int) { self = .number(Double(value)) }

  public static func optional(_ d: Double?) -> LogValue { d.map { .number($0) } ?? .null }

  /// Keys sorted, so lines diff and test cleanly.
  public var json: String {
    switch self {
    case .string(let s): return "\"" + jsonEscape(s) + "\""
    case .number(let d):
      if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
      // Full precision: the engine's clock in a log line must compare equal
      // to the same instant in a recorded trace.
      return d.isFinite ? "\(d)" : "null"
    case .bool(let b): return b ? "true" : "false"
    case .null: return "null"
    case .array(let a): return "[" + a.map(\.json).joined(separator: ",") + "]"
    case .object(let o):
      return "{" + o.keys.sorted().map { "\"\(jsonEscape($0))\":\(o[$0]!.json)" }.joined(separator: ",") + "}"
    }
  }
}

/// Now as ISO 8601 in UTC with milliseconds, as ISO8601DateFormatter writes
/// it with `.withInternetDateTime, .withFractionalSeconds` (rounded to the
/// millisecond): "2026-11-25T07:55:22.124Z". By hand, because the formatter
/// loads ICU's calendar data on first use, ~4 MB of the agent's resident
/// memory for one string per log line (bench-agent).
func logTimestamp() -> String {
  let t = wallClockUTC()
  var out: [UInt8] = []
  out.reserveCapacity(24)
  func digits(_ n: Int32, _ width: Int) {
    var n = n, d = [UInt8](repeating: UInt8(ascii: "0"), count: width)
    for i in stride(from: width - 1, through: 0, by: -1) { d[i] += UInt8(n % 10); n /= 10 }
    out += d
  }
  digits(t.year, 4); out.append(UInt8(ascii: "-")); digits(t.month, 2); out.append(UInt8(ascii: "-"))
  digits(t.day, 2); out.append(UInt8(ascii: "T")); digits(t.hour, 2); out.append(UInt8(ascii: ":"))
  digits(t.minute, 2); out.append(UInt8(ascii: ":")); digits(t.second, 2); out.append(UInt8(ascii: "."))
  digits(t.millisecond, 3); out.append(UInt8(ascii: "Z"))
  return String(decoding: out, as: UTF8.self)
}
