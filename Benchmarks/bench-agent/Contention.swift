import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VFShiftHost
import BenchSupport

// The contention read (issue 14) at the benchmark's scale: 1,000 VMs × 4
// vCPUs is 4,000 vCPU threads. A child process of this benchmark holds that
// many threads, named as QEMU names its vCPU threads ("CPU n/TCG"), asleep;
// the agent's reader finds them by name (once per inventory change) and
// reads their schedstat files (each time it measures), timed on this
// thread's CPU clock like the cycle.

/// `bench-agent --vcpu-threads-child N`: N sleeping threads named CPU n/TCG,
/// "ready" on stdout, gone when stdin closes.
func vcpuThreadsChild(_ count: Int) -> Never {
  let hold = DispatchSemaphore(value: 0)
  let started = DispatchSemaphore(value: 0)
  for i in 0..<count {
    let t = Thread {
      // The thread's own comm file (fs/proc/base.c `comm_write`): what QEMU's
      // pthread_setname_np sets, set the same way, at once and for certain.
      try? "CPU \(i % 4)/TCG".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
      started.signal()
      hold.wait()
    }
    t.stackSize = 64 * 1024
    t.start()
  }
  for _ in 0..<count { started.wait() }
  FileHandle.standardOutput.write("ready\n".data(using: .utf8)!)
  _ = FileHandle.standardInput.readDataToEndOfFile()
  exit(0)
}

struct ContentionCost {
  let threads: Int
  let discover: Figure
  let read: Figure
}

func measureContentionRead(threads: Int, rounds: Int) throws -> ContentionCost {
  let child = Process()
  child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
  child.arguments = ["--vcpu-threads-child", "\(threads)"]
  let input = Pipe(), output = Pipe()
  child.standardInput = input
  child.standardOutput = output
  try child.run()
  defer {
    try? input.fileHandleForWriting.close()
    child.waitUntilExit()
  }
  var seen = Data()
  while !String(decoding: seen, as: UTF8.self).contains("ready\n") {
    let chunk = output.fileHandleForReading.availableData
    if chunk.isEmpty { throw BenchError(description: "vCPU-thread child exited before it was ready") }
    seen += chunk
  }
  let pid = child.processIdentifier
  var discover: [Double] = [], read: [Double] = []
  var tids: [Int32] = []
  var buffer: [UInt8] = []
  for _ in 0..<rounds {
    discover.append(try cpu { tids = try vcpuThreads(pid: pid) })
    guard tids.count == threads else { throw BenchError(description: "found \(tids.count) vCPU threads, made \(threads)") }
    read.append(cpu { precondition(schedTimes(pid: pid, threads: tids, buffer: &buffer)?.count == threads) })
  }
  return ContentionCost(threads: threads, discover: Figure(discover), read: Figure(read))
}

/// The least N for which reading every Nth cycle keeps the cycle within
/// `target` × the floor, given what the cycle costs without it.
func everyNthCycle(read: Double, cycle: Double, floor: Double, target: Double) -> Int? {
  let headroom = target * floor - cycle
  guard headroom > 0 else { return nil }
  return max(1, Int((read / headroom).rounded(.up)))
}
