import Foundation
import Testing
import VFShiftCore
import VFShiftFiles

// A metamorphic test of the three input formats: the bundled inputs (the
// policies in policies/, the traces in policies/traces/, the GWA-T-12
// extract in GWAExtract.swift) are put through what people's tools do to
// files, and each result must read exactly as the original (the same trace,
// the same replay; the same policy) or be refused with an error that names
// the file (and the line, where the change has one). Which it is, per format,
// is fixed below and documented in docs/trace-format.md and docs/policy.md;
// with VFSHIFT_BAD_INPUT_TABLE=<dir> the table goes there as metamorphic.md
// (Benchmarks/fuzz/bad-input-table puts it into docs/reliability.md).

enum InputFormat: String, CaseIterable, Sendable {
  case gwa = "GWA-T-12 CSV"
  case trace = "vfshift trace"
  case policy = "policy (JSON5)"
}

/// Files (path relative to a scratch directory → bytes) and the paths to load.
struct Layout {
  var files: [(path: String, data: Data)]
  var load: [String]
}

/// One input as found: GWA-T-12 is a directory of three VMs' files, a trace or
/// a policy one file.
struct Unit {
  var format: InputFormat
  var files: [(name: String, text: String)]
  var directory: String? { format == .gwa ? "gwa" : nil }
  func layout(_ texts: [(name: String, text: String)]) -> Layout {
    let files = texts.map { (path: (directory.map { "\($0)/" } ?? "") + $0.name, data: Data($0.text.utf8)) }
    return Layout(files: files, load: directory.map { [$0] } ?? files.map(\.path))
  }
}

struct Transformation: Sendable {
  var name: String
  /// Whether a refusal must name a line too (a change at a place in the text).
  var atLine: Bool
  var expected: [InputFormat: Bool]  // true: read the same; false: refused; absent: does not apply
  var apply: @Sendable (Unit) -> Layout?
}

func eachFile(_ f: @escaping @Sendable (String) -> String) -> @Sendable (Unit) -> Layout? {
  { unit in unit.layout(unit.files.map { ($0.name, f($0.text)) }) }
}

func lines(_ text: String) -> [String] {
  var l = text.components(separatedBy: "\n")
  if l.last == "" { l.removeLast() }
  return l
}

/// `text` with its `i`-th line (0-based) cut to half its length, or the file
/// ending there when `end`.
func cutLine(_ text: String, _ i: Int, end: Bool) -> String {
  var l = lines(text)
  l[i] = String(l[i].prefix(l[i].count / 2))
  return end ? l[...i].joined(separator: "\n") : l.joined(separator: "\n") + "\n"
}

/// The line a data row is on: GWA rows, trace samples, policy members.
func dataLines(_ unit: Unit, _ text: String) -> [Int] {
  lines(text).enumerated().filter { _, l in
    switch unit.format {
    case .gwa: !GWAT12.looksLike(l[...])
    case .trace: l.hasPrefix("s ")
    case .policy: l.contains(":") && !l.trimmingCharacters(in: .whitespaces).hasPrefix("//")
    }
  }.map(\.offset)
}

/// A JSON value written back as JSON, every object's keys in reverse order.
func reversedJSON(_ v: JSONValue) -> String {
  switch v {
  case .object(let m): "{" + m.reversed().map { "\(quoted($0.key)): \(reversedJSON($0.value.value))" }.joined(separator: ",\n") + "}"
  case .array(let a): "[" + a.map { reversedJSON($0.value) }.joined(separator: ", ") + "]"
  case .string(let s): quoted(s)
  case .number(let d): d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
  case .bool(let b): "\(b)"
  case .null: "null"
  }
}

