import Foundation
import VFShiftCore
import VFShiftAgent
import VFShiftFiles

func whatif(_ argv: [String]) throws -> ExitCode {
  let args = try Arguments(argv, command: "whatif", valued: ["--trace", "--policy", "--vfs", "--report", "--host-cores"],
                           flags: ["--json", "--strict"])
  guard args.positionals.isEmpty else {
    throw UsageError(message: "unexpected argument '\(args.positionals[0])' (the trace goes after --trace)", command: "whatif")
  }
  var tracePaths = args.values("--trace")
  var policyPaths = args.values("--policy")
  if tracePaths.isEmpty || policyPaths.isEmpty {
    guard let data = bundledDataDirectory() else {
      printError("error: no bundled policies found; give --trace and --policy (or set VFSHIFT_DATA)")
      return .failure
    }
    if tracePaths.isEmpty { tracePaths = ["\(data)/policies/traces/bitbrains-8vm.trace"] }
    if policyPaths.isEmpty {
      policyPaths = ["paper-multinetwork", "all-sriov", "general"].map { "\(data)/policies/\($0).json" }
    }
  }
  let vfs = try args.int("--vfs")
  let hostCores = try hostCoresOption(args)
  let reportPath = try args.value("--report")
  if let reportPath { try checkWritable(reportPath) }
  var policies: [Policy] = []
  var invalid = false
  for path in policyPaths {
    do { policies.append(try loadPolicy(path)) } catch {
      printErrors(error)
      invalid = true
    }
  }
  if invalid { return .failure }
  let (trace, inputs) = try loadTrace(tracePaths, hostCores: hostCores)
  guard warnAbout(inputs, strict: args.flags.contains("--strict")) else { return .failure }
  let tracePath = tracePaths.joined(separator: ", ")
  let long = trace.samples.count > 200_000
  var reports: [ReplayReport] = []
  for policy in policies {
    let name = policy.name
    let cycles = trace.cycles.count
    var progress: (@Sendable (Double) -> Void)?
    if long {
      progress = { (f: Double) -> Void in
        printError("whatif: \(name): \(Int((f * 100).rounded())) % of \(cycles) cycles")
      }
    }
    reports.append(replay(trace, policy: policy, options: ReplayOptions(vfsPerPool: vfs, progress: progress,
                                                           timelineColumns: reportPath == nil ? nil : reportColumns)))
  }
  for r in reports where !r.ambiguousVMs.isEmpty {
    for (vm, classes) in r.ambiguousVMs.sorted(by: { $0.key < $1.key }) {
      printError("warning: \(r.policy): VM '\(vm)' is matched by classes \(classes.joined(separator: " and ")); it is left unmanaged")
    }
  }
  if args.flags.contains("--json") {
    print(whatifJSON(trace: trace, path: tracePath, inputs: inputs, reports: reports))
  } else {
    print(whatifTable(trace: trace, path: tracePath, inputs: inputs, reports: reports))
  }
  if let reportPath {
    try writeOutput(whatifHTML(trace: trace, path: tracePath, reports: reports), to: reportPath)
    printError("whatif: report written to \(reportPath)")
  }
  return .ok
}

func percent(_ x: Double?) -> String { x.map { String(format: "%.1f %%", $0 * 100) } ?? "—" }
func seconds(_ x: Double?) -> String { x.map { $0 >= 120 ? String(format: "%.1f min", $0 / 60) : String(format: "%.0f s", $0) } ?? "—" }

/// Each file an import left out that may have held expected data, on stderr;
/// with `strict` they are errors. False when the command must fail.
func warnAbout(_ inputs: TraceInputs, strict: Bool) -> Bool {
  for w in inputs.warnings { printError("\(strict ? "error" : "warning"): \(w.file): \(w.reason)\(strict ? "" : " (left out)")") }
  if strict && !inputs.warnings.isEmpty {
    printError("error: \(inputs.warnings.count) of \(inputs.files) files gave no VM (--strict)")
    return false
  }
  return true
}

