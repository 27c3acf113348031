/// The paper's scenario as a synthetic trace: 8 VMs, VMs 1–5 low QoS and
/// VMs 6–8 high QoS, each alternating idle spells and iperf-like bursts.
/// Deterministic for a given seed, so tests and the bundled file agree.
public enum PaperScenario {
  public static func trace(seconds: Int = 3600, seed: UInt64 = 2022) -> Trace {
    var rng = SplitMix64(seed: seed)
    var trace = Trace(source: "synthetic: the paper's 8-VM scenario (5 low + 3 high QoS), iperf-like bursts, seed \(seed)",
                      intervalSeconds: 1, poolSizes: ["x540": 8])
    for i in 1...8 {
      let name = "vm\(i)"
      trace.vms.append(VMIdentity(uuid: "00000000-0000-4000-8000-00000000000\(i)", name: name,
                                  label: i <= 5 ? "low" : "high"))
    }
    var rx = [UInt64](repeating: 0, count: 8), tx = rx, rp = rx, tp = rx
    // Each VM is idle or in a burst; a burst has a rate and a packet size
    // (small TCP windows: many small packets — where SR-IOV gains most).
    var burstLeft = [Int](repeating: 0, count: 8)
    var idleLeft = (0..<8).map { _ in Int(rng.next() % 300) }
    var rate = [Double](repeating: 0, count: 8), packetSize = [Double](repeating: 1500, count: 8)
    for t in 1...seconds {
      let start = trace.samples.count
      for v in 0..<8 {
        if burstLeft[v] > 0 { burstLeft[v] -= 1 } else if idleLeft[v] > 0 { idleLeft[v] -= 1 } else {
          burstLeft[v] = 30 + Int(rng.next() % 270)
          idleLeft[v] = 60 + Int(rng.next() % (v >= 5 ? 240 : 600))
          rate[v] = Double(5 + rng.next() % 95) * 1e6
          packetSize[v] = [256.0, 512, 1448, 1448][Int(rng.next() % 4)]
        }
        let bytes = burstLeft[v] > 0 ? rate[v] * (0.8 + 0.4 * rng.unit()) : 2_000 * rng.unit()
        let packets = bytes / packetSize[v]
        // iperf-like: mostly one way (the VM receives), with ACKs back.
        rx[v] += UInt64(bytes * 0.97); tx[v] += UInt64(bytes * 0.03)
        rp[v] += UInt64(packets * 0.6); tp[v] += UInt64(packets * 0.4)
        trace.samples.append(TraceSample(vm: Int32(v), reading: .known(
          source: "vnet\(v)", counters: VMCounters(rxBytes: rx[v], txBytes: tx[v], rxPackets: rp[v], txPackets: tp[v]),
          at: Instant(seconds: Double(t)))))
      }
      trace.cycles.append(TraceCycle(at: Instant(seconds: Double(t)), samples: start..<trace.samples.count,
                                     present: (0..<8).map { Int32($0) }))
    }
    return trace
  }
}

/// A small, fast, seedable generator (Steele et al.'s SplitMix64), so the
/// scenario is the same on every machine.
public struct SplitMix64: Sendable {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
