import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

/// Each managed VM's CPU contention (`VFShiftHost/Contention.swift`), read
/// every `everyNth` cycle, and the host's CPU pressure. Reading 4,000 vCPU
/// threads' schedstat costs 11× the cycle's floor (bench-agent), so the
/// figure is a share over a window of N cycles, not one cycle: contention
/// moves over minutes (docs/observation.md, "CPU contention").
final class ContentionSampler {
  struct Threads { var pid: Int32; var tids: [Int32]; var last: [SchedTimes]? }
  let everyNth: Int
  let proc: ProcRoot
  let runDirectory: String
  /// Found per inventory generation: which threads are each VM's vCPUs.
  var threads: [String: Threads] = [:]
  var generation: UInt64?
  /// The last window's figure per VM (uuid).
  private(set) var figures: [String: Double] = [:]
  private(set) var pressure: CPUPressure?
  var buffer: [UInt8] = []

  init(everyNth: Int, proc: ProcRoot = ProcRoot(), runDirectory: String = "/run/libvirt/qemu") {
    self.everyNth = max(1, everyNth); self.proc = proc; self.runDirectory = runDirectory
  }

  /// Called each cycle; reads only on every `everyNth` cycle (and the first).
  func sample(_ domains: [DomainInventory], cycle: Int, generation: UInt64, managed: (DomainInventory) -> Bool) {
    guard cycle % everyNth == 0 else { return }
    if generation != self.generation {
      self.generation = generation
      var found: [String: Threads] = [:]
      for d in domains where managed(d) {
        guard let pid = qemuPID(domain: d.name, runDirectory: runDirectory) else { continue }
        if let kept = threads[d.uuid], kept.pid == pid { found[d.uuid] = kept; continue }
        guard let tids = try? vcpuThreads(pid: pid, proc: proc), !tids.isEmpty else { continue }
        found[d.uuid] = Threads(pid: pid, tids: tids, last: nil)
      }
      threads = found
      figures = figures.filter { found[$0.key] != nil }
    }
    for (uuid, t) in threads {
      guard let now = schedTimes(pid: t.pid, threads: t.tids, proc: proc, buffer: &buffer) else {
        // The VM stopped or QEMU replaced a thread: found again at the next inventory change.
        threads[uuid]?.last = nil
        figures[uuid] = nil
        continue
      }
      if let before = t.last { figures[uuid] = contention(from: before, to: now) }
      threads[uuid]?.last = now
    }
    pressure = CPUPressure.read(proc: proc)
  }

  /// The observation with each VM's figure filled in.
  func annotate(_ observation: inout Observation) {
    guard !figures.isEmpty else { return }
    for i in observation.vms.indices {
      observation.vms[i].contention = figures[observation.vms[i].identity.uuid]
    }
  }
}
