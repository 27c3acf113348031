import Foundation
import Glibc
import Testing
@testable import VFShiftHost
import VFShiftTestSupport

@Suite("CPU contention from schedstat and PSI")
struct ContentionTests {
  @Test("schedstat lines parse; anything else is refused")
  func schedstatParses() {
    #expect(SchedTimes(schedstat: "18476080966 15515295170 75284\n") == SchedTimes(runNanoseconds: 18_476_080_966, waitNanoseconds: 15_515_295_170))
    #expect(SchedTimes(schedstat: "1 2\n") == nil)
    #expect(SchedTimes(schedstat: "1 x 3\n") == nil)
    #expect(SchedTimes(schedstat: "") == nil)
  }

  @Test("contention is Σ wait / Σ (run + wait) over the interval, nil without time or across a replaced thread")
  func contentionShare() {
    let before = [SchedTimes(runNanoseconds: 100, waitNanoseconds: 50), SchedTimes(runNanoseconds: 0, waitNanoseconds: 0)]
    let after = [SchedTimes(runNanoseconds: 165, waitNanoseconds: 66), SchedTimes(runNanoseconds: 0, waitNanoseconds: 0)]
    // 65 ms run and 16 ms wait, TESTBED.md's guest receiving 3 MB/s: 0.1975…
    #expect(contention(from: before, to: after) == 16.0 / 81.0)
    #expect(contention(from: before, to: before) == nil, "no time passed on any vCPU")
    #expect(contention(from: after, to: before) == nil, "counters went back: another thread")
    #expect(contention(from: before, to: [after[0]]) == nil, "a vCPU came or went")
  }

  @Test("PSI's some line, as percentages turned into shares")
  func pressureParses() throws {
    let p = try #require(CPUPressure(pressureFile: "some avg10=29.58 avg60=20.36 avg300=19.02 total=182162513\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"))
    #expect(p.avg10 == 0.2958 && p.avg60 == 0.2036 && p.avg300 == 0.1902 && p.totalMicroseconds == 182_162_513)
    #expect(CPUPressure(pressureFile: "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n") == nil)
    #expect(CPUPressure(pressureFile: "some avg10=x avg60=0 avg300=0 total=0\n") == nil)
  }

  @Test("the kernel's own files: a thread named as QEMU names a vCPU is found, its schedstat read and advancing")
  func liveThreads() throws {
    // A thread of this test process named "CPU 3/TCG", spinning until told to stop.
    final class Flag: @unchecked Sendable { var stop = false; var tid: Int32 = 0 }
    let flag = Flag()
    let ready = DispatchSemaphore(value: 0)
    let thread = Thread {
      // /proc/thread-self -> PID/task/TID (fs/proc/thread_self.c)
      let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
      flag.tid = Int32(link.split(separator: "/").last ?? "") ?? -1
      // The thread's own comm file (fs/proc/base.c `comm_write`): what QEMU's
      // pthread_setname_np sets, set the same way, at once and for certain.
      try? "CPU 3/TCG".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
      ready.signal()
      var x = 0
      while !flag.stop { x &+= 1 }
      _ = x
    }
    thread.start()
    ready.wait()
    defer { flag.stop = true }
    let pid = getpid()
    let threads = try vcpuThreads(pid: pid)
    #expect(threads == [flag.tid])
    var buffer: [UInt8] = []
    let first = try #require(schedTimes(pid: pid, threads: threads, buffer: &buffer))
    // Poll until the spinning thread has been charged more run time (a deadline, not a sleep).
    let deadline = Date().addingTimeInterval(10)
    var later = first
    while later[0].runNanoseconds <= first[0].runNanoseconds, Date() < deadline {
      later = try #require(schedTimes(pid: pid, threads: threads, buffer: &buffer))
    }
    #expect(later[0].runNanoseconds > first[0].runNanoseconds)
    let share = try #require(contention(from: first, to: later))
    #expect(share >= 0 && share <= 1)
    #expect(schedTimes(pid: pid, threads: [Int32.max], buffer: &buffer) == nil, "a thread that is gone")
    if FileManager.default.fileExists(atPath: "/proc/pressure/cpu") { #expect(CPUPressure.read() != nil) }
  }

  @Test("names: CPU n/KVM and CPU n/TCG are vCPUs, nothing else")
  func names() {
    func idx(_ s: String) -> Int? { vcpuIndex(comm: ArraySlice(Array(s.utf8))) }
    #expect(idx("CPU 0/TCG\n") == 0)
    #expect(idx("CPU 12/KVM\n") == 12)
    #expect(idx("IO mon_iothread\n") == nil)
    #expect(idx("qemu-system-x86\n") == nil)
    #expect(idx("CPU x/KVM\n") == nil)
  }
}

@Suite("CPU contention of the test bed's guests")
struct BedContentionTests {
  @Test("each guest's QEMU has one vCPU thread, CPU 0/TCG, whose times advance while it runs", .enabled(if: TestBed.enabled))
  func guestsHaveOneVCPU() throws {
    let bed = try TestBed.require()
    var buffer: [UInt8] = []
    for guest in bed.guests {
      let pid = try #require(qemuPID(domain: guest.name), "\(guest.name): no pid file")
      let threads = try vcpuThreads(pid: pid)
      #expect(threads.count == 1, "\(guest.name)")
      let first = try #require(schedTimes(pid: pid, threads: threads, buffer: &buffer))
      var later = first
      try TestBed.waitUntil(deadlineSeconds: 10, poll: 0.05, "\(guest.name)'s vCPU charged more time") {
        later = schedTimes(pid: pid, threads: threads, buffer: &buffer) ?? first
        return later[0].runNanoseconds + later[0].waitNanoseconds > first[0].runNanoseconds + first[0].waitNanoseconds
      }
      let share = try #require(contention(from: first, to: later))
      #expect(share >= 0 && share <= 1)
    }
  }
}
