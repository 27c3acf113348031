/// Imports the Grid Workloads Archive's GWA-T-12 ("Bitbrains") per-VM files
/// as published: one `<vm>.csv` per VM, `;`+tab separated, one header line.
/// Facts the published description gets wrong (see docs/trace-format.md):
/// timestamps are Unix seconds despite the "[ms]" header; throughputs are
/// averages over the 300 s before the timestamp, in KB/s with 1 KB = 1,000 bytes.
public enum GWAT12 {
  public static let timestampColumn = "Timestamp [ms]"
  public static let receivedColumn = "Network received throughput [KB/s]"
  public static let transmittedColumn = "Network transmitted throughput [KB/s]"
  public static let coresColumn = "CPU cores"
  public static let cpuUsageColumn = "CPU usage [%]"
  public static let intervalSeconds = 300.0
  /// Ten years of 300 s cycles. The cycles are allocated up front, so a span
  /// beyond this (timestamps in milliseconds, or one wild row) must be an
  /// error, not an allocation that exhausts memory.
  static let maxCycles = 10 * 365 * 24 * 12

  struct Row {
    var line: Int
    var t: Double
    var rxKBps: Double
    var txKBps: Double
    /// CPU cores the VM used over the row's interval (cores × usage %), when asked for.
    var cores = 0.0
  }

  public struct File: Sendable {
    public var name: String
    public var text: String
    public init(name: String, text: String) { self.name = name; self.text = text }
  }

  /// A file left out of an import, and why. A warning is a file that may have
  /// held data the operator expected (`--strict` makes it an error); a file
  /// the operator left out (`--vms`) is not.
  public struct Skipped: Sendable, Equatable {
    public var file: String
    public var reason: String
    public var warning: Bool
    public init(file: String, reason: String, warning: Bool) { self.file = file; self.reason = reason; self.warning = warning }
  }

  /// Where the columns vfshift reads are: found by their names in the header,
  /// so a tool that reorders or drops other columns changes nothing.
  struct Columns { var count: Int; var t: Int; var rx: Int; var tx: Int; var cpu: (cores: Int, usage: Int)? }

  static func headerFields(_ line: Substring) -> [Substring] {
    line.split(separator: ";", omittingEmptySubsequences: false).map(\.trimmingWhitespace)
  }

  /// Whether a file's first line is a GWA-T-12 header: one of its
  /// `;`-separated fields is `Timestamp [ms]` (a leading byte-order mark aside).
  public static func looksLike(_ firstLine: Substring) -> Bool {
    var line = firstLine
    if line.unicodeScalars.first == "\u{FEFF}" { line = Substring(line.unicodeScalars.dropFirst()) }
    return headerFields(line).contains(timestampColumn[...])
  }

  /// One VM's rows: (timestamp seconds, received KB/s, transmitted KB/s).
  public static func rows(_ file: File) throws(TraceError) -> [(t: Double, rxKBps: Double, txKBps: Double)] {
    switch try read(file, cpu: false) {
    case .rows(let rows): return rows.map { ($0.t, $0.rxKBps, $0.txKBps) }
    case .skipped(let reason): throw TraceError(file: file.name, line: 1, reason: reason)
    }
  }

  enum Read { case rows([Row]), skipped(String) }

  /// A file's rows, or why it gives none. Whatever the file holds past a
  /// GWA-T-12 header must be rows: anything else is an error at its line.
  /// `cpu`: also read each row's CPU use (for `hostCores`); a file without
  /// those columns is then an error, not a file left out.
  static func read(_ file: File, cpu: Bool) throws(TraceError) -> Read {
    let lines = try textLines(file.text, file: file.name, ends: .anyConvention)
    guard let header = lines.first, looksLike(header.text) else {
      return .skipped("not a GWA-T-12 file: the header has no '\(timestampColumn)' field")
    }
    let names = headerFields(header.text)
    guard let t = names.firstIndex(of: timestampColumn[...]) else { return .skipped("no timestamp column") }
    guard let rx = names.firstIndex(of: receivedColumn[...]), let tx = names.firstIndex(of: transmittedColumn[...]) else {
      return .skipped("no network columns: the header has no '\(receivedColumn)' and '\(transmittedColumn)'")
    }
    var columns = Columns(count: names.count, t: t, rx: rx, tx: tx, cpu: nil)
    if cpu {
      guard let c = names.firstIndex(of: coresColumn[...]), let u = names.firstIndex(of: cpuUsageColumn[...]) else {
        throw TraceError(file: file.name, line: header.number, reason: "no CPU columns: estimating contention "
          + "(--host-cores) needs '\(coresColumn)' and '\(cpuUsageColumn)' in the header")
      }
      columns.cpu = (c, u)
    }
    var out: [Row] = []
    for line in lines.dropFirst() {
      if line.text.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
      let fields = line.text.split(separator: ";", omittingEmptySubsequences: false)
      // A header among the rows fails as a row first; only then is it worth
      // telling apart.
      func fail(_ reason: String) -> TraceError {
        TraceError(file: file.name, line: line.number,
                   reason: looksLike(line.text) ? "a second header line (two files joined into one?)" : reason)
      }
      guard fields.count == columns.count else {
        throw fail("\(fields.count) fields, expected \(columns.count) separated by ';' (truncated row?)")
      }
      func number(_ i: Int, _ what: String) throws(TraceError) -> Double {
        let text = fields[i].trimmingWhitespace
        guard let d = Double(text), d.isFinite, d >= 0 else { throw fail("\(what) '\(text)' is not a number ≥ 0") }
        return d
      }
      var row = Row(line: line.number, t: try number(columns.t, "timestamp"),
                    rxKBps: try number(columns.rx, "network received KB/s"),
                    txKBps: try number(columns.tx, "network transmitted KB/s"))
      if let (c, u) = columns.cpu {
        row.cores = try number(c, "CPU cores") * (try number(u, "CPU usage %")) / 100
        guard row.cores.isFinite else { throw fail("CPU cores × CPU usage % is beyond any number of cores") }
      }
      // The archive's rows never go back in time (equal timestamps occur);
      // rows that do are two files' rows joined, or sorted by another column.
      if let p = out.last, row.t < p.t {
        throw TraceError(file: file.name, line: line.number, reason: "timestamp \(seconds(row.t)) is before line \(p.line)'s (\(seconds(p.t))): rows out of time order "
          + "(two files joined, or sorted by another column?)")
      }
      out.append(row)
    }
    return out.isEmpty ? .skipped("no rows after the header") : .rows(out)
  }

