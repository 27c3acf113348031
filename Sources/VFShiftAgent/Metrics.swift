import Foundation
import Synchronization
import VFShiftCore
import VFShiftHost

/// The agent's Prometheus metrics, rendered in the text exposition format.
/// Names follow `<namespace>_<subsystem>_<what>_<unit>`; labels stay few.
public final class Metrics: Sendable {
  struct PoolGauge: Sendable, Equatable { var capacity = 0; var used = 0; var cap = 0 }
  struct VMGauge: Sendable { var className: String; var bytesPerSecond: Double?; var packetsPerSecond: Double?; var onVF: Bool }
  struct State: Sendable, Equatable {
    var pools: [String: PoolGauge] = [:]
    var swaps: [SwapTally: Int] = [:]
    var swapDurations: [Double] = []        // bucket counts
    var swapDurationSum = 0.0
    var swapDurationCount = 0
    var cycleSeconds = 0.0
    var intervalSeconds = 0.0
    var cycles = 0
    var waiting: [String: Int] = [:]        // pool → VMs held back from it
    var detachPending: [String: Double] = [:] // VM → seconds since its swap began
    var errors: [String: Int] = [:]
    var dryRun = false
    /// Each VM on a VF: what measures it, and why it is unknown.
    var counterSources: [CounterSourceRow] = []
    /// The host's /proc/pressure/cpu "some" line, when the kernel has PSI.
    var pressure: CPUPressure?
  }
  struct CounterSourceRow: Sendable, Equatable { var vm: String; var source: String; var reason: String? }
  static let buckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
  let state = Mutex(State())
  /// The agent's engine state, read here only when someone scrapes: per-VM
  /// gauges are computed from it then, not each cycle.
  let engine: EngineCell
  /// The last exposition and what it was rendered from, so scrapes between
  /// two changes (Prometheus, or 200 at once) get the same bytes without
  /// rendering again; and the last per-VM rows, served while the cycle holds
  /// the engine: a scrape never waits for the cycle (issue #16).
  let rendered = Mutex<(state: State, engineChanges: UInt64, bytes: [UInt8])?>(nil)
  let lastRows = Mutex(EngineRows())

  public init(engine: EngineCell = EngineCell()) {
    self.engine = engine
    state.withLock { $0.swapDurations = Array(repeating: 0, count: Metrics.buckets.count) }
  }

  public func setDryRun(_ on: Bool) { state.withLock { $0.dryRun = on } }

  func observePools(_ pools: [String: (capacity: Int, used: Int, cap: Int)]) {
    state.withLock { s in
      s.pools = pools.mapValues { PoolGauge(capacity: $0.capacity, used: $0.used, cap: $0.cap) }
    }
  }

  func swapFinished(verb: Verb, outcome: String, seconds: Double) {
    state.withLock { s in
      s.swaps[SwapTally(verb: verb, outcome: outcome), default: 0] += 1
      for (i, b) in Metrics.buckets.enumerated() where seconds <= b { s.swapDurations[i] += 1 }
      s.swapDurationSum += seconds
      s.swapDurationCount += 1
    }
  }

  func cycleFinished(seconds: Double, intervalSeconds: Double) {
    state.withLock { s in s.cycleSeconds = seconds; s.intervalSeconds = intervalSeconds; s.cycles += 1 }
  }

  func observeCounterSources(_ rows: [(vm: String, source: String, reason: String?)]) {
    state.withLock { $0.counterSources = rows.map { CounterSourceRow(vm: $0.vm, source: $0.source, reason: $0.reason) } }
  }

  /// Per pool, the managed VMs that want one of its VFs and were held this cycle.
  func observeWaiting(_ byPool: [String: Int]) { state.withLock { $0.waiting = byPool } }

  /// The VMs whose journal is at detach-pending: the guest kept its old NIC
  /// past the detach deadline. Seconds since each one's swap began.
  func observeDetachPending(_ byVM: [String: Double]) { state.withLock { $0.detachPending = byVM } }

  func observeCPUPressure(_ p: CPUPressure?) { state.withLock { $0.pressure = p } }

  func error(_ kind: String) { state.withLock { $0.errors[kind, default: 0] += 1 } }