func quoted(_ s: String) -> String {
  "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

let transformations: [Transformation] = [
  Transformation(name: "CR LF line ends (Windows tools, git autocrlf)", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile(crlf)),
  Transformation(name: "CR line ends (classic Mac OS, Excel for Mac CSV)", atLine: true,
                 expected: [.gwa: true, .trace: false, .policy: true], apply: eachFile(crOnly)),
  Transformation(name: "LF and CR LF mixed (every other line)", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { text in
                   lines(text).enumerated().map { $0.offset % 2 == 0 ? $0.element + "\r\n" : $0.element + "\n" }.joined()
                 }),
  Transformation(name: "UTF-8 byte-order mark (Notepad, Excel's CSV UTF-8)", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { "\u{FEFF}" + $0 }),
  Transformation(name: "UTF-16 LE with byte-order mark (Excel's Unicode text)", atLine: false,
                 expected: [.gwa: false, .trace: false, .policy: false], apply: { unit in
                   var layout = unit.layout(unit.files)
                   layout.files = layout.files.map { f in
                     (f.path, Data([0xFF, 0xFE]) + String(decoding: f.data, as: UTF8.self).data(using: .utf16LittleEndian)!)
                   }
                   return layout
                 }),
  Transformation(name: "trailing spaces and tabs on every line", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { text in
                   lines(text).map { $0 + " \t " }.joined(separator: "\n") + "\n"
                 }),
  Transformation(name: "final newline removed", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { String($0.dropLast()) }),
  Transformation(name: "final newline doubled", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { $0 + "\n" }),
  Transformation(name: "trailing blank lines (one of spaces)", atLine: false,
                 expected: [.gwa: true, .trace: true, .policy: true], apply: eachFile { $0 + "\n  \n\n" }),
  Transformation(name: "split in two by time (GWA-T-12: two directories, as the archive's months)", atLine: false,
                 expected: [.gwa: true, .trace: false], apply: { unit in
                   switch unit.format {
                   case .policy: return nil
                   case .gwa:
                     var files: [(String, Data)] = []
                     for f in unit.files {
                       let l = lines(f.text)
                       files.append(("gwa-a/\(f.name)", Data((l[...12].joined(separator: "\n") + "\n").utf8)))
                       files.append(("gwa-b/\(f.name)", Data(([l[0]] + l[13...]).joined(separator: "\n").utf8 + [0x0A])))
                     }
                     return Layout(files: files, load: ["gwa-a", "gwa-b"])
                   case .trace:
                     let f = unit.files[0], l = lines(f.text)
                     let cycles = l.indices.filter { l[$0].hasPrefix("c ") }
                     let mid = cycles[cycles.count / 2]
                     let a = l[..<mid].joined(separator: "\n") + "\n"
                     let b = ([l[0]] + l[mid...]).joined(separator: "\n") + "\n"
                     return Layout(files: [("a-\(f.name)", Data(a.utf8)), ("b-\(f.name)", Data(b.utf8))],
                                   load: ["a-\(f.name)", "b-\(f.name)"])
                   }
                 }),
  Transformation(name: "two files joined into one (GWA-T-12: two VMs'; trace, policy: the file twice)", atLine: true,
                 expected: [.gwa: false, .trace: false, .policy: false], apply: { unit in
                   if unit.format == .gwa {
                     var texts = unit.files
                     texts[0].text += texts[1].text
                     texts.remove(at: 1)
                     return unit.layout(texts)
                   }
                   return unit.layout(unit.files.map { ($0.name, $0.text + $0.text) })
                 }),
  Transformation(name: "two VMs' files joined, the second header dropped (`tail -n +2`)", atLine: true,
                 expected: [.gwa: false], apply: { unit in
                   guard unit.format == .gwa else { return nil }
                   var texts = unit.files
                   texts[0].text += lines(texts[1].text).dropFirst().joined(separator: "\n") + "\n"
                   texts.remove(at: 1)
                   return unit.layout(texts)
                 }),
  Transformation(name: "a column reordered (GWA-T-12: network received first; trace: vm attributes; policy: every object's keys, as JSON)",
                 atLine: false, expected: [.gwa: true, .trace: true, .policy: true], apply: { unit in
                   switch unit.format {
                   case .gwa:
                     return unit.layout(unit.files.map { f in
                       (f.name, lines(f.text).map { line in
                         var fields = line.components(separatedBy: ";")
                         fields.insert(fields.remove(at: 9), at: 0)
                         return fields.joined(separator: ";")
                       }.joined(separator: "\n") + "\n")
                     })
                   case .trace:
                     return unit.layout(unit.files.map { f in
                       (f.name, lines(f.text).map { line in
                         guard line.hasPrefix("vm ") else { return line }
                         let w = line.split(separator: " ")
                         return (w[...1] + w[2...].reversed()).joined(separator: " ")
                       }.joined(separator: "\n") + "\n")
                     })
                   case .policy:
                     return unit.layout(unit.files.map { ($0.name, reversedJSON(try! parseJSON5($0.text).value)) })
                   }
                 }),
  Transformation(name: "a row cut short mid-file (GWA-T-12 row, trace sample, policy member)", atLine: true,
                 expected: [.gwa: false, .trace: false, .policy: false], apply: { unit in
                   var texts = unit.files
                   let rows = dataLines(unit, texts[0].text)
                   texts[0].text = cutLine(texts[0].text, rows[rows.count / 2], end: false)
                   return unit.layout(texts)
                 }),
  Transformation(name: "the file cut short mid-row (an interrupted copy)", atLine: true,
                 expected: [.gwa: false, .trace: false, .policy: false], apply: { unit in
                   var texts = unit.files
                   let rows = dataLines(unit, texts[0].text)
                   texts[0].text = cutLine(texts[0].text, unit.format == .policy ? rows[rows.count / 2] : rows.last!, end: true)
                   return unit.layout(texts)
                 }),
]

enum Outcome: Equatable, CustomStringConvertible {
  case same
  case refused(String)
  case different(String)
  var description: String {
    switch self {
    case .same: "same"
    case .refused(let e): "refused: \(e)"
    case .different(let what): "READ DIFFERENTLY: \(what)"
    }
  }
}

func bundledUnits() throws -> [Unit] {
  func read(_ path: String) throws -> String { try String(contentsOfFile: "\(repoRoot)/\(path)", encoding: .utf8) }
  return [Unit(format: .gwa, files: gwaExtract)]
    + (try ["paper-8vm", "bitbrains-8vm"].map { Unit(format: .trace, files: [("\($0).trace", try read("policies/traces/\($0).trace"))]) })
    + (try ["paper-multinetwork", "all-sriov", "general"].map { Unit(format: .policy, files: [("\($0).json", try read("policies/\($0).json"))]) })
}

/// Reads a layout as the commands do (GWA-T-12 strictly: a file left out is
/// refused); `nil` is how the original reads.
enum Read: Equatable {
  case trace(Trace, ReplayReport)
  case policy(Policy)
}

func read(_ unit: Unit, _ layout: Layout, in scratch: ScratchDirectory, general: Policy) throws -> Read {
  for f in layout.files { scratch.write(f.path, f.data) }
  let paths = layout.load.map { "\(scratch.path)/\($0)" }
  switch unit.format {
  case .policy:
    return .policy(try loadPolicy(paths[0]))
  case .gwa, .trace:
    let (trace, inputs) = try loadTrace(paths)
    if let w = inputs.warnings.first { throw FileError(path: w.file, reason: w.reason) }
    let t = withoutSource(trace)
    return .trace(t, replay(t, policy: general))
  }
}

struct MetamorphicCell { var transformation: Transformation; var format: InputFormat; var outcome: Outcome }

func metamorphicCells() throws -> [MetamorphicCell] {
  let general = try loadPolicy("\(repoRoot)/policies/general.json")
  var cells: [MetamorphicCell] = []
  let units = try bundledUnits()
  let originals = try units.map { unit in try read(unit, unit.layout(unit.files), in: try ScratchDirectory("clean"), general: general) }
  for t in transformations {
    for format in InputFormat.allCases {
      var outcome: Outcome?
      for (unit, original) in zip(units, originals) where unit.format == format {
        guard let layout = t.apply(unit) else { continue }
        let changed = try ScratchDirectory("changed")
        let this: Outcome
        do {
          let again = try read(unit, layout, in: changed, general: general)
          this = again == original ? .same : .different(unit.files[0].name)
        } catch {
          this = .refused("\(error)".replacingOccurrences(of: changed.path + "/", with: ""))
        }
        // The first refusal stands for the format; a read that differs is always shown.
        if outcome == nil || outcome == .same || { if case .different = this { true } else { false } }() { outcome = this }
        if case .refused(let e) = this {
          let named = layout.files.map(\.path) + layout.load
          let at = named.first { e.hasPrefix($0 + ":") }
          #expect(at != nil, "\(t.name) × \(format.rawValue): the error names no file: \(e)")
          if t.atLine, let at {
            #expect(e.range(of: "^" + NSRegularExpression.escapedPattern(for: at) + ":[0-9]+:", options: .regularExpression) != nil,
                    "\(t.name) × \(format.rawValue): the error names no line: \(e)")
          }
        }
      }
      if let outcome { cells.append(MetamorphicCell(transformation: t, format: format, outcome: outcome)) }
    }
  }
  return cells
}

