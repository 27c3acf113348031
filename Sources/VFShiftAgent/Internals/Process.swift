// The only file of VFShiftAgent that asks the C library about the process
// itself: signals, its ids, the wall clock, the heap, and the whole-file
// writes of status and metrics. The rest of the module calls these by name.
import CMalloc
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libvirt's client writes to its socket with write(2): when libvirtd goes
/// away mid-call, SIGPIPE would kill the agent (seen: exit by signal 13
/// mid-swap) instead of the call failing and the connection reconnecting.
func ignoreBrokenPipes() { signal(SIGPIPE, SIG_IGN) }

var processID: Int { Int(getpid()) }
var realUserID: UInt32 { getuid() }
var effectiveUserID: UInt32 { geteuid() }

func removeFile(_ path: String) { unlink(path) }

/// The wall clock in UTC, broken down, rounded to the millisecond.
func wallClockUTC() -> (year: Int32, month: Int32, day: Int32, hour: Int32, minute: Int32, second: Int32, millisecond: Int32) {
  var now = timespec()
  clock_gettime(CLOCK_REALTIME, &now)
  let milliseconds = Int(now.tv_sec) * 1000 + (Int(now.tv_nsec) + 500_000) / 1_000_000
  var seconds = time_t(milliseconds / 1000)
  var t = tm()
  gmtime_r(&seconds, &t)
  return (t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, Int32(milliseconds % 1000))
}

/// Returns the heap's free pages to the kernel (glibc's malloc_trim, which
/// also releases free pages in the middle of the heap, not only at its top).
func releaseFreeHeapPages() {
  _ = malloc_trim(0)
}

/// The fault tests' seam into a running `vfshift run`, which they start as a
/// process: at the swap step named by VFSHIFT_CRASH_AT_STEP the agent kills
/// itself (SIGKILL, as a crash would); at VFSHIFT_PAUSE_AT_STEP it stops
/// (once) so the test can break something mid-swap, then SIGCONT. The
/// command line installs it (`AgentConfig.stepHook`); the loop knows nothing of it.
public func faultInjectionFromEnvironment() -> (@Sendable (SwapStep) -> Void)? {
  let crash = getenv("VFSHIFT_CRASH_AT_STEP").flatMap { SwapStep(rawValue: String(cString: $0)) }
  let pause = getenv("VFSHIFT_PAUSE_AT_STEP").flatMap { SwapStep(rawValue: String(cString: $0)) }
  guard crash != nil || pause != nil else { return nil }
  let paused = Atomic<Bool>(false)
  return { name in
    if name == crash { kill(getpid(), SIGKILL) }
    if name == pause, !paused.exchange(true, ordering: .sequentiallyConsistent) { kill(getpid(), SIGSTOP) }
  }
}

/// The benchmarks' and live tests' seam for measuring the switch-over
/// against what it replaced: VFSHIFT_SWITCHOVER=plain swaps without touching
/// the bridge, =quiet stops the old port learning from the attach instead of
/// redirecting the DHCP replies; anything else is the product's.
func switchOverFromEnvironment() -> SwitchOverMode {
  switch getenv("VFSHIFT_SWITCHOVER").map({ String(cString: $0) }) {
  case "plain": .plain
  case "quiet": .quiet
  default: .redirect
  }
}

/// Write-then-rename, so a reader never sees half a file.
func writeAtomically(_ text: String, to path: String) {
  writeAtomically(Array(text.utf8), to: path)
}

func writeAtomically(_ bytes: [UInt8], to path: String) {
  // open/write/rename, not FileManager + Data: this runs every tenth cycle
  // with ~140 KB of status at 1,000 VMs, and Foundation's file code copied
  // the bytes and kept its own pages of the binary resident (bench-agent).
  let tmp = path + ".tmp"
  let flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
  var fd = open(tmp, flags, 0o666)
  if fd < 0 && errno == ENOENT {
    // The directory is made on first use (/run/vfshift after a boot).
    let dir = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    fd = open(tmp, flags, 0o666)
  }
  guard fd >= 0 else { return }
  let complete = writeAll(fd, bytes)
  guard close(fd) == 0, complete else { unlink(tmp); return }
  _ = rename(tmp, path)
}