  /// The exposition a scrape gets: rendered at most once per change, and
  /// never waiting on the cycle (a cycle in progress is shown as it was).
  public func exposition() -> [UInt8] {
    let s = state.withLock { $0 }
    let changes = engine.changes.load(ordering: .acquiring)
    if let r = rendered.withLock({ $0 }), r.engineChanges == changes, r.state == s { return r.bytes }
    if let rows = engine.readIfAvailable({ Metrics.rows($0) }) {
      lastRows.withLock { $0 = rows }
      let bytes = Array(render(s, rows).utf8)
      rendered.withLock { $0 = (s, changes, bytes) }
      return bytes
    }
    return Array(render(s, lastRows.withLock { $0 }).utf8)
  }

  /// What the metrics take from the engine state, copied out under its lock.
  struct EngineRows: Sendable {
    var vms: [(name: String, gauge: VMGauge)] = []
    var unmeasured: [(pool: String, vms: Int)] = []
  }

  static func rows(_ engine: EngineState) -> EngineRows {
    var rows = EngineRows(unmeasured: engine.unmeasuredOnVF)
    let classNames = engine.classNames
    engine.forEachVM { vm, c, bytes, packets, _, onVF in
      guard c >= 0, c < classNames.count else { return }
      rows.vms.append((vm.name, VMGauge(className: classNames[c], bytesPerSecond: bytes, packetsPerSecond: packets, onVF: onVF)))
    }
    rows.vms.sort { $0.name < $1.name }
    return rows
  }

  /// The whole registry, as Prometheus scrapes it.
  public func render() -> String {
    render(state.withLock { $0 }, engine.read { Metrics.rows($0) })
  }

