/// Lines of a text file as the tools people use write them: the one place
/// the line-oriented parsers (the trace format, GWA-T-12) learn where a line
/// ends. Swift compares Characters, and "\r\n" is one Character, so splitting
/// a String on "\n" leaves a CR LF file as a single line; this splits the
/// UTF-8 bytes instead. What each format accepts is in docs/trace-format.md.
public enum LineEnds: Sendable {
  /// LF, CR LF and a CR alone all end a line (spreadsheet exports: Excel for
  /// Mac writes CR alone).
  case anyConvention
  /// LF and CR LF end a line; a CR alone is refused, naming its line (no tool
  /// writes the trace format that way, and inside a line it would be read as
  /// a field separator).
  case lfOrCRLF
}

public struct TextLine {
  public var number: Int
  public var text: Substring
}

/// Splits `text` into lines. A leading UTF-8 byte-order mark is dropped (it is
/// no character of the first line); one later on, where a second file was
/// joined on, is refused with its line. A missing final line end changes
/// nothing; the empty piece after a final line end is not a line.
public func textLines(_ text: String, file: String, ends: LineEnds) throws(TraceError) -> [TextLine] {
  var out: [TextLine] = []
  let u = text.utf8
  var i = u.startIndex
  if text.unicodeScalars.first == "\u{FEFF}" { i = u.index(i, offsetBy: 3) }
  var start = i
  var number = 1
  while i < u.endIndex {
    let b = u[i]
    if b == 0x0A || b == 0x0D {
      out.append(TextLine(number: number, text: text[start..<i]))
      var next = u.index(after: i)
      if b == 0x0D {
        if next < u.endIndex && u[next] == 0x0A {
          next = u.index(after: next)
        } else if ends == .lfOrCRLF {
          throw TraceError(file: file, line: number, reason: "CR line end without LF (classic Mac OS line ends): "
            + "save the file with LF or CR LF line ends")
        }
      }
      number += 1
      i = next
      start = i
      continue
    }
    // U+FEFF is EF BB BF in UTF-8.
    if b == 0xEF, u.index(i, offsetBy: 2, limitedBy: u.endIndex).map({ $0 < u.endIndex }) == true,
       u[u.index(i, offsetBy: 1)] == 0xBB, u[u.index(i, offsetBy: 2)] == 0xBF {
      throw TraceError(file: file, line: number, reason: "byte-order mark (U+FEFF) inside the file, not at its start "
        + "(two files joined?)")
    }
    i = u.index(after: i)
  }
  if start < u.endIndex { out.append(TextLine(number: number, text: text[start..<u.endIndex])) }
  return out
}

/// Numbers in messages as an operator wrote them: 10000000, not 1e+07.
func fmt(_ d: Double) -> String {
  if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
  return String(d)
}

/// Levenshtein distance, for "did you mean" hints on misspelt fields.
func editDistance(_ a: String, _ b: String) -> Int {
  let x = Array(a.lowercased().utf8), y = Array(b.lowercased().utf8)
  var row = Array(0...y.count)
  for i in 1...max(1, x.count) where !x.isEmpty {
    var previous = row[0]
    row[0] = i
    for j in 1...max(1, y.count) where !y.isEmpty {
      let current = row[j]
      row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (x[i - 1] == y[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return x.isEmpty ? y.count : row[y.count]
}