/// The accounting of an import: files found, VMs imported, and every file
/// left out with its reason (files left out for one reason share a line).
func accountingLines(_ inputs: TraceInputs) -> [String] {
  var lines = ["inputs: \(inputs.files) file\(inputs.files == 1 ? "" : "s") found, \(inputs.vms) VMs imported, "
    + (inputs.skipped.isEmpty ? "none skipped" : "\(inputs.skipped.count) skipped:")]
  var reasons: [String] = []
  var files: [String: [String]] = [:]
  for s in inputs.skipped {
    if files[s.reason] == nil { reasons.append(s.reason) }
    files[s.reason, default: []].append(s.file)
  }
  for r in reasons {
    let f = files[r]!
    lines.append(f.count == 1 ? "  \(f[0]): \(r)" : "  \(f.count) files, \(r): \(f.joined(separator: ", "))")
  }
  return lines
}

func whatifTable(trace: Trace, path: String, inputs: TraceInputs, reports: [ReplayReport]) -> String {
  let span = (trace.cycles.last?.at.seconds ?? 0) - (trace.cycles.first?.at.seconds ?? 0)
  var out = "what-if: \(path)\n" + accountingLines(inputs).map { "  \($0)\n" }.joined() + "  \(trace.vms.count) VMs, \(trace.cycles.count) cycles of \(fmtSeconds(trace.intervalSeconds)), "
    + "\(fmtSeconds(span)) of traffic, \(trace.samples.count) VM-samples\n"
  if !trace.source.isEmpty && trace.source != path { out += "  source: \(trace.source)\n" }
  out += "\n"
  let rows = whatifRows(reports)
  let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
  for (i, r) in rows.enumerated() {
    out += r.enumerated().map { c, cell in
      c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
        : String(repeating: " ", count: widths[c] - cell.count) + cell
    }.joined(separator: "   ") + "\n"
    if i == 0 { out += String(repeating: "─", count: widths.reduce(0, +) + 3 * (widths.count - 1)) + "\n" }
  }
  out += "\n" + oracleNote
  return out
}

let oracleNote = "Reactive bound: each interval, the pool's busiest eligible VMs of the interval before ride its VFs, at no swap cost"
  + " — the best a causal policy without forecasting can do.\n"
  + "Oracle: each interval, the pool's busiest eligible VMs ride its VFs, at no swap cost — an upper bound."

/// The summary's rows, a header of policy names first: the text table and the
/// HTML report show the same figures.
func whatifRows(_ reports: [ReplayReport]) -> [[String]] {
  var rows: [[String]] = [["", ] + reports.map(\.policy)]
  func row(_ label: String, _ f: (ReplayReport) -> String) { rows.append([label] + reports.map(f)) }
  row("managed VMs") { "\($0.managedVMs)" }
  row("usable VFs (cap)") { "\($0.usableVFs)" }
  row("swaps") { "\($0.swapCount)" }
  row("flaps (back within max(dwell, 5 min))") { "\($0.flaps)" }
  row("swaps per VM per 10 min") { String(format: "%.3f", $0.swapsPerVMPer10Min) }
  row("VF occupancy (mean of usable)") { percent($0.occupancy) }
  row("time to promote, median") { seconds($0.medianPromoteDelaySeconds) }
  row("time to promote, p90") { seconds($0.p90PromoteDelaySeconds) }
  row("bursts over before promotion") { "\($0.missedBursts)" }
  row("eligible VMs' bytes on a VF") { percent($0.eligibleVFByteShare) }
  row("  weighted by CPU contention") { percent($0.contentionWeightedEligibleVFByteShare) }
  row("  reactive bound, same caps") { percent($0.reactiveEligibleVFByteShare) }
  row("  oracle, same caps") { percent($0.oracleEligibleVFByteShare) }
  row("  policy / oracle") { r in
    guard let p = r.eligibleVFByteShare, let o = r.oracleEligibleVFByteShare, o > 0 else { return "—" }
    return String(format: "%.2f", p / o)
  }
  var classNames: [String] = []
  for r in reports { for c in r.classes where !classNames.contains(c.name) { classNames.append(c.name) } }
  for name in classNames {
    row("class \(name): VMs") { r in r.classes.first { $0.name == name }.map { "\($0.vms)" } ?? "—" }
    row("  bytes on a VF") { r in percent(r.classes.first { $0.name == name }?.byteShare) }
    row("  packets on a VF") { r in percent(r.classes.first { $0.name == name }?.packetShare) }
  }
  return rows
}