@Test("metamorphic: every transformation of every bundled input reads the same or is refused naming the file (and line)")
func metamorphicTransformations() throws {
  let cells = try metamorphicCells()
  for c in cells {
    switch (c.outcome, c.transformation.expected[c.format]) {
    case (.same, true?), (.refused, false?): break
    default: Issue.record("\(c.transformation.name) × \(c.format.rawValue): \(c.outcome), expected \(c.transformation.expected[c.format].map { $0 ? "same" : "refused" } ?? "n/a")")
    }
  }
  for t in transformations {
    #expect(Set(cells.filter { $0.transformation.name == t.name }.map(\.format)) == Set(t.expected.keys), "\(t.name)")
  }
  guard let dir = ProcessInfo.processInfo.environment["VFSHIFT_BAD_INPUT_TABLE"] else { return }
  var out = "| transformation | " + InputFormat.allCases.map(\.rawValue).joined(separator: " | ") + " |\n"
  out += "|---|" + InputFormat.allCases.map { _ in "---|" }.joined() + "\n"
  for t in transformations {
    out += "| \(t.name) | " + InputFormat.allCases.map { f in
      guard let c = cells.first(where: { $0.transformation.name == t.name && $0.format == f }) else { return "—" }
      switch c.outcome {
      case .same: return "same"
      case .refused(let e): return "refused: " + markdownCode(e, limit: .max)
      case .different(let what): return "**read differently** (\(what))"
      }
    }.joined(separator: " | ") + " |\n"
  }
  try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  _ = FileManager.default.createFile(atPath: "\(dir)/metamorphic.md", contents: Data(out.utf8))
}
