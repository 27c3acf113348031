import VFShiftCore

/// JSON written straight into bytes, for the status file: at 1,000 VMs the
/// same text built with String interpolation cost ~15 M instructions a write,
/// more than the rest of ten cycles together (bench-agent under callgrind).
/// Escaping and number forms are `LogValue.json`'s, so both read back alike.
struct JSONOutput {
  private(set) var bytes: [UInt8] = []

  init(capacity: Int) { bytes.reserveCapacity(capacity) }

  /// Punctuation and keys, written as they are: the caller's literal is valid JSON.
  mutating func raw(_ s: StaticString) {
    s.withUTF8Buffer { bytes.append(contentsOf: $0) }
  }

  mutating func string(_ s: String) {
    bytes.append(UInt8(ascii: "\""))
    var s = s
    s.withUTF8 { utf8 in
      // Most names and values need nothing escaped: copy them whole.
      if !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
        bytes.append(contentsOf: utf8)
      } else {
        bytes.append(contentsOf: jsonEscape(String(decoding: utf8, as: UTF8.self)).utf8)
      }
    }
    bytes.append(UInt8(ascii: "\""))
  }

  mutating func int(_ n: Int) {
    if n < 0 { bytes.append(UInt8(ascii: "-")) }
    var m = n.magnitude
    let start = bytes.count
    repeat {
      bytes.append(UInt8(ascii: "0") + UInt8(m % 10))
      m /= 10
    } while m > 0
    bytes[start...].reverse()
  }

  mutating func bool(_ b: Bool) {
    if b { raw("true") } else { raw("false") }
  }

  /// Whole numbers without ".0", others in the shortest form that reads back
  /// the same (as JSONEncoder writes them). The caller leaves out NaN and
  /// infinities, which JSON cannot hold.
  mutating func number(_ d: Double) {
    if d == d.rounded() && abs(d) < 1e15 { int(Int(d)); return }
    bytes.append(contentsOf: d.description.utf8)
  }
}
