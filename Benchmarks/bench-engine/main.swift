// Engine benchmark: replay throughput (VM-samples/s) and one decide step for
// 1,000 VMs, each against its target, with the stable-order inventory (the
// agent's case) side by side with a shuffled one (every VM found by hash).
// Run: swift run -c release bench-engine
//      bench-engine --replay-once [POLICY]   each replay once, no timing, nothing else:
//                                   for valgrind --tool=callgrind, which counts
//                                   instructions (repeatable on a busy machine)
import Foundation
import VFShiftCore
import VFShiftFiles

func seconds(_ body: () -> Void) -> Double {
  let start = DispatchTime.now().uptimeNanoseconds
  body()
  return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

guard let data = bundledDataDirectory() else { fatalError("bundled policies not found; set VFSHIFT_DATA") }
let policies = try ["paper-multinetwork", "all-sriov", "general"].map { try loadPolicy("\(data)/policies/\($0).json") }
let traces = try ["bitbrains-8vm", "paper-8vm"].map { try loadTrace("\(data)/policies/traces/\($0).trace") }
  + [PaperScenario.trace(seconds: 20_000, seed: 7)]

if CommandLine.arguments.dropFirst().first == "--replay-once" {
  // An optional second argument keeps only the policy of that name.
  let only = CommandLine.arguments.dropFirst(2).first
  var samples = 0
  for trace in traces {
    for policy in policies where only == nil || policy.name == only { samples += replay(trace, policy: policy).vmSamples }
  }
  print("{\"replayedVMSamples\":\(samples)}")
  exit(0)
}

print("replay throughput (release, one core)")
print("trace                     policy                  VM-samples   seconds   M VM-samples/s")
var replayFigures: [[String: Any]] = []
var worstRate = Double.infinity
for (t, trace) in traces.enumerated() {
  for policy in policies {
    _ = replay(trace, policy: policy)  // warm-up
    var best = Double.infinity
    for _ in 0..<3 { best = min(best, seconds { _ = replay(trace, policy: policy) }) }
    let rate = Double(trace.samples.count) / best
    worstRate = min(worstRate, rate)
    let name = ["bitbrains-8vm", "paper-8vm", "paper-20000s"][t]
    print(name.padding(toLength: 26, withPad: " ", startingAt: 0) + policy.name.padding(toLength: 22, withPad: " ", startingAt: 0)
      + String(format: "%12d %9.4f %16.2f", trace.samples.count, best, rate / 1e6))
    replayFigures.append(["trace": name, "policy": policy.name, "vmSamplesPerSecond": rate])
  }
}

// One decide step for 1,000 VMs: traffic that keeps a few dozen VMs
// intensive, so ranking, margins and holds all run.
let vmCount = 1_000
let policy = policies[2]
let ids = (0..<vmCount).map { VMIdentity(uuid: "00000000-0000-4000-8000-\(String(format: "%012d", $0))", name: "vm\($0)") }
func observations(_ cycle: Int, order: [Int]) -> Observation {
  Observation(vms: order.map { v in
    let busy = (v + cycle / 30) % 40 == 0
    let bytes = UInt64(cycle) * (busy ? 5_000_000 : 20_000) + UInt64(v)
    return VMObservation(identity: ids[v], placement: .virtio, reading: .known(
      source: "vnet\(v)", counters: VMCounters(rxBytes: bytes, txBytes: bytes / 10, rxPackets: bytes / 1000, txPackets: bytes / 10_000),
      at: Instant(seconds: Double(cycle))))
  }, pools: ["default": PoolCapacity(total: 8)])
}
func decideCost(shuffled: Bool) -> Double {
  var state = EngineState()
  var rng = SplitMix64(seed: 1)
  var order = Array(0..<vmCount)
  let cycles = 2_000
  var inputs: [Observation] = []
  for c in 0..<cycles {
    if shuffled { for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) } }
    inputs.append(observations(c + 1, order: order))
  }
  var total = 0.0
  for (c, o) in inputs.enumerated() {
    let t = seconds { _ = decide(&state, policy: policy, observation: o, now: Instant(seconds: Double(c + 1))) }
    if c >= 100 { total += t }  // after warm-up
  }
  return total / Double(cycles - 100)
}
let stable = decideCost(shuffled: false)
let shuffled = decideCost(shuffled: true)
print("\none decide step, \(vmCount) VMs (policy general, mean of 1,900 cycles)")
print(String(format: "  inventory in the same order each cycle: %8.1f µs", stable * 1e6))
print(String(format: "  inventory shuffled each cycle:          %8.1f µs  (%.2f× the stable order)", shuffled * 1e6, shuffled / stable))
print(String(format: "\ntargets: replay ≥ 5 M VM-samples/s → worst %.2f M (%.1f× the target); decide ≤ 200 µs → %.1f µs (%.1f× under)",
             worstRate / 1e6, worstRate / 5e6, stable * 1e6, 200e-6 / stable))
let json: [String: Any] = [
  "replay": replayFigures, "worstReplayVMSamplesPerSecond": worstRate, "replayTargetRatio": worstRate / 5e6,
  "decide1000VMsMicroseconds": stable * 1e6, "decide1000VMsShuffledMicroseconds": shuffled * 1e6,
  "decideTargetRatio": 200e-6 / stable,
]
print(String(data: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), encoding: .utf8)!)
