import Testing
import VFShiftCore
import VFShiftFiles

let repoRoot: String = {
  var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
  parts.removeLast(3)
  return parts.joined(separator: "/")
}()

/// Fifteen GWA-T-12 files as published, cut to a day (its README says which and whence).
let gwaExtractDirectory = "\(repoRoot)/Tests/VFShiftCoreTests/Fixtures/bitbrains-rnd-2013-7-extract"

@Test("the bundled policies are valid", arguments: ["paper-multinetwork", "all-sriov", "general"])
func bundledPolicyParses(_ name: String) throws {
  let policy = try loadPolicy("\(repoRoot)/policies/\(name).json")
  #expect(policy.name == name)
  #expect(!policy.classes.isEmpty)
}

@Test("the paper policy: VMs 1–5 low QoS never on a VF, VMs 6–8 high QoS eligible, the pool capped")
func paperPolicyShape() throws {
  let policy = try loadPolicy("\(repoRoot)/policies/paper-multinetwork.json")
  for i in 1...8 {
    guard case .managed(let c) = policy.resolveClass(of: VMIdentity(uuid: "u\(i)", name: "vm\(i)")) else {
      Issue.record("vm\(i) unmatched"); continue
    }
    #expect(policy.classes[c].vf == (i <= 5 ? .never : .eligible), "vm\(i)")
  }
  #expect(policy.pools[0].maxInUse != nil)
}

struct BadPolicy: Sendable, CustomTestStringConvertible {
  var what: String
  var text: String
  /// Each expected problem as "line: path: fragment of the reason".
  var expect: [String]
  /// How many problems in all, where the row says.
  var exactly: Int? = nil
  var testDescription: String { what }
}

let validClass = """
  { name: "high", priority: 1, match: { metadata: "high" }, vf: "eligible",
    promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } }
"""

let badPolicies: [BadPolicy] = [
  BadPolicy(what: "truncated file", text: "{ pools: [ { name: \"p\", network: \"n\" }", expect: ["1: : the file ends inside an array"]),
  BadPolicy(what: "empty file", text: "", expect: ["1: : the file ends where a value should be"]),
  BadPolicy(what: "not an object", text: "[1, 2]", expect: ["1: : must be an object"]),
  BadPolicy(what: "wrong type for a number", text: """
    {
      pools: [ { name: "p", network: "n", maxInUse: "two" } ],
      classes: [ \(validClass) ],
    }
    """, expect: ["2: pools[0].maxInUse: must be a number, found a string"]),
  BadPolicy(what: "a pool's counters is one of the sources", text: """
    {
      pools: [ { name: "p", network: "n", counters: "guest" } ],
      classes: [ \(validClass) ],
    }
    """, expect: ["2: pools[0].counters: must be one of auto, representor, pf, guestAgent, host, got 'guest'"]),
  BadPolicy(what: "unknown field (a typo)", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ \(validClass) ],
      antiFlap: { minDwelSeconds: 10 },
    }
    """, expect: ["5: antiFlap.minDwelSeconds: unknown field (did you mean minDwellSeconds?)"]),
  BadPolicy(what: "negative threshold", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "high", match: { names: "*" }, vf: "eligible",
                   promote: { bytesPerSecond: -10 },
                   demote: { bytesPerSecond: 5 } } ],
    }
    """, expect: ["4: classes[0].promote.bytesPerSecond: must be ≥ 0, got -10"]),
  BadPolicy(what: "duplicate class names", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [
        { name: "a", match: { names: "x*" }, vf: "never" },
        { name: "a", match: { names: "y*" }, vf: "never" },
      ],
    }
    """, expect: ["5: classes[1].name: class 'a' is defined twice"]),
  BadPolicy(what: "after an entry that failed, duplicates and overlaps name the entries as written", text: """
    {
      pools: [ { name: "p" }, { name: "q", network: "n" }, { name: "q", network: "m" } ],
      classes: [
        { name: "broken", vf: "never" },
        { name: "a", match: { names: "vm[1-5]" }, vf: "never" },
        { name: "a", match: { names: ["vm3"] }, vf: "never" },
      ],
    }
    """, expect: [": pools[0].network: is required", "2: pools[2].name: pool 'q' is defined twice",
                  "4: classes[0].match: is required", "6: classes[2].name: class 'a' is defined twice",
                  "6: classes[2].match.names: 'vm3' is also matched by class 'a' (classes[1])"], exactly: 5),
  BadPolicy(what: "a VM matched by two classes", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [
        { name: "a", match: { names: "vm[1-5]" }, vf: "never" },
        { name: "b", match: { names: ["vm3"], metadata: "x" }, vf: "never" },
      ],
    }
    """, expect: ["5: classes[1].match.names: 'vm3' is also matched by class 'a'"]),
  BadPolicy(what: "a VM matched by two classes, the literal name first", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [
        { name: "a", match: { names: ["vm3"] }, vf: "never" },
        { name: "b", match: { names: "vm*" }, vf: "never" },
      ],
    }
    """, expect: ["5: classes[1].match.names: 'vm*' is also matched by class 'a'"]),
  BadPolicy(what: "release threshold above the promote threshold", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "eligible",
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 50 } } ],
    }
    """, expect: ["4: classes[0].demote.bytesPerSecond: must be below promote.bytesPerSecond (10) for hysteresis"]),
  BadPolicy(what: "a class naming a pool that does not exist", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "always", pool: "nope" } ],
    }
    """, expect: ["3: classes[0].pool: no pool named 'nope'"]),
  BadPolicy(what: "bad enum value", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "sometimes" } ],
    }
    """, expect: ["3: classes[0].vf: must be one of never, eligible, always"]),
  BadPolicy(what: "a bad vf value is one message, not a cascade; an empty name is reported too", text: """
    {
      pools: [ { name: "p", network: "n" }, { name: "q", network: "m" } ],
      classes: [ { name: "h", match: { names: "" }, vf: "sometimes" } ],
    }
    """, expect: ["3: classes[0].vf: must be one of never, eligible, always", "3: classes[0].match.names: must not be empty"],
    exactly: 3),
  BadPolicy(what: "a negative contention weight", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "eligible", contentionWeight: -1,
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } } ],
    }
    """, expect: ["3: classes[0].contentionWeight: must be ≥ 0, got -1"], exactly: 1),
  BadPolicy(what: "a contention weight that is not a number", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "eligible", contentionWeight: "high",
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } } ],
    }
    """, expect: ["3: classes[0].contentionWeight: must be a number, found a string"], exactly: 1),
  BadPolicy(what: "a contention weight on a class that never ranks (vf: always)", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "always", contentionWeight: 2 } ],
    }
    """, expect: ["3: classes[0].contentionWeight: has no effect when vf is 'always'"], exactly: 1),
  BadPolicy(what: "promoteUnderContention: a scale above 1 and a missing level", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "eligible", promoteUnderContention: { promoteScale: 2 },
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } } ],
    }
    """, expect: ["3: classes[0].promoteUnderContention.above: is required",
                  "3: classes[0].promoteUnderContention.promoteScale: must be ≤ 1, got 2"], exactly: 2),
  BadPolicy(what: "promoteUnderContention: a scale that lowers promote to the release threshold", text: """
    {
      pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "*" }, vf: "eligible", promoteUnderContention: { above: 0.3, promoteScale: 0.5 },
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } } ],
    }
    """, expect: ["3: classes[0].promoteUnderContention.promoteScale: lowers promote.bytesPerSecond to 5, not above demote.bytesPerSecond (5): no hysteresis"], exactly: 1),
  BadPolicy(what: "several errors are all reported", text: """
    {
      pools: [ { name: "p" } ],
      classes: [ { name: "h", vf: "never" } ],
      colour: "blue",
    }
    """, expect: [": pools[0].network: is required", "3: classes[0].match: is required", "4: colour: unknown field"]),
]

