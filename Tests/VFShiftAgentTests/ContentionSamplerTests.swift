import Foundation
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftHost
import VFShiftLibvirt

/// A /proc and a libvirt run directory as the kernel and libvirt lay them
/// out: RUN/NAME.pid, PROC/PID/task/TID/{comm,schedstat}, PROC/pressure/cpu.
struct FakeProc {
  let scratch = Scratch("contention")
  var proc: String { scratch.file("proc") }
  var run: String { scratch.file("run") }

  func write(_ text: String, _ path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }
  func domain(_ name: String, pid: Int32, threads: [(tid: Int32, comm: String)]) throws {
    try write("\(pid)\n", "\(run)/\(name).pid")
    for t in threads { try write(t.comm + "\n", "\(proc)/\(pid)/task/\(t.tid)/comm") }
  }
  func schedstat(pid: Int32, tid: Int32, run: UInt64, wait: UInt64) throws {
    try write("\(run) \(wait) 10\n", "\(proc)/\(pid)/task/\(tid)/schedstat")
  }
}

func inventory(_ name: String, uuid: String) throws -> DomainInventory {
  try parseDomainXML("""
  <domain type='qemu'><name>\(name)</name><uuid>\(uuid)</uuid><devices></devices></domain>
  """)
}

@Test("contention per VM: Σwait/Σ(run+wait) of its vCPU threads (not QEMU's other threads) over the window, read every Nth cycle; host PSI beside it")
func contentionSampled() throws {
  let fake = FakeProc()
  let a = try inventory("vm-a", uuid: "00000000-0000-4000-8000-00000000000a")
  let b = try inventory("vm-b", uuid: "00000000-0000-4000-8000-00000000000b")
  try fake.domain("vm-a", pid: 100, threads: [(100, "qemu-system-x86"), (101, "CPU 0/TCG"), (102, "CPU 1/TCG")])
  try fake.domain("vm-b", pid: 200, threads: [(201, "CPU 0/KVM")])
  for (pid, tid) in [(100, 100), (100, 101), (100, 102), (200, 201)] as [(Int32, Int32)] {
    try fake.schedstat(pid: pid, tid: tid, run: 1_000, wait: 0)
  }
  try fake.write("some avg10=12.50 avg60=5.00 avg300=1.25 total=3000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                 "\(fake.proc)/pressure/cpu")
  let sampler = ContentionSampler(everyNth: 3, proc: ProcRoot(fake.proc), runDirectory: fake.run)
  let all: (DomainInventory) -> Bool = { _ in true }
  sampler.sample([a, b], cycle: 0, generation: 1, managed: all)
  #expect(sampler.figures.isEmpty, "one reading is no window")
  #expect(sampler.pressure?.avg10 == 0.125)
  // vm-a's vCPUs: +300 run, +100 wait, and +100 run, +500 wait → 600/1000; QEMU's main thread waits a lot, not counted.
  try fake.schedstat(pid: 100, tid: 100, run: 1_000, wait: 90_000)
  try fake.schedstat(pid: 100, tid: 101, run: 1_300, wait: 100)
  try fake.schedstat(pid: 100, tid: 102, run: 1_100, wait: 500)
  try fake.schedstat(pid: 200, tid: 201, run: 2_000, wait: 0)
  sampler.sample([a, b], cycle: 1, generation: 1, managed: all)
  sampler.sample([a, b], cycle: 2, generation: 1, managed: all)
  #expect(sampler.figures.isEmpty, "not a sampling cycle: nothing read")
  sampler.sample([a, b], cycle: 3, generation: 1, managed: all)
  #expect(sampler.figures[a.uuid] == 0.6)
  #expect(sampler.figures[b.uuid] == 0)
  var observation = Observation(vms: [VMObservation(identity: VMIdentity(uuid: a.uuid, name: "vm-a"), placement: .virtio, reading: .unknown),
                                      VMObservation(identity: VMIdentity(uuid: "other", name: "other"), placement: .virtio, reading: .unknown)],
                                pools: [:])
  sampler.annotate(&observation)
  #expect(observation.vms.map(\.contention) == [0.6, nil])
  // Only managed VMs are read; one that stops is dropped with the next inventory.
  sampler.sample([a, b], cycle: 6, generation: 2, managed: { $0.name == "vm-a" })
  #expect(sampler.figures[b.uuid] == nil)
}

@Test("host CPU pressure in the metrics (ratio per window, a seconds counter) and in the status JSON; the VM's contention in its row")
func pressureExposed() throws {
  let m = Metrics()
  #expect(!m.render().contains("vfshift_host_cpu_pressure"), "no PSI, no family")
  m.observeCPUPressure(CPUPressure(pressureFile: "some avg10=12.50 avg60=5.00 avg300=1.25 total=3000000\n"))
  let text = m.render()
  #expect(text.contains("# TYPE vfshift_host_cpu_pressure_ratio gauge"))
  #expect(text.contains("vfshift_host_cpu_pressure_ratio{window=\"10s\"} 0.125\n"))
  #expect(text.contains("vfshift_host_cpu_pressure_waiting_seconds_total 3\n"))
  var status = AgentStatus(policy: "p", dryRun: false, pid: 1, cycle: 2, intervalSeconds: 1, updatedAt: "t", pools: [],
                           vms: [StatusRow(vm: "vm-a", className: "high", placement: "virtio", bytesPerSecond: nil,
                                           packetsPerSecond: nil, intensive: false, decision: "keep", contention: 0.6)])
  status.cpuPressure = .init(avg10: 0.125, avg60: 0.05, avg300: 0.0125)
  let back = try JSONDecoder().decode(AgentStatus.self, from: Data(status.json))
  #expect(back.cpuPressure == status.cpuPressure)
  #expect(back.vms.first?.contention == 0.6)
}