func fmtSeconds(_ s: Double) -> String {
  if s >= 86400 { return String(format: "%.1f days", s / 86400) }
  if s >= 3600 { return String(format: "%.1f h", s / 3600) }
  if s >= 60 { return String(format: "%.1f min", s / 60) }
  return String(format: "%g s", s)
}

struct WhatifJSON: Encodable {
  struct TraceInfo: Encodable { var path: String; var source: String; var vms: Int; var cycles: Int; var intervalSeconds: Double; var vmSamples: Int }
  struct ClassJSON: Encodable { var name: String; var vms: Int; var bytes: Double; var vfByteShare: Double?; var packets: Double; var vfPacketShare: Double? }
  struct PolicyJSON: Encodable {
    var name: String; var managedVMs: Int; var usableVFs: Int; var swaps: Int; var flaps: Int
    var swapsPerVMPer10Min: Double; var vfOccupancy: Double?
    var medianPromoteDelaySeconds: Double?; var p90PromoteDelaySeconds: Double?; var missedBursts: Int
    var eligibleVFByteShare: Double?; var reactiveEligibleVFByteShare: Double?; var oracleEligibleVFByteShare: Double?
    /// Written as null when there is no figure: a reader sees the field exists.
    var contentionWeightedEligibleVFByteShare: NullableNumber
    var shareOfOracle: Double?
    var classes: [ClassJSON]
    var ambiguousVMs: [String: [String]]
  }
  struct SkippedJSON: Encodable { var file: String; var reason: String }
  struct InputsJSON: Encodable { var files: Int; var vms: Int; var skipped: [SkippedJSON] }
  var trace: TraceInfo
  var inputs: InputsJSON
  var policies: [PolicyJSON]
}

/// A number, or an explicit null (the synthesised encoder leaves a nil Optional out).
struct NullableNumber: Encodable {
  var value: Double?
  init(_ value: Double?) { self.value = value }
  func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    if let value { try c.encode(value) } else { try c.encodeNil() }
  }
}

/// `--host-cores N`, a whole number > 0.
func hostCoresOption(_ args: Arguments) throws(UsageError) -> Int? {
  guard let n = try args.int("--host-cores") else { return nil }
  guard n > 0 else { throw UsageError(message: "--host-cores must be a whole number > 0, got '\(n)'", command: args.command) }
  return n
}

func whatifJSON(trace: Trace, path: String, inputs: TraceInputs, reports: [ReplayReport]) -> String {
  let doc = WhatifJSON(
    trace: .init(path: path, source: trace.source, vms: trace.vms.count, cycles: trace.cycles.count,
                 intervalSeconds: trace.intervalSeconds, vmSamples: trace.samples.count),
    inputs: .init(files: inputs.files, vms: inputs.vms, skipped: inputs.skipped.map { .init(file: $0.file, reason: $0.reason) }),
    policies: reports.map { r in
      .init(name: r.policy, managedVMs: r.managedVMs, usableVFs: r.usableVFs, swaps: r.swapCount, flaps: r.flaps,
            swapsPerVMPer10Min: r.swapsPerVMPer10Min, vfOccupancy: r.occupancy,
            medianPromoteDelaySeconds: r.medianPromoteDelaySeconds, p90PromoteDelaySeconds: r.p90PromoteDelaySeconds,
            missedBursts: r.missedBursts,
            eligibleVFByteShare: r.eligibleVFByteShare, reactiveEligibleVFByteShare: r.reactiveEligibleVFByteShare,
            oracleEligibleVFByteShare: r.oracleEligibleVFByteShare,
            contentionWeightedEligibleVFByteShare: NullableNumber(r.contentionWeightedEligibleVFByteShare),
            shareOfOracle: r.eligibleVFByteShare.flatMap { p in r.oracleEligibleVFByteShare.map { $0 > 0 ? p / $0 : 0 } },
            classes: r.classes.map { .init(name: $0.name, vms: $0.vms, bytes: $0.bytes, vfByteShare: $0.byteShare,
                                           packets: $0.packets, vfPacketShare: $0.packetShare) },
            ambiguousVMs: r.ambiguousVMs)
    })
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  return String(data: try! encoder.encode(doc), encoding: .utf8)!
}

