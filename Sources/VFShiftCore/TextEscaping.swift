// Text escaped for the formats vfshift writes by hand, without an encoder.

/// A string's JSON form without the quotes (RFC 8259 §7), for the agent's log,
/// status and `vfshift doctor --json`.
public func jsonEscape(_ s: String) -> String {
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
      if u.value < 0x20 { out += "\\u00" + hexDigits(UInt8(u.value)) } else { out.unicodeScalars.append(u) }
    }
  }
  return out
}

private func hexDigits(_ b: UInt8) -> String {
  let digits = Array("0123456789abcdef".utf8)
  return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 0xf)]], as: UTF8.self)
}

/// XML (and HTML) text and attribute escaping: libvirt metadata elements, the what-if report.
public func xmlEscape(_ s: String) -> String {
  var out = ""
  out.reserveCapacity(s.utf8.count)
  for c in s {
    switch c {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&apos;"
    default: out.append(c)
    }
  }
  return out
}
