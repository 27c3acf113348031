import Foundation

/// One structured log line per decision and per swap step, as JSON on stderr
/// (journald keeps stderr of a unit), so operators can grep and ship them.
public struct EventLog: Sendable {
  public var write: @Sendable (String) -> Void

  public init(write: @escaping @Sendable (String) -> Void = { line in
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
  }) {
    self.write = write
  }

  public func emit(_ event: String, _ fields: [String: LogValue]) {
    var all = fields
    all["event"] = .string(event)
    all["ts"] = .string(ISO8601DateFormatter.logTimestamp.string(from: Date()))
    write(LogValue.object(all).json)
  }
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

func jsonEscape(_ s: String) -> String {
  // Most names and values need nothing escaped: hand them back as they are
  // (the status file escapes thousands of strings per write).
  if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) { return s }
  var out = ""
  for u in s.unicodeScalars {
    switch u {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\r": out += "\\r"
    case "\t": out += "\\t"
    default:
      if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
    }
  }
  return out
}

extension ISO8601DateFormatter {
  nonisolated(unsafe) static let logTimestamp: ISO8601DateFormatter = {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f
  }()
}
