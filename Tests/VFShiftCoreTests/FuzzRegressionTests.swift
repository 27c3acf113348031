import Testing
import VFShiftCore

// Inputs that trapped before their fix, reduced by hand from what
// Benchmarks/fuzz/run found (the full inputs are in Benchmarks/fuzz/corpus/
// as seeds, so the fuzzer replays them on every run). Each must now be a
// clean error naming the file, line and field.

@Test("fuzz-policy: a whole number beyond Int is an error, not a trap converting it", arguments: [
  ("priority", "{ pools: [ { name: 'p', network: 'n' } ],\n  classes: [ { name: 'h', priority: 444444444444444444444444444444100, match: { names: '*' }, vf: 'never' } ] }",
   "p.json:2: classes[0].priority: must be a whole number of at most 2^53, got 4.4444444444444446e+32"),
  ("maxInUse", "{ pools: [ { name: 'p', network: 'n', maxInUse: 1e19 } ],\n  classes: [ { name: 'h', match: { names: '*' }, vf: 'never' } ] }",
   "p.json:1: pools[0].maxInUse: must be a whole number of at most 2^53, got 1e+19"),
  ("maxSwapsPerCycle", "{ pools: [ { name: 'p', network: 'n' } ],\n  classes: [ { name: 'h', match: { names: '*' }, vf: 'never' } ],\n  antiFlap: { maxSwapsPerCycle: 1e300 } }",
   "p.json:3: antiFlap.maxSwapsPerCycle: must be a whole number of at most 2^53, got 1e+300"),
])
func policyHugeWholeNumber(_ field: String, _ text: String, _ expected: String) {
  #expect(throws: PolicyErrors.self, "\(field)") { try Policy.parse(text, file: "p.json", defaultName: "p") }
  do { _ = try Policy.parse(text, file: "p.json", defaultName: "p") } catch {
    #expect(error.description == expected, "\(field)")
  }
}

@Test("GWA-T-12: a throughput whose bytes overflow UInt64 is an error, not a trap converting it")
func gwaOverflowingThroughput() {
  let text = gwaHeaderLine + "\n" + gwaRow("1000") + "\n" + gwaRow("1300", tx: "99999999999999999999")
  #expect(throws: TraceError.self) { try GWAT12.trace([GWAT12.File(name: "9.csv", text: text)], source: "x") }
}

@Test("GWA-T-12: timestamps in milliseconds are an error, not billions of cycles allocated")
func gwaMillisecondTimestamps() {
  let text = gwaHeaderLine + "\n" + gwaRow("1372636858000") + "\n" + gwaRow("1372637158000")
  // A lone file is fine (one VM, two cycles); it is the span across files that must be bounded.
  let other = gwaHeaderLine + "\n" + gwaRow("1372636858")
  #expect(throws: TraceError.self) {
    try GWAT12.trace([GWAT12.File(name: "1.csv", text: text), GWAT12.File(name: "2.csv", text: other)], source: "x")
  }
}
