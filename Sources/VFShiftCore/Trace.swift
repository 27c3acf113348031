/// A per-VM traffic trace: what the agent saw, cycle by cycle, as cumulative
/// counters (the way `/proc/net/dev` gives them). The text form is documented
/// in docs/trace-format.md; `vfshift record` writes it, `vfshift whatif` reads it.
public struct Trace: Sendable, Equatable {
  /// The format version the text declares (docs/trace-format.md, "Versions"):
  /// 1, or 2 when samples may carry a contention figure. `render` writes at
  /// least 2 when one does, so an older vfshift refuses the file at its first
  /// line instead of misreading a field.
  public var version: Int
  public var source: String
  public var intervalSeconds: Double
  /// VFs each pool had when the trace was recorded.
  public var poolSizes: [String: Int]
  public var vms: [VMIdentity]
  public var cycles: [TraceCycle]
  public var samples: [TraceSample]

  public init(version: Int = 1, source: String = "", intervalSeconds: Double, poolSizes: [String: Int] = [:],
              vms: [VMIdentity] = [], cycles: [TraceCycle] = [], samples: [TraceSample] = []) {
    self.version = version; self.source = source; self.intervalSeconds = intervalSeconds; self.poolSizes = poolSizes
    self.vms = vms; self.cycles = cycles; self.samples = samples
  }
}

/// One decision cycle: its clock, and which samples and VMs it saw.
public struct TraceCycle: Sendable, Equatable {
  public var at: Instant
  public var samples: Range<Int>
  /// VMs present in this cycle (by index into `vms`); a VM with no sample in
  /// a cycle it is present in had no fresh reading.
  public var present: [Int32]
  public init(at: Instant, samples: Range<Int>, present: [Int32]) {
    self.at = at; self.samples = samples; self.present = present
  }
}

public struct TraceSample: Sendable, Equatable {
  public var vm: Int32
  public var reading: CounterReading
  /// The VM's CPU contention as the cycle observed it (`VMObservation.contention`,
  /// 0 to 1); nil when not measured. Version 2 only.
  public var contention: Double?
  public init(vm: Int32, reading: CounterReading, contention: Double? = nil) {
    self.vm = vm; self.reading = reading; self.contention = contention
  }
}

public struct TraceError: Error, Sendable, Equatable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var reason: String
  public var description: String { "\(file):\(line): \(reason)" }
}

extension Trace {
  public static let magic = "vfshift-trace"
  /// The versions this vfshift reads; the last is what a trace with
  /// contention declares.
  public static let versions = 1...2
  static let versionsRead = "this vfshift reads versions 1 and 2"
  /// A version-2 sample's optional last field.
  static let contentionField = "CONTENTION"

