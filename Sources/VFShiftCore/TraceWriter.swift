/// The one writer of the text form (docs/trace-format.md). `Trace.render`
/// and `vfshift record` both stream through it, so a rendered trace and a
/// recorded one are written alike and read back alike.
///
/// VMs go by their index (in `Trace.vms`, or in order of first sighting
/// for the recorder); each gets its key when it is first declared, so a
/// stream can be written without knowing its VMs up front.
public struct TraceWriter: Sendable {
  /// Each VM's key, by index; nil until the VM is declared.
  private var keys: [String?] = []
  private var taken = Set<String>()
  private var alive: [Bool] = []
  private var inCycle: [Bool] = []

  public init() {}

  /// `version` 2 for a stream that may carry contention (docs/trace-format.md, "Versions").
  public static func header(version: Int = 1, source: String, intervalSeconds: Double, poolSizes: [String: Int]) -> String {
    var out = "\(Trace.magic) \(version)\n"
    if !source.isEmpty { out += "source \(encodeField(source))\n" }
    out += "interval \(fmt(intervalSeconds))\n"
    for (name, n) in poolSizes.sorted(by: { $0.key < $1.key }) { out += "pool \(encodeField(name)) \(n)\n" }
    return out
  }

  /// One cycle: VMs that left retired (by index), newcomers declared and
  /// returning ones brought back just before the `c` line, then the samples.
  /// A stale reading is no fresh reading: it gets no `s` line.
  public mutating func cycle(at: Instant, present: [Int32], identity: (Int32) -> VMIdentity,
                             samples: some Sequence<TraceSample>) -> String {
    var out = ""
    let top = (present.max().map { Int($0) + 1 } ?? 0)
    if top > keys.count { grow(to: top) }
    for vm in present { inCycle[Int(vm)] = true }
    for vm in alive.indices where alive[vm] && !inCycle[vm] { out += "gone \(keys[vm]!)\n"; alive[vm] = false }
    for vm in present where !alive[Int(vm)] { out += bringIn(Int(vm), identity(vm)) }
    for vm in present { inCycle[Int(vm)] = false }
    out += "c \(at.seconds)\n"
    for sample in samples {
      if case .stale = sample.reading { continue }
      out += TraceWriter.sampleLine(keys[Int(sample.vm)]!, sample.reading, contention: sample.contention)
    }
    return out
  }

  /// After the last cycle: VMs never present are still declared (and retired
  /// at once), so the trace keeps every VM it was given.
  public mutating func undeclared(_ vms: [VMIdentity]) -> String {
    if vms.count > keys.count { grow(to: vms.count) }
    var out = ""
    for vm in vms.indices where keys[vm] == nil { out += bringIn(vm, vms[vm]) + "gone \(keys[vm]!)\n"; alive[vm] = false }
    return out
  }

  private mutating func grow(to n: Int) {
    keys.append(contentsOf: repeatElement(nil, count: n - keys.count))
    alive.append(contentsOf: repeatElement(false, count: n - alive.count))
    inCycle.append(contentsOf: repeatElement(false, count: n - inCycle.count))
  }

  private mutating func bringIn(_ vm: Int, _ id: VMIdentity) -> String {
    alive[vm] = true
    if let key = keys[vm] { return "back \(key)\n" }
    let key = TraceWriter.uniqueKey(for: id.name, taken: &taken)
    keys[vm] = key
    var line = "vm \(key) uuid=\(encodeField(id.uuid))"
    if key != encodeField(id.name) { line += " name=\(encodeField(id.name))" }
    if let label = id.label { line += " label=\(encodeField(label))" }
    return line + "\n"
  }

  /// The key a VM goes by: its name, or, when another VM of the trace already
  /// has that name (a domain re-created under its old name has a new UUID),
  /// the name with `~2`, `~3`, … — a repeated key would make the whole trace
  /// unreadable.
  static func uniqueKey(for name: String, taken: inout Set<String>) -> String {
    let key = encodeField(name)
    if taken.insert(key).inserted { return key }
    var n = 2
    while !taken.insert("\(key)~\(n)").inserted { n += 1 }
    return "\(key)~\(n)"
  }

  /// A sample's line; the contention field only when there is a figure.
  static func sampleLine(_ key: String, _ reading: CounterReading, contention: Double? = nil) -> String {
    let tail = contention.map { " \($0)\n" } ?? "\n"
    switch reading {
    case .unknown, .stale: return "s 0 \(key) ?" + tail
    case let .known(source, c, at):
      return "s \(at.seconds) \(key) \(encodeField(source)) \(c.rxBytes) \(c.txBytes) "
        + "\(c.rxPackets.map(String.init) ?? "-") \(c.txPackets.map(String.init) ?? "-")" + tail
    }
  }
}