  func render(_ s: State, _ rows: EngineRows) -> String {
    let vmRows = rows.vms, unmeasured = rows.unmeasured
    var out = ""
    func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
    func label(_ v: String) -> String { v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") }
    func num(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d) }
    family("vfshift_build_info", "gauge", "Always 1; the labels say which build runs.")
    out += "vfshift_build_info{version=\"\(label(BuildInfo.version))\",swift=\"\(label(BuildInfo.swift))\"} 1\n"
    family("vfshift_pool_vfs", "gauge", "VFs the pool has (hardware or stand-in).")
    for (p, g) in s.pools.sorted(by: { $0.key < $1.key }) { out += "vfshift_pool_vfs{pool=\"\(label(p))\"} \(g.capacity)\n" }
    family("vfshift_pool_vfs_used", "gauge", "VFs of the pool held by VMs.")
    for (p, g) in s.pools.sorted(by: { $0.key < $1.key }) { out += "vfshift_pool_vfs_used{pool=\"\(label(p))\"} \(g.used)\n" }
    family("vfshift_pool_vfs_cap", "gauge", "The policy's maxInUse for the pool (the hardware total when uncapped).")
    for (p, g) in s.pools.sorted(by: { $0.key < $1.key }) { out += "vfshift_pool_vfs_cap{pool=\"\(label(p))\"} \(g.cap)\n" }
    family("vfshift_pool_vms_waiting", "gauge", "Managed VMs that want a VF of the pool and were held back in the last cycle.")
    for p in s.pools.keys.sorted() { out += "vfshift_pool_vms_waiting{pool=\"\(label(p))\"} \(s.waiting[p] ?? 0)\n" }
    family("vfshift_vms_unmeasured", "gauge", "VMs on a VF of the pool whose rate the last cycle could not measure (held, not moved).")
    for u in unmeasured { out += "vfshift_vms_unmeasured{pool=\"\(label(u.pool))\"} \(u.vms)\n" }
    family("vfshift_swaps_total", "counter", "Swaps carried out, by direction and outcome.")
    for (k, n) in s.swaps.sorted(by: { $0.key < $1.key }) {
      out += "vfshift_swaps_total{direction=\"\(k.verb)\",outcome=\"\(label(k.outcome))\"} \(n)\n"
    }
    family("vfshift_swap_duration_seconds", "histogram", "Time from journal written to journal cleared.")
    for (i, b) in Metrics.buckets.enumerated() { out += "vfshift_swap_duration_seconds_bucket{le=\"\(num(b))\"} \(num(s.swapDurations[i]))\n" }
    out += "vfshift_swap_duration_seconds_bucket{le=\"+Inf\"} \(s.swapDurationCount)\n"
    out += "vfshift_swap_duration_seconds_sum \(s.swapDurationSum)\nvfshift_swap_duration_seconds_count \(s.swapDurationCount)\n"
    family("vfshift_detach_pending_seconds", "gauge",
           "Per VM whose guest kept its old NIC past the detach deadline (journal at detach-pending): seconds since its swap began.")
    for (vm, t) in s.detachPending.sorted(by: { $0.key < $1.key }) { out += "vfshift_detach_pending_seconds{vm=\"\(label(vm))\"} \(num(t))\n" }
    family("vfshift_vm_receive_transmit_bytes_per_second", "gauge", "Measured rate of each managed VM (rx + tx), when known.")
    for (vm, g) in vmRows {
      if let b = g.bytesPerSecond { out += "vfshift_vm_receive_transmit_bytes_per_second{vm=\"\(label(vm))\",class=\"\(label(g.className))\"} \(b)\n" }
    }
    family("vfshift_vm_packets_per_second", "gauge", "Measured packet rate of each managed VM, when known.")
    for (vm, g) in vmRows {
      if let p = g.packetsPerSecond { out += "vfshift_vm_packets_per_second{vm=\"\(label(vm))\",class=\"\(label(g.className))\"} \(p)\n" }
    }
    family("vfshift_vm_on_vf", "gauge", "1 when the VM's network is on a VF, 0 on virtio.")
    for (vm, g) in vmRows { out += "vfshift_vm_on_vf{vm=\"\(label(vm))\",class=\"\(label(g.className))\"} \(g.onVF ? 1 : 0)\n" }
    family("vfshift_vm_counter_source", "gauge", "1 for the source that measures each VM on a VF (pool's counters); reason says why one is unknown.")
    for r in s.counterSources.sorted(by: { $0.vm < $1.vm }) {
      out += "vfshift_vm_counter_source{vm=\"\(label(r.vm))\",source=\"\(label(r.source))\",reason=\"\(label(r.reason ?? ""))\"} 1\n"
    }
    if let p = s.pressure {
      family("vfshift_host_cpu_pressure_ratio", "gauge",
             "The host's CPU pressure (PSI some): share of time a runnable task waited for a CPU, averaged over the window.")
      out += "vfshift_host_cpu_pressure_ratio{window=\"10s\"} \(num(p.avg10))\n"
      out += "vfshift_host_cpu_pressure_ratio{window=\"60s\"} \(num(p.avg60))\n"
      out += "vfshift_host_cpu_pressure_ratio{window=\"300s\"} \(num(p.avg300))\n"
      family("vfshift_host_cpu_pressure_waiting_seconds_total", "counter",
             "The host's CPU pressure (PSI some total): time a runnable task waited for a CPU.")
      out += "vfshift_host_cpu_pressure_waiting_seconds_total \(num(Double(p.totalMicroseconds) / 1e6))\n"
    }
    family("vfshift_cycle_duration_seconds", "gauge", "Wall time of the last observe-decide-act cycle.")
    out += "vfshift_cycle_duration_seconds \(s.cycleSeconds)\n"
    family("vfshift_cycle_interval_seconds", "gauge", "The interval cycles are meant to keep (the policy's intervalSeconds or --interval).")
    out += "vfshift_cycle_interval_seconds \(num(s.intervalSeconds))\n"
    family("vfshift_cycles_total", "counter", "Cycles run.")
    out += "vfshift_cycles_total \(s.cycles)\n"
    family("vfshift_errors_total", "counter", "Errors, by kind.")
    for (k, n) in s.errors.sorted(by: { $0.key < $1.key }) { out += "vfshift_errors_total{kind=\"\(label(k))\"} \(n)\n" }
    family("vfshift_dry_run", "gauge", "1 when the agent only reports what it would do.")
    out += "vfshift_dry_run \(s.dryRun ? 1 : 0)\n"
    return out
  }
}
