import Foundation
import Testing
import VFShiftCore

// Hand-written bad inputs for the pure parsers, each with the exact error it
// must get. The same rows make the "Bad input" table of docs/reliability.md:
// with VFSHIFT_BAD_INPUT_TABLE=<dir> set, each test writes its parser's table
// there (Benchmarks/fuzz/bad-input-table runs them and fills in the doc).

struct BadInput: Sendable, CustomTestStringConvertible {
  var what: String
  var input: String
  /// The whole error text, location and reason.
  var error: String
  var testDescription: String { what }
}

/// One Markdown table: the bad input, the input itself (shortened), and the
/// error the parser gave — as it gave it, not as the row expects it.
func badInputTable(_ rows: [(what: String, input: String, error: String)]) -> String {
  var out = "| bad input | input | error |\n|---|---|---|\n"
  for row in rows { out += "| \(row.what) | \(markdownCode(row.input)) | \(markdownCode(row.error, limit: .max)) |\n" }
  return out
}

func markdownCode(_ s: String, limit: Int = 70) -> String {
  var shown = ""
  for c in s.unicodeScalars {
    switch c {
    case "\n": shown += "⏎"
    case "\0": shown += "␀"
    case "|": shown += "\\|"
    case _ where c.value < 0x20 || c.value == 0x7F: shown += "\\x" + String(c.value, radix: 16)
    default: shown.unicodeScalars.append(c)
    }
  }
  if shown.count > limit { shown = String(shown.prefix(limit)) + "…" }
  if shown.isEmpty { return "(empty)" }
  return shown.contains("`") ? "`` \(shown) ``" : "`\(shown)`"
}

func writeBadInputTable(_ parser: String, _ rows: [(what: String, input: String, error: String)]) {
  guard let dir = ProcessInfo.processInfo.environment["VFSHIFT_BAD_INPUT_TABLE"] else { return }
  try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  _ = FileManager.default.createFile(atPath: "\(dir)/\(parser).md", contents: Data(badInputTable(rows).utf8))
}

// MARK: - Policy files

let badPolicyInputs: [BadInput] = [
  BadInput(what: "string never closed", input: "{ name: \"x }",
           error: "p.json:1: the file ends inside a string (truncated?) (column 13)"),
  BadInput(what: "block comment never closed", input: "{ /* pools: [] ",
           error: "p.json:1: a /* comment is never closed (column 1)"),
  BadInput(what: "bare word for a string", input: "{ vf: eligible }",
           error: "p.json:1: unexpected word 'eligible' (strings need quotes) (column 15)"),
  BadInput(what: "key given twice", input: "{ name: 'a', name: 'b' }",
           error: "p.json:1: key 'name' appears twice in one object (column 19)"),
  BadInput(what: "number out of range", input: "{ pools: [ { name: 'p', network: 'n', maxInUse: 1e999 } ] }",
           error: "p.json:1: '1e999' is not a number (column 54)"),
  BadInput(what: "bad \\u escape", input: "{ name: '\\uZZZZ' }",
           error: "p.json:1: bad \\u escape (column 12)"),
  BadInput(what: "nesting 65 deep", input: String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
           error: "p.json:1: nesting deeper than 64 levels (column 65)"),
  BadInput(what: "text after the value", input: "{} {}",
           error: "p.json:1: unexpected text after the top-level value (column 4)"),
  BadInput(what: "missing colon", input: "{\n  pools [] }",
           error: "p.json:2: expected ':' after key 'pools' (column 9)"),
  BadInput(what: "control character", input: "{ name: 'a' \u{7} }",
           error: "p.json:1: expected ',' or '}' after the value of 'name' (column 13)"),
]

@Test(arguments: badPolicyInputs)
func badPolicyInputGetsItsExactError(_ row: BadInput) {
  #expect(policyError(row.input) == row.error, "\(row.what)")
}

func policyError(_ text: String) -> String {
  do { _ = try Policy.parse(text, file: "p.json", defaultName: "p"); return "accepted" } catch { return error.description }
}

@Test("the policy bad-input table: these rows and those of PolicyTests, each with the error it gets")
func policyBadInputTable() {
  let rows = badPolicyInputs.map { ($0.what, $0.input, policyError($0.input)) }
    + badPolicies.map { ($0.what, $0.text, policyError($0.text)) }
  #expect(rows.allSatisfy { $0.2 != "accepted" })
  writeBadInputTable("policy", rows)
}

// MARK: - Traces

