import VFShiftCore

/// A VM's CPU contention: of the time its vCPU threads were runnable, the
/// share spent waiting on a run queue rather than running — the study's
/// strongest effect (SR-IOV's edge over virtio grows with it).
///
/// Paths read (under `proc`), with where the kernel defines them:
/// - PID/task/TID/comm: the thread's name (fs/proc/base.c `comm_show`); QEMU
///   names its vCPU threads "CPU n/KVM" or "CPU n/TCG" (qemu's
///   `qemu_thread_create` in accel/{kvm,tcg})
/// - PID/task/TID/schedstat: "run_ns wait_ns timeslices\n"
///   (fs/proc/base.c `proc_pid_schedstat`, from CONFIG_SCHED_INFO; it works
///   with CONFIG_SCHEDSTATS off, as on the test bed's kernel)
/// - pressure/cpu: "some avg10=… avg60=… avg300=… total=…" (kernel/sched/psi.c,
///   Documentation/accounting/psi.rst)
public struct ProcRoot: Sendable, Equatable {
  public let path: String
  public init(_ path: String = "/proc") { self.path = path }
}

/// One thread's cumulative scheduler times, nanoseconds.
public struct SchedTimes: Sendable, Equatable {
  public var runNanoseconds: UInt64
  public var waitNanoseconds: UInt64
  public init(runNanoseconds: UInt64, waitNanoseconds: UInt64) {
    self.runNanoseconds = runNanoseconds; self.waitNanoseconds = waitNanoseconds
  }

  /// "18476080966 15515295170 75284\n" → run and wait; nil for anything else.
  public init?(schedstat text: Substring) {
    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
    guard fields.count == 3, let run = UInt64(fields[0]), let wait = UInt64(fields[1]), UInt64(fields[2]) != nil else { return nil }
    self.init(runNanoseconds: run, waitNanoseconds: wait)
  }
}

/// Σ wait / Σ (run + wait) between two readings of the same threads, 0 to 1;
/// nil when the threads did not run or wait at all, or a counter went back
/// (a thread replaced: the two readings are not of the same threads).
public func contention(from before: [SchedTimes], to after: [SchedTimes]) -> Double? {
  guard before.count == after.count, !after.isEmpty else { return nil }
  var run: UInt64 = 0, wait: UInt64 = 0
  for (b, a) in zip(before, after) {
    guard a.runNanoseconds >= b.runNanoseconds, a.waitNanoseconds >= b.waitNanoseconds else { return nil }
    run += a.runNanoseconds - b.runNanoseconds
    wait += a.waitNanoseconds - b.waitNanoseconds
  }
  guard run + wait > 0 else { return nil }
  return Double(wait) / Double(run + wait)
}

/// The host's CPU pressure (PSI "some" line): the share of time at least one
/// runnable task waited for a CPU, averaged over 10 s, 60 s and 300 s, 0 to 1.
public struct CPUPressure: Sendable, Equatable {
  public var avg10: Double, avg60: Double, avg300: Double
  public var totalMicroseconds: UInt64

  public init?(pressureFile text: String) {
    guard let some = text.split(separator: "\n").first(where: { $0.hasPrefix("some ") }) else { return nil }
    var values: [Substring: Substring] = [:]
    for field in some.dropFirst(5).split(separator: " ") {
      let kv = field.split(separator: "=", maxSplits: 1)
      if kv.count == 2 { values[kv[0]] = kv[1] }
    }
    guard let a10 = values["avg10"].flatMap({ Double($0) }), let a60 = values["avg60"].flatMap({ Double($0) }),
          let a300 = values["avg300"].flatMap({ Double($0) }), let total = values["total"].flatMap({ UInt64($0) }) else { return nil }
    avg10 = a10 / 100; avg60 = a60 / 100; avg300 = a300 / 100; totalMicroseconds = total
  }

  public static func read(proc: ProcRoot = ProcRoot()) -> CPUPressure? {
    var buffer: [UInt8] = []
    guard let n = try? readWholeFile("\(proc.path)/pressure/cpu", into: &buffer) else { return nil }
    return CPUPressure(pressureFile: String(decoding: buffer[0..<n], as: UTF8.self))
  }
}

/// A process's vCPU threads, found by the names QEMU gives them.
public func vcpuThreads(pid: Int32, proc: ProcRoot = ProcRoot()) throws(SystemCallError) -> [Int32] {
  var out: [(Int, Int32)] = []
  var buffer: [UInt8] = []
  for entry in try directoryEntries("\(proc.path)/\(pid)/task") {
    guard let tid = Int32(entry) else { continue }
    // A thread that ended between the listing and the read is simply not a vCPU now.
    guard let n = try? readWholeFile("\(proc.path)/\(pid)/task/\(tid)/comm", into: &buffer) else { continue }
    if let index = vcpuIndex(comm: buffer[0..<n]) { out.append((index, tid)) }
  }
  return out.sorted { $0.0 < $1.0 }.map(\.1)
}

/// n of "CPU n/KVM\n" or "CPU n/TCG\n"; nil for any other thread name.
func vcpuIndex(comm: ArraySlice<UInt8>) -> Int? {
  var name = String(decoding: comm, as: UTF8.self)
  if name.hasSuffix("\n") { name.removeLast() }
  guard name.hasPrefix("CPU "), name.hasSuffix("/KVM") || name.hasSuffix("/TCG") else { return nil }
  return Int(name.dropFirst(4).dropLast(4))
}

/// The scheduler times of the given threads of `pid`, in their order; nil when
/// one of them is gone (the VM stopped or QEMU replaced the thread).
public func schedTimes(pid: Int32, threads: [Int32], proc: ProcRoot = ProcRoot(), buffer: inout [UInt8]) -> [SchedTimes]? {
  var out: [SchedTimes] = []
  out.reserveCapacity(threads.count)
  for tid in threads {
    guard let n = try? readWholeFile("\(proc.path)/\(pid)/task/\(tid)/schedstat", into: &buffer),
          let t = SchedTimes(schedstat: Substring(String(decoding: buffer[0..<n], as: UTF8.self))) else { return nil }
    out.append(t)
  }
  return out
}

/// The QEMU process of a running domain: libvirt's QEMU driver writes its pid
/// to RUNDIR/NAME.pid (src/qemu/qemu_process.c, `qemuProcessLaunch`), with
/// RUNDIR /run/libvirt/qemu for qemu:///system.
public func qemuPID(domain name: String, runDirectory: String = "/run/libvirt/qemu") -> Int32? {
  var buffer: [UInt8] = []
  guard let n = try? readWholeFile("\(runDirectory)/\(name).pid", into: &buffer) else { return nil }
  var text = String(decoding: buffer[0..<n], as: UTF8.self)
  while text.last == "\n" || text.last == " " { text.removeLast() }
  return Int32(text)
}