  /// Builds a trace from GWA-T-12 files. `identity` names a VM (and may label
  /// it) from its file's stem; `nil` leaves it out.
  /// Every file must give a VM: a file that gives none is an error naming it
  /// (the strict form of the import below).
  public static func trace(_ files: [File], source: String,
                           identity: (String) -> VMIdentity? = { VMIdentity(uuid: $0, name: $0) }, hostCores: Int? = nil)
    throws(TraceError) -> Trace {
    var skipped: [Skipped] = []
    let trace = try trace(files, source: source, identity: identity, hostCores: hostCores, skipped: &skipped)
    if let s = skipped.first(where: \.warning) { throw TraceError(file: s.file, line: 1, reason: s.reason) }
    return trace
  }

  /// Files of one stem (one VM's file split by time, e.g. the archive's month
  /// directories) are one VM, their rows in time order; parts that overlap in
  /// time are refused. Files that give nothing are appended to `skipped`.
  /// `hostCores`: give every sample the contention `estimatedContention`
  /// derives from the VMs' CPU use, as if they shared a host of that many cores.
  public static func trace(_ files: [File], source: String, identity: (String) -> VMIdentity?, hostCores: Int? = nil,
                           skipped: inout [Skipped]) throws(TraceError) -> Trace {
    var perVM: [(id: VMIdentity, file: String, rows: [Row])] = []
    var byStem: [String: Int] = [:]
    for file in files.sorted(by: { stemOrder($0.name, $1.name) || (stem($0.name) == stem($1.name) && $0.name < $1.name) }) {
      guard let id = identity(stem(file.name)) else {
        skipped.append(Skipped(file: file.name, reason: "not among the VMs asked for (--vms)", warning: false))
        continue
      }
      let rows: [Row]
      switch try read(file, cpu: hostCores != nil) {
      case .skipped(let reason):
        skipped.append(Skipped(file: file.name, reason: reason, warning: true))
        continue
      case .rows(let r): rows = r
      }
      if let v = byStem[stem(file.name)] {
        let (a, b) = perVM[v].rows[0].t <= rows[0].t ? (perVM[v].rows, rows) : (rows, perVM[v].rows)
        guard a.last!.t < b[0].t else {
          throw TraceError(file: file.name, line: rows[0].line, reason: "rows overlap in time with \(perVM[v].file), "
            + "which is the same VM '\(stem(file.name))' (\(seconds(b[0].t)) is not after \(seconds(a.last!.t)))")
        }
        perVM[v].rows = a + b
        continue
      }
      byStem[stem(file.name)] = perVM.count
      perVM.append((id, file.name, rows))
    }
    guard let start = perVM.map({ $0.rows[0].t }).min(), let last = perVM.max(by: { $0.rows.last!.t < $1.rows.last!.t }) else {
      return Trace(source: source, intervalSeconds: intervalSeconds)
    }
    let end = last.rows.last!.t
    guard (end - start) / intervalSeconds < Double(maxCycles) else {
      throw TraceError(file: last.file, line: last.rows.last!.line, reason: "timestamp \(seconds(end)) is "
        + "\(seconds(end - start)) s after the first (\(seconds(start))), more than 10 years of 300 s cycles (Unix seconds expected)")
    }
    let cycleCount = Int(((end - start) / intervalSeconds).rounded()) + 1
    // Samples land on the nearest 300 s cycle; the jitter of ±1 s stays in
    // the sample's own time, so rates use the real elapsed time.
    var buckets = [[TraceSample]](repeating: [], count: cycleCount)
    // The CPU cores each cycle's samples used, in step with `buckets`.
    var cores = [[Double]](repeating: [], count: hostCores == nil ? 0 : cycleCount)
    var firstCycle = [Int](repeating: 0, count: perVM.count)
    var lastCycle = [Int](repeating: 0, count: perVM.count)
    for (v, vm) in perVM.enumerated() {
      var rx: UInt64 = 0, tx: UInt64 = 0
      var previous: Double?
      var segment = 0
      var lastK = -1
      for row in vm.rows {
        let k = Int(((row.t - start) / intervalSeconds).rounded())
        if let p = previous, row.t - p <= intervalSeconds * 1.5 {
          // Converting a Double beyond UInt64 traps; a rate that big is a bad row.
          func bytes(_ kBps: Double, _ what: String) throws(TraceError) -> UInt64 {
            guard let b = UInt64(exactly: (kBps * 1000 * (row.t - p)).rounded()) else {
              throw TraceError(file: vm.file, line: row.line, reason: "\(what) '\(kBps)' over \(seconds(row.t - p)) s "
                + "is more than a 64-bit byte counter holds")
            }
            return b
          }
          rx &+= try bytes(row.rxKBps, "network received KB/s")
          tx &+= try bytes(row.txKBps, "network transmitted KB/s")
        } else if previous != nil {
          // A gap: the averages say nothing about the missing time, so start
          // a new counter source and let the engine take it as a reset.
          segment += 1
        }
        previous = row.t
        // Two rows on one cycle (jitter): both count, the later one is the sample.
        if k == lastK, let i = buckets[k].lastIndex(where: { $0.vm == Int32(v) }) {
          buckets[k].remove(at: i)
          if hostCores != nil { cores[k].remove(at: i) }
        }
        guard k >= lastK else { continue }
        if lastK < 0 { firstCycle[v] = k }
        lastK = k
        buckets[k].append(TraceSample(vm: Int32(v), reading: .known(
          source: "gwa\(segment)", counters: VMCounters(rxBytes: rx, txBytes: tx, rxPackets: nil, txPackets: nil),
          at: Instant(seconds: row.t))))
        if hostCores != nil { cores[k].append(row.cores) }
      }
      lastCycle[v] = lastK
    }
    // Number VMs in order of first appearance, as a recorded trace would.
    let order = perVM.indices.sorted { (firstCycle[$0], $0) < (firstCycle[$1], $1) }
    let renumber = Dictionary(uniqueKeysWithValues: order.enumerated().map { (Int32($1), Int32($0)) })
    perVM = order.map { perVM[$0] }
    firstCycle = order.map { firstCycle[$0] }
    lastCycle = order.map { lastCycle[$0] }
    for k in buckets.indices { for i in buckets[k].indices { buckets[k][i].vm = renumber[buckets[k][i].vm]! } }
    if let hostCores {
      for k in buckets.indices {
        let c = estimatedContention(demand: cores[k].reduce(0, +), hostCores: hostCores)
        for i in buckets[k].indices { buckets[k][i].contention = c }
      }
    }
    var trace = Trace(version: hostCores == nil ? 1 : 2, source: source, intervalSeconds: intervalSeconds,
                      vms: perVM.map(\.id))
    trace.samples.reserveCapacity(buckets.reduce(0) { $0 + $1.count })
    for k in 0..<cycleCount {
      let begin = trace.samples.count
      trace.samples.append(contentsOf: buckets[k])
      let present = (0..<perVM.count).filter { firstCycle[$0] <= k && k <= lastCycle[$0] }.map { Int32($0) }
      trace.cycles.append(TraceCycle(at: Instant(seconds: start + Double(k) * intervalSeconds),
                                     samples: begin..<trace.samples.count, present: present))
    }
    return trace
  }