  /// Parses the text form. Every error names the file and line.
  public static func parse(_ text: String, file: String) throws(TraceError) -> Trace {
    var trace = Trace(source: file, intervalSeconds: 1)
    var keyIndex: [Substring: Int32] = [:]
    var present: [Int32] = []
    var presentSet = Set<Int32>()
    var sawMagic = false
    var lineNumber = 0
    var cycleStart = 0
    var cycleAt: Instant?
    // Who a cycle saw is fixed at its `c` line; declarations after it count
    // from the next cycle.
    var cyclePresent: [Int32] = []
    var cyclePresentSet = Set<Int32>()
    var seenInCycle = Set<Int32>()

    func closeCycle() {
      guard let at = cycleAt else { return }
      trace.cycles.append(TraceCycle(at: at, samples: cycleStart..<trace.samples.count, present: cyclePresent))
    }

    for textLine in try textLines(text, file: file, ends: .lfOrCRLF) {
      lineNumber = textLine.number
      let line = textLine.text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
      let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
      guard let kind = f.first else { continue }
      func fail(_ reason: String) -> TraceError { TraceError(file: file, line: lineNumber, reason: reason) }
      if !sawMagic {
        guard f.count == 2, kind == magic[...] else {
          throw fail("not a vfshift trace: the first line must be '\(magic) 1' or '\(magic) 2'")
        }
        guard let v = Int(f[1]), versions.contains(v) else {
          throw fail("trace version \(f[1]) is not supported (\(versionsRead))")
        }
        trace.version = v
        sawMagic = true
        continue
      }
      switch kind {
      case "vfshift-trace":
        throw fail("a second '\(magic)' header (two traces joined into one file?)")
      case "source":
        trace.source = decodeField(f.dropFirst().joined(separator: " "))
      case "interval":
        guard f.count == 2, let s = Double(f[1]), s > 0, s.isFinite else { throw fail("interval needs one positive number of seconds") }
        trace.intervalSeconds = s
      case "pool":
        guard f.count == 3, let n = Int(f[2]), n >= 0 else { throw fail("pool needs a name and a VF count ≥ 0") }
        trace.poolSizes[decodeField(f[1])] = n
      case "vm":
        guard f.count >= 2 else { throw fail("vm needs a key") }
        guard keyIndex[f[1]] == nil else { throw fail("vm '\(f[1])' is declared twice") }
        var id = VMIdentity(uuid: "", name: decodeField(f[1]))
        for kv in f.dropFirst(2) {
          let parts = kv.split(separator: "=", maxSplits: 1)
          guard parts.count == 2 else { throw fail("vm attribute '\(kv)' is not key=value") }
          switch parts[0] {
          case "uuid": id.uuid = decodeField(parts[1])
          case "name": id.name = decodeField(parts[1])
          case "label": id.label = decodeField(parts[1])
          default: throw fail("unknown vm attribute '\(parts[0])' (known: uuid, name, label)")
          }
        }
        if id.uuid.isEmpty { id.uuid = id.name }
        let index = Int32(trace.vms.count)
        trace.vms.append(id)
        keyIndex[f[1]] = index
        present.append(index)
        presentSet.insert(index)
      case "gone":
        guard f.count == 2, let i = keyIndex[f[1]] else { throw fail("gone names no declared vm") }
        if presentSet.remove(i) != nil { present.removeAll { $0 == i } }
      case "back":
        guard f.count == 2, let i = keyIndex[f[1]] else { throw fail("back names no declared vm") }
        if presentSet.insert(i).inserted { present.append(i) }
      case "c":
        guard f.count == 2, let t = Double(f[1]), t.isFinite else { throw fail("c needs one time in seconds") }
        if let at = cycleAt, t <= at.seconds { throw fail("cycle time \(f[1]) does not move forward") }
        closeCycle()
        cycleAt = Instant(seconds: t)
        cycleStart = trace.samples.count
        cyclePresent = present
        cyclePresentSet = presentSet
        seenInCycle.removeAll(keepingCapacity: true)
      case "s":
        guard cycleAt != nil else { throw fail("a sample comes before the first cycle line 'c'") }
        guard f.count >= 3 else { throw fail("a sample needs: s TIME VM SOURCE RX_BYTES TX_BYTES RX_PACKETS TX_PACKETS") }
        guard let t = Double(f[1]), t.isFinite else { throw fail("sample time '\(f[1])' is not a number") }
        guard let vm = keyIndex[f[2]] else { throw fail("sample names vm '\(f[2])', which is not declared") }
        guard cyclePresentSet.contains(vm) else { throw fail("sample for vm '\(f[2])', which is not present in this cycle (declare it before the 'c' line)") }
        guard seenInCycle.insert(vm).inserted else { throw fail("two samples for vm '\(f[2])' in one cycle") }
        // Version 2 lets a sample end in one more field, the contention.
        let unknownLine = (f.count == 4 || f.count == 5) && f[3] == "?"
        let base = unknownLine ? 4 : 8
        var contention: Double?
        if f.count == base + 1 {
          guard trace.version >= 2 else {
            throw fail("a sample has \(f.count) fields, expected \(base); a contention field (the \(f.count)th) "
              + "needs the header '\(magic) 2'")
          }
          let text = f[base]
          guard let c = Double(text), c.isFinite else { throw fail("contention '\(text)' is not a number") }
          guard c >= 0, c <= 1 else { throw fail("contention \(text) is out of range (0 to 1)") }
          contention = c
        }
        if unknownLine {
          trace.samples.append(TraceSample(vm: vm, reading: .unknown, contention: contention))
          continue
        }
        guard f.count == 8 || (contention != nil && f.count == 9) else {
          let extra = trace.version >= 2 ? " [\(contentionField)]" : ""
          throw fail("a sample has \(f.count) fields, expected \(trace.version >= 2 ? "8 or 9" : "8") "
            + "(s TIME VM SOURCE RX_BYTES TX_BYTES RX_PACKETS TX_PACKETS\(extra)) or \(trace.version >= 2 ? "4 or 5" : "4") (s TIME VM ?\(extra))")
        }
        guard let rx = UInt64(f[4]), let tx = UInt64(f[5]) else {
          throw fail("byte counters must be whole numbers ≥ 0, got '\(f[4])' '\(f[5])'")
        }
        let rp = f[6] == "-" ? nil : UInt64(f[6]), tp = f[7] == "-" ? nil : UInt64(f[7])
        guard (rp != nil || f[6] == "-"), (tp != nil || f[7] == "-") else {
          throw fail("packet counters must be whole numbers ≥ 0 or '-', got '\(f[6])' '\(f[7])'")
        }
        let counters = VMCounters(rxBytes: rx, txBytes: tx, rxPackets: rp, txPackets: tp)
        trace.samples.append(TraceSample(vm: vm, reading: .known(source: decodeField(f[3]), counters: counters,
                                                                at: Instant(seconds: t)), contention: contention))
      default:
        throw fail("unknown line kind '\(kind)' (known: source, interval, pool, vm, gone, back, c, s)")
      }
    }
    guard sawMagic else { throw TraceError(file: file, line: 1, reason: "empty file: not a vfshift trace") }
    closeCycle()
    return trace
  }

