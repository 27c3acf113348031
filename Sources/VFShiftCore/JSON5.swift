/// A JSON value that remembers the line it started on, so that every error in a
/// policy file can name its line as well as its field path. Foundation's
/// JSONDecoder can read JSON5 but its errors name no line, and it does not
/// reject unknown fields; this small reader does both.
public indirect enum JSONValue: Sendable, Equatable {
  case object([(key: String, value: JSONNode)])
  case array([JSONNode])
  case string(String)
  case number(Double)
  case bool(Bool)
  case null

  public static func == (a: JSONValue, b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.object(x), .object(y)):
      x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    case let (.array(x), .array(y)): x == y
    case let (.string(x), .string(y)): x == y
    case let (.number(x), .number(y)): x == y
    case let (.bool(x), .bool(y)): x == y
    case (.null, .null): true
    default: false
    }
  }

  public var typeName: String {
    switch self {
    case .object: "an object"
    case .array: "an array"
    case .string: "a string"
    case .number: "a number"
    case .bool: "a boolean"
    case .null: "null"
    }
  }
}

public struct JSONNode: Sendable, Equatable {
  public var value: JSONValue
  public var line: Int
}

public struct JSONSyntaxError: Error, Equatable, Sendable {
  public var line: Int
  public var column: Int
  public var reason: String
}

/// Reads the JSON5 subset operators write by hand: `//` and `/* */` comments,
/// trailing commas, unquoted keys, single-quoted strings, a leading `+`.
public func parseJSON5(_ text: String) throws(JSONSyntaxError) -> JSONNode {
  var reader = JSON5Reader(Array(text.utf8))
  // A byte-order mark (Windows editors write one) is no part of the value.
  if reader.bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.index = 3; reader.lineStart = 3 }
  let node = try reader.value(depth: 0)
  try reader.skipTrivia()
  guard reader.atEnd else { throw reader.error("unexpected text after the top-level value") }
  return node
}

private struct JSON5Reader {
  let bytes: [UInt8]
  var index = 0
  var line = 1
  var lineStart = 0
  // Deep nesting is never a real policy; refusing it keeps a hostile file from
  // exhausting the stack.
  static let maxDepth = 64

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  var atEnd: Bool { index >= bytes.count }

  func error(_ reason: String) -> JSONSyntaxError {
    JSONSyntaxError(line: line, column: index - lineStart + 1, reason: reason)
  }

  /// LF, CR LF and a CR alone each end one line, so every error names the
  /// line an editor shows.
  mutating func advance() {
    if isLineEnd(index) { line += 1; lineStart = index + 1 }
    index += 1
  }

  /// The last byte of a line end at `i`: LF, or a CR not followed by LF.
  func isLineEnd(_ i: Int) -> Bool {
    bytes[i] == 0x0A || (bytes[i] == 0x0D && (i + 1 == bytes.count || bytes[i + 1] != 0x0A))
  }

  mutating func skipTrivia() throws(JSONSyntaxError) {
    while !atEnd {
      let c = bytes[index]
      if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { advance(); continue }
      if c == UInt8(ascii: "/"), index + 1 < bytes.count {
        if bytes[index + 1] == UInt8(ascii: "/") {
          while !atEnd && bytes[index] != 0x0A && bytes[index] != 0x0D { advance() }
          continue
        }
        if bytes[index + 1] == UInt8(ascii: "*") {
          let startLine = line
          advance(); advance()
          while true {
            guard index + 1 < bytes.count else {
              throw JSONSyntaxError(line: startLine, column: 1, reason: "a /* comment is never closed")
            }
            if bytes[index] == UInt8(ascii: "*") && bytes[index + 1] == UInt8(ascii: "/") { advance(); advance(); break }
            advance()
          }
          continue
        }
      }
      return
    }
  }

  mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONNode {
    try skipTrivia()
    guard !atEnd else { throw error("the file ends where a value should be (truncated?)") }
    guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) levels") }
    let startLine = line
    let c = bytes[index]
    switch c {
    case UInt8(ascii: "{"): return JSONNode(value: try object(depth: depth), line: startLine)
    case UInt8(ascii: "["): return JSONNode(value: try array(depth: depth), line: startLine)
    case UInt8(ascii: "\""), UInt8(ascii: "'"): return JSONNode(value: .string(try string()), line: startLine)
    case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "0")...UInt8(ascii: "9"):
      return JSONNode(value: .number(try number()), line: startLine)
    default:
      let word = identifier()
      switch word {
      case "true": return JSONNode(value: .bool(true), line: startLine)
      case "false": return JSONNode(value: .bool(false), line: startLine)
      case "null": return JSONNode(value: .null, line: startLine)
      case "": throw error("unexpected character '\(Character(Unicode.Scalar(c)))'")
      default: throw error("unexpected word '\(word)' (strings need quotes)")
      }
    }
  }

  mutating func identifier() -> String {
    let start = index
    while !atEnd {
      let c = bytes[index]
      let isWord = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
        || c == UInt8(ascii: "_") || c == UInt8(ascii: "$")
      guard isWord else { break }
      advance()
    }
    return String(decoding: bytes[start..<index], as: UTF8.self)
  }

  mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
    advance()
    var members: [(key: String, value: JSONNode)] = []
    while true {
      try skipTrivia()
      guard !atEnd else { throw error("the file ends inside an object (truncated?)") }
      if bytes[index] == UInt8(ascii: "}") { advance(); return .object(members) }
      let key: String
      if bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
        key = try string()
      } else {
        key = identifier()
        guard !key.isEmpty else { throw error("expected a key or '}'") }
      }
      try skipTrivia()
      guard !atEnd, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after key '\(key)'") }
      advance()
      if members.contains(where: { $0.key == key }) { throw error("key '\(key)' appears twice in one object") }
      members.append((key, try value(depth: depth + 1)))
      try skipTrivia()
      guard !atEnd else { throw error("the file ends inside an object (truncated?)") }
      if bytes[index] == UInt8(ascii: ",") { advance(); continue }
      if bytes[index] == UInt8(ascii: "}") { advance(); return .object(members) }
      throw error("expected ',' or '}' after the value of '\(key)'")
    }
  }

  mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
    advance()
    var elements: [JSONNode] = []
    while true {
      try skipTrivia()
      guard !atEnd else { throw error("the file ends inside an array (truncated?)") }
      if bytes[index] == UInt8(ascii: "]") { advance(); return .array(elements) }
      elements.append(try value(depth: depth + 1))
      try skipTrivia()
      guard !atEnd else { throw error("the file ends inside an array (truncated?)") }
      if bytes[index] == UInt8(ascii: ",") { advance(); continue }
      if bytes[index] == UInt8(ascii: "]") { advance(); return .array(elements) }
      throw error("expected ',' or ']' in an array")
    }
  }

  mutating func string() throws(JSONSyntaxError) -> String {
    let quote = bytes[index]
    advance()
    var out: [UInt8] = []
    while true {
      guard !atEnd else { throw error("the file ends inside a string (truncated?)") }
      let c = bytes[index]
      if c == quote { advance(); break }
      if c == 0x0A || c == 0x0D { throw error("a string runs past the end of its line") }
      if c == UInt8(ascii: "\\") {
        advance()
        guard !atEnd else { throw error("the file ends inside a string (truncated?)") }
        let e = bytes[index]
        advance()
        switch e {
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "u"):
          guard index + 4 <= bytes.count,
                let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16),
                let scalar = Unicode.Scalar(code) else { throw error("bad \\u escape") }
          for _ in 0..<4 { advance() }
          out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default: out.append(e)
        }
        continue
      }
      out.append(c)
      advance()
    }
    guard let s = String(validating: out, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
    return s
  }

  mutating func number() throws(JSONSyntaxError) -> Double {
    let start = index
    while !atEnd {
      let c = bytes[index]
      let isNumberByte = (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e")
        || c == UInt8(ascii: "E") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: "_")
      guard isNumberByte else { break }
      advance()
    }
    // Underscores as digit separators (1_000_000) read well in thresholds.
    var text = String(decoding: bytes[start..<index], as: UTF8.self)
    text.removeAll { $0 == "_" }
    if text.hasPrefix("+") { text.removeFirst() }
    guard let d = Double(text), d.isFinite else { throw error("'\(text)' is not a number") }
    return d
  }
}