  /// A model, not a measurement (docs/trace-format.md, "Contention from CPU
  /// use"): VMs demanding `demand` cores on a host of `hostCores`, shared
  /// fairly, get min(demand, hostCores) and wait for the rest, so the share of
  /// runnable time spent waiting is max(0, demand − hostCores) / demand — the
  /// live figure's wait / (run + wait). Rounded to 4 decimals: the data's CPU
  /// figures are 5-minute means, and the trace stays short.
  public static func estimatedContention(demand: Double, hostCores: Int) -> Double {
    guard demand > 0, hostCores > 0 else { return 0 }
    // Rows each finite can still sum past any Double: all of it waits.
    guard demand.isFinite else { return 1 }
    return (max(0, demand - Double(hostCores)) / demand * 10_000).rounded() / 10_000
  }

  /// Seconds as a whole number when they are one (as the files write them).
  static func seconds(_ d: Double) -> String {
    if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
    return "\(d)"
  }

  static func stem(_ name: String) -> String {
    let base = name.split(separator: "/").last.map(String.init) ?? name
    return base.hasSuffix(".csv") ? String(base.dropLast(4)) : base
  }

  /// 2 before 10: VM files are numbered.
  static func stemOrder(_ a: String, _ b: String) -> Bool {
    let sa = stem(a), sb = stem(b)
    if let ia = Int(sa), let ib = Int(sb) { return ia < ib }
    return sa < sb
  }
}

extension Substring {
  var trimmingWhitespace: Substring {
    var s = self
    while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
    while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
    return s
  }
}