@Test(arguments: badPolicies)
func badPolicyIsReported(_ row: BadPolicy) {
  do {
    _ = try Policy.parse(row.text, file: "bad.json", defaultName: "bad")
    Issue.record("\(row.what): accepted")
  } catch {
    let lines = error.issues.map { "\($0.line.map(String.init) ?? ""): \($0.path): \($0.reason)" }
    for fragment in row.expect {
      #expect(lines.contains { $0.hasPrefix(fragment) || ($0.contains(fragment) && fragment.hasPrefix(":")) },
              "\(row.what): expected «\(fragment)» in \(lines)")
    }
    if let n = row.exactly { #expect(error.issues.count == n, "\(row.what): \(lines)") }
    #expect(error.issues.allSatisfy { $0.file == "bad.json" })
    #expect(error.description.hasPrefix("bad.json"))
  }
}

@Test("contentionWeight: decoded on an eligible class, 0 (traffic alone) when not given")
func contentionWeightDecoded() throws {
  let text = """
    { pools: [ { name: "p", network: "n" } ],
      classes: [ { name: "h", match: { names: "h*" }, vf: "eligible", contentionWeight: 2.5,
                   promote: { bytesPerSecond: 10 }, demote: { bytesPerSecond: 5 } }, \(validClass) ] }
    """
  let p = try Policy.parse(text, file: "f", defaultName: "d")
  #expect(p.classes.map(\.contentionWeight) == [2.5, 0])
  #expect(p.classes.map(\.promoteUnderContention) == [nil, nil])
  let relieved = try Policy.parse(text.replacingOccurrences(of: "contentionWeight: 2.5",
                                                            with: "promoteUnderContention: { above: 0.3, promoteScale: 0.6 }"),
                                  file: "f", defaultName: "d")
  #expect(relieved.classes[0].promoteUnderContention == ContentionRelief(above: 0.3, promoteScale: 0.6))
}

@Test("JSON5 conveniences operators use: comments, trailing commas, unquoted keys, digit separators")
func json5Conveniences() throws {
  let p = try Policy.parse("""
    // a comment
    { /* block */ name: 'x', pools: [ { name: "p", network: "n", maxInUse: 1_0, }, ],
      classes: [ \(validClass), ], }
    """, file: "f", defaultName: "d")
  #expect(p.name == "x" && p.pools[0].maxInUse == 10)
}

@Test("globs match domain names as a shell would")
func globs() {
  #expect(globMatch("vm[6-8]", "vm7"))
  #expect(!globMatch("vm[6-8]", "vm9"))
  #expect(globMatch("web-*-prod", "web-eu-1-prod"))
  #expect(!globMatch("web-*-prod", "web-eu-1-dev"))
  #expect(globMatch("db?", "db1") && !globMatch("db?", "db12"))
  #expect(globMatch("[!a]x", "bx") && !globMatch("[!a]x", "ax"))
  #expect(globMatch("*", "") && globMatch("**a", "a"))
}