func policyCheck(_ argv: [String]) throws -> ExitCode {
  let args = try Arguments(argv, command: "policy check", valued: [], flags: [])
  guard !args.positionals.isEmpty else { throw UsageError(message: "give at least one policy file", command: "policy check") }
  var ok = true
  for path in args.positionals {
    do {
      let p = try loadPolicy(path)
      print("\(path): ok — policy '\(p.name)', \(p.pools.count) pool(s), \(p.classes.count) class(es)")
    } catch {
      printError("\(error)")
      ok = false
    }
  }
  return ok ? .ok : .failure
}

/// Fails before a long replay, not after it, when the report could not be written.
func checkWritable(_ path: String) throws {
  let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
    throw FileError(path: path, reason: "cannot be written: directory \(dir) does not exist")
  }
  guard FileManager.default.isWritableFile(atPath: dir) else {
    throw FileError(path: path, reason: "cannot be written: directory \(dir) is not writable")
  }
}

func writeOutput(_ text: String, to path: String) throws {
  if path == "-" { print(text, terminator: ""); return }
  do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
    throw FileError(path: path, reason: "cannot be written: \(error.localizedDescription)")
  }
}

func traceImport(_ argv: [String]) throws -> ExitCode {
  let args = try Arguments(argv, command: "trace import", valued: ["--out", "--vms", "--rename", "--label", "--host-cores"],
                           flags: ["--strict"])
  guard !args.positionals.isEmpty else { throw UsageError(message: "give a GWA-T-12 directory", command: "trace import") }
  guard let out = try args.value("--out") else { throw UsageError(message: "--out is required", command: "trace import") }
  let keep = try args.value("--vms").map { Set($0.split(separator: ",").map(String.init)) }
  func pairs(_ name: String) throws -> [String: String] {
    var d: [String: String] = [:]
    for v in args.values(name) {
      let p = v.split(separator: "=", maxSplits: 1).map(String.init)
      guard p.count == 2 else { throw UsageError(message: "\(name) takes VM=VALUE, got '\(v)'", command: "trace import") }
      d[p[0]] = p[1]
    }
    return d
  }
  let renames = try pairs("--rename"), labels = try pairs("--label")
  let hostCores = try hostCoresOption(args)
  let (trace, inputs) = try loadTrace(args.positionals, identity: { stem in
    if let keep, !keep.contains(stem) { return nil }
    let name = renames[stem] ?? stem
    return VMIdentity(uuid: name, name: name, label: labels[stem])
  }, hostCores: hostCores)
  for line in accountingLines(inputs) { printError("trace import: \(line)") }
  guard warnAbout(inputs, strict: args.flags.contains("--strict")) else { return .failure }
  var t = trace
  let dir = args.positionals.map { URL(fileURLWithPath: $0).standardized.pathComponents.suffix(2).joined(separator: "/") }
    .joined(separator: ", ")
  let stems = Dictionary(renames.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
  t.source = "GWA-T-12 (Grid Workloads Archive, Bitbrains), \(dir), files "
    + trace.vms.map { vm in stems[vm.name].map { "\($0).csv as \(vm.name)" } ?? "\(vm.name).csv" }.joined(separator: ", ")
    + (hostCores.map { "; contention estimated for a host of \($0) cores (a model, not a measurement)" } ?? "")
  try writeOutput(t.render(), to: out)
  printError("trace import: \(t.vms.count) VMs, \(t.cycles.count) cycles, \(t.samples.count) samples → \(out)")
  return .ok
}

func traceScenario(_ argv: [String]) throws -> ExitCode {
  let args = try Arguments(argv, command: "trace scenario", valued: ["--out", "--seconds", "--seed"], flags: [])
  guard let out = try args.value("--out") else { throw UsageError(message: "--out is required", command: "trace scenario") }
  let trace = PaperScenario.trace(seconds: try args.int("--seconds") ?? 3600, seed: UInt64(try args.int("--seed") ?? 2022))
  try writeOutput(trace.render(), to: out)
  return .ok
}