  /// The version the text form needs: 2 when a sample carries contention.
  public var versionNeeded: Int { samples.contains { $0.contention != nil } ? 2 : 1 }

  /// The text form; `parse(render())` gives back an equal trace (when
  /// `version` is at least `versionNeeded`, as parsed traces' are).
  public func render() -> String {
    var writer = TraceWriter()
    var out = TraceWriter.header(version: max(version, versionNeeded), source: source, intervalSeconds: intervalSeconds,
                                 poolSizes: poolSizes)
    for cycle in cycles {
      out += writer.cycle(at: cycle.at, present: cycle.present, identity: { vms[Int($0)] }, samples: samples[cycle.samples])
    }
    return out + writer.undeclared(vms)
  }
}

/// Fields are whitespace-separated; names with spaces, '#' or '%' are
/// percent-encoded so every line stays one record.
public func encodeField(_ s: String) -> String {
  var out = ""
  for b in s.utf8 {
    if b <= 0x20 || b == UInt8(ascii: "%") || b == UInt8(ascii: "#") || b == UInt8(ascii: "=") || b >= 0x7F {
      out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
    } else { out.unicodeScalars.append(Unicode.Scalar(b)) }
  }
  return out
}

func decodeField<S: StringProtocol>(_ s: S) -> String {
  guard s.contains("%") else { return String(s) }
  var bytes: [UInt8] = []
  var it = Array(s.utf8)[...]
  while let b = it.popFirst() {
    if b == UInt8(ascii: "%"), it.count >= 2,
       let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
      bytes.append(v); it = it.dropFirst(2)
    } else { bytes.append(b) }
  }
  return String(decoding: bytes, as: UTF8.self)
}

extension String {
  func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
