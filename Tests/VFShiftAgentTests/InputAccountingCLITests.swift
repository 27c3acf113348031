import Foundation
import Testing
import VFShiftTestSupport

// `whatif` and `trace import` account for their input (issue #15): the
// binary as an operator runs it, on a GWA-T-12 directory written here.

private func vfshift(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
  let r = try vfshiftCLI(args)
  return (r.status, r.stdout, r.stderr)
}

/// Two VMs' files as the archive writes them, one with CR LF line ends
/// (read the same), one with its header alone (left out, named), a README.
private func gwaDirectory(_ scratch: Scratch) throws -> String {
  let header = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]"
  func rows(_ rx: Double) -> String {
    (0..<12).map { "\(1372629804 + 300 * $0);\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t\(rx * Double($0 % 3));\t2.0" }
      .joined(separator: "\n")
  }
  let dir = scratch.file("gwa")
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  try (header + "\n" + rows(500) + "\n").write(toFile: "\(dir)/1.csv", atomically: true, encoding: .utf8)
  try (header + "\r\n" + rows(9000).replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
    .write(toFile: "\(dir)/2.csv", atomically: true, encoding: .utf8)
  try (header + "\n").write(toFile: "\(dir)/3.csv", atomically: true, encoding: .utf8)
  try "extract of GWA-T-12\n".write(toFile: "\(dir)/README", atomically: true, encoding: .utf8)
  return dir
}

@Test("whatif names every file it left out and why: table, JSON, warnings on stderr; --strict exits 1")
func whatifAccounting() throws {
  let scratch = Scratch("accounting")
  let dir = try gwaDirectory(scratch)
  let policy = "\(TestBed.packageRoot.path)/policies/general.json"
  let table = try vfshift(["whatif", "--trace", dir, "--policy", policy])
  #expect(table.code == 0)
  #expect(table.out.hasPrefix("what-if: \(dir)\n  inputs: 4 files found, 2 VMs imported, 2 skipped:\n"
    + "    \(dir)/3.csv: no rows after the header\n    \(dir)/README: not named <vm>.csv\n  2 VMs, 12 cycles"))
  #expect(table.err == "warning: \(dir)/3.csv: no rows after the header (left out)\n")

  let json = try vfshift(["whatif", "--trace", dir, "--policy", policy, "--json"])
  let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
  let inputs = try #require(doc["inputs"] as? [String: Any])
  #expect(inputs["files"] as? Int == 4 && inputs["vms"] as? Int == 2)
  #expect((inputs["skipped"] as? [[String: String]]) == [
    ["file": "\(dir)/3.csv", "reason": "no rows after the header"],
    ["file": "\(dir)/README", "reason": "not named <vm>.csv"],
  ])

  let strict = try vfshift(["whatif", "--trace", dir, "--policy", policy, "--strict"])
  #expect(strict.code == 1 && strict.out.isEmpty)
  #expect(strict.err == "error: \(dir)/3.csv: no rows after the header\nerror: 1 of 4 files gave no VM (--strict)\n")

  let imported = try vfshift(["trace", "import", dir, "--out", scratch.file("t.trace")])
  #expect(imported.code == 0)
  #expect(imported.err.hasPrefix("trace import: inputs: 4 files found, 2 VMs imported, 2 skipped:\n"))
  #expect(try vfshift(["trace", "import", dir, "--out", scratch.file("u.trace"), "--strict"]).code == 1)
}

@Test("the README's first command: whatif on the bundled trace prints its accounting line")
func whatifBundledAccounting() throws {
  let r = try vfshift(["whatif"])
  #expect(r.code == 0 && r.err.isEmpty)
  #expect(r.out.split(separator: "\n").dropFirst().first == "  inputs: 1 file found, 8 VMs imported, none skipped")
}