let badTraceInputs: [BadInput] = [
  BadInput(what: "interval of zero", input: "vfshift-trace 1\ninterval 0",
           error: "t.trace:2: interval needs one positive number of seconds"),
  BadInput(what: "negative pool size", input: "vfshift-trace 1\npool p -1",
           error: "t.trace:2: pool needs a name and a VF count ≥ 0"),
  BadInput(what: "VM declared twice", input: "vfshift-trace 1\nvm a\nvm a",
           error: "t.trace:3: vm 'a' is declared twice"),
  BadInput(what: "vm attribute without '='", input: "vfshift-trace 1\nvm a uuid",
           error: "t.trace:2: vm attribute 'uuid' is not key=value"),
  BadInput(what: "gone for an undeclared VM", input: "vfshift-trace 1\ngone z",
           error: "t.trace:2: gone names no declared vm"),
  BadInput(what: "cycle time not a number", input: "vfshift-trace 1\nc nan",
           error: "t.trace:2: c needs one time in seconds"),
  BadInput(what: "byte counter above 2^64-1", input: "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 18446744073709551616 0 0 0",
           error: "t.trace:4: byte counters must be whole numbers ≥ 0, got '18446744073709551616' '0'"),
  BadInput(what: "packet counter not a number", input: "vfshift-trace 1\nvm a\nc 1\ns 1 a vnet0 1 1 many -",
           error: "t.trace:4: packet counters must be whole numbers ≥ 0 or '-', got 'many' '-'"),
  BadInput(what: "sample for a VM gone before the cycle", input: "vfshift-trace 1\nvm a\ngone a\nc 1\ns 1 a ?",
           error: "t.trace:5: sample for vm 'a', which is not present in this cycle (declare it before the 'c' line)"),
  BadInput(what: "only comments", input: "# nothing\n\n",
           error: "t.trace:1: empty file: not a vfshift trace"),
]

@Test(arguments: badTraceInputs)
func badTraceInputGetsItsExactError(_ row: BadInput) {
  #expect(traceError(row.input) == row.error, "\(row.what)")
}

func traceError(_ text: String, file: String = "t.trace") -> String {
  do { _ = try Trace.parse(text, file: file); return "accepted" } catch { return error.description }
}

@Test("the trace bad-input table: these rows and those of TraceTests")
func traceBadInputTable() {
  let rows = badTraceInputs.map { ($0.what, $0.input, traceError($0.input)) }
    + badTraces.map { ($0.what, $0.text, traceError($0.text, file: "t")) }
  #expect(rows.allSatisfy { $0.2 != "accepted" })
  writeBadInputTable("trace", rows)
}

// MARK: - GWA-T-12 CSV

let gwaHeaderLine = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"

func gwaRow(_ t: String, rx: String = "1.0", tx: String = "2.0") -> String {
  "\(t);\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t\(rx);\t\(tx)"
}

let badGWAInputs: [BadInput] = [
  BadInput(what: "not a GWA-T-12 header", input: "time;rx;tx\n1;2;3",
           error: "7.csv:1: not a GWA-T-12 file: the header has no 'Timestamp [ms]' field"),
  BadInput(what: "truncated row", input: gwaHeaderLine + "\n" + gwaRow("1000") + "\n1300;\t2;\t58",
           error: "7.csv:3: 3 fields, expected 11 separated by ';' (truncated row?)"),
  BadInput(what: "comma for ';'", input: gwaHeaderLine + "\n" + gwaRow("1000").replacingOccurrences(of: ";", with: ","),
           error: "7.csv:2: 1 fields, expected 11 separated by ';' (truncated row?)"),
  BadInput(what: "negative throughput", input: gwaHeaderLine + "\n" + gwaRow("1000", tx: "-2.0"),
           error: "7.csv:2: network transmitted KB/s '-2.0' is not a number ≥ 0"),
  BadInput(what: "infinite throughput", input: gwaHeaderLine + "\n" + gwaRow("1000", rx: "inf"),
           error: "7.csv:2: network received KB/s 'inf' is not a number ≥ 0"),
  BadInput(what: "timestamp not a number", input: gwaHeaderLine + "\n" + gwaRow("noon"),
           error: "7.csv:2: timestamp 'noon' is not a number ≥ 0"),
  BadInput(what: "throughput that overflows a 64-bit byte counter",
           input: gwaHeaderLine + "\n" + gwaRow("1000") + "\n" + gwaRow("1300", rx: "1e300"),
           error: "7.csv:3: network received KB/s '1e+300' over 300 s is more than a 64-bit byte counter holds"),
  BadInput(what: "timestamps centuries apart (milliseconds?)",
           input: gwaHeaderLine + "\n" + gwaRow("1372636858") + "\n" + gwaRow("1372636858000"),
           error: "7.csv:3: timestamp 1372636858000 is 1371264221142 s after the first (1372636858), more than 10 years of 300 s cycles (Unix seconds expected)"),
]

func gwaError(_ text: String) -> String {
  do { _ = try GWAT12.trace([GWAT12.File(name: "7.csv", text: text)], source: "x"); return "accepted" } catch {
    return error.description
  }
}

@Test(arguments: badGWAInputs)
func badGWAInputGetsItsExactError(_ row: BadInput) {
  #expect(gwaError(row.input) == row.error, "\(row.what)")
}

@Test("the GWA-T-12 bad-input table")
func gwaBadInputTable() {
  let rows = badGWAInputs.map { ($0.what, $0.input, gwaError($0.input)) }
  #expect(rows.allSatisfy { $0.2 != "accepted" })
  writeBadInputTable("gwa", rows)
}
