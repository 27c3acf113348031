import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure to reach or use the test bed: where, what, and the tool's own words.
public struct TestBedError: Error, CustomStringConvertible, Sendable {
  public var location: String
  public var what: String
  public var why: String

  public init(location: String, what: String, why: String) {
    self.location = location
    self.what = what
    self.why = why
  }

  public var description: String { "\(location): \(what): \(why)" }
}

/// The real test bed (libvirtd, QEMU TCG guests, bridge, namespace, pool of
/// veth "VFs") brought up by `deploy/testbed/up`, for tests that need it.
///
/// A test that needs the bed:
/// ```swift
/// @Test(.enabled(if: TestBed.enabled))
/// func guestsAnswer() throws {
///   let bed = try TestBed.require()
///   ...
/// }
/// ```
/// `enabled` brings the bed up (once per process) and is false, after printing
/// why to stderr, when it cannot; with `CI=true` it is always true, so the test
/// runs and `require()` fails it with the reason instead of it being skipped.
public enum TestBed {
  /// Package root, found from this file's place (Tests/Support/TestBed.swift);
  /// `VFS_PACKAGE_ROOT` overrides it.
  public static let packageRoot: URL = {
    if let root = ProcessInfo.processInfo.environment["VFS_PACKAGE_ROOT"], !root.isEmpty {
      return URL(fileURLWithPath: root)
    }
    return URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent()  // Support
      .deletingLastPathComponent()  // Tests
      .deletingLastPathComponent()
  }()

  /// `deploy/testbed/` with up, down, reset-guest, pool-member-up.
  public static var scriptsDirectory: URL { packageRoot.appendingPathComponent("deploy/testbed") }

  public static let stateFile = "/run/vfshift-testbed/state.json"

  /// True when the environment says this is CI: a missing bed must then fail.
  public static var isCI: Bool {
    ProcessInfo.processInfo.environment["CI"]?.lowercased() == "true"
  }

  // MARK: bring-up

  /// Runs `deploy/testbed/up` (first call in the process only; it is quick when
  /// the bed is already up) and returns what it built.
  /// Throws, saying why, when not root or when the bed cannot come up.
  public static func require() throws -> TestBedState {
    try bringUp.get()
  }

  /// Whether the bed is (or could be brought) up, and if not, why.
  /// Brings it up on first use, like `require()`.
  public static func availability() -> (ok: Bool, reason: String) {
    switch bringUp {
    case .success(let state): return (true, "test bed up: \(state.guests.count) guests, pool \(state.poolNetwork)")
    case .failure(let error): return (false, error.description)
    }
  }

  /// For `@Test(.enabled(if: TestBed.enabled))`. Locally: false when the bed is
  /// unavailable, after printing the reason to stderr once. With `CI=true`:
  /// always true, so the test runs and fails loudly in `require()`.
  public static var enabled: Bool {
    if isCI { return true }
    let (ok, reason) = availability()
    if !ok { skipNotice.printOnce("skipping test-bed tests (set CI=true to fail instead): \(reason)") }
    return ok
  }

  /// Swift initialises a static `let` once, thread-safely: concurrent tests
  /// wait for the one bring-up instead of racing it.
  private static let bringUp: Result<TestBedState, TestBedError> = {
    do { return .success(try runUp()) } catch let e as TestBedError { return .failure(e) } catch {
      return .failure(TestBedError(location: "TestBed.require", what: "bring-up failed", why: "\(error)"))
    }
  }()

  private static func runUp() throws -> TestBedState {
    #if os(Linux)
    guard getuid() == 0 else {
      throw TestBedError(location: "TestBed.require", what: "not root (uid \(getuid()))",
                         why: "the test bed creates bridges, namespaces and libvirt domains; run the tests as root")
    }
    #else
    throw TestBedError(location: "TestBed.require", what: "not Linux", why: "the test bed needs libvirt/QEMU on Linux")
    #endif
    let up = scriptsDirectory.appendingPathComponent("up").path
    guard FileManager.default.isExecutableFile(atPath: up) else {
      throw TestBedError(location: up, what: "missing or not executable",
                         why: "package root guessed as \(packageRoot.path); set VFS_PACKAGE_ROOT")
    }
    let started = Date()
    let result = try execute([up])
    guard result.status == 0 else {
      throw TestBedError(location: up, what: "exited \(result.status)",
                         why: tail(result.stderr + result.stdout, lines: 30))
    }
    FileHandle.standardError.write(Data("[TestBed] \(up) took \(String(format: "%.1f", Date().timeIntervalSince(started))) s\n".utf8))
    return try readState()
  }

  /// Decodes `/run/vfshift-testbed/state.json` as it is now.
  public static func readState(path: String = stateFile) throws -> TestBedState {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw TestBedError(location: path, what: "cannot read", why: "deploy/testbed/up writes it; is the bed up?")
    }
    do {
      return try JSONDecoder().decode(TestBedState.self, from: data)
    } catch {
      throw TestBedError(location: path, what: "not a test-bed state", why: "\(error)")
    }
  }

  /// Puts one guest back to its initial state (`deploy/testbed/reset-guest`):
  /// one virtio NIC `ua-net0`, no metadata but its label, resumed, pool members up.
  public static func resetGuest(_ name: String) throws {
    _ = try run([scriptsDirectory.appendingPathComponent("reset-guest").path, name])
  }

  /// Brings every pool member's link up again (`deploy/testbed/pool-member-up`):
  /// libvirt leaves a member DOWN after a detach.
  public static func poolMembersUp() throws {
    _ = try run([scriptsDirectory.appendingPathComponent("pool-member-up").path])
  }

  // MARK: helpers

  /// `ping` from inside `namespace`; counts from ping's own summary line.
  /// (0, 0) when ping could not run at all (its error goes to stderr).
  public static func ping(_ ip: String, from namespace: String, count: Int, intervalSeconds: Double)
    -> (sent: Int, received: Int)
  {
    let argv = ["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", "\(count)",
                "-i", String(format: "%.3f", intervalSeconds), "-W", "1", ip]
    guard let r = try? execute(argv) else { return (0, 0) }
    // "3 packets transmitted, 3 received, 0% packet loss, time 402ms"
    for line in r.stdout.split(separator: "\n") where line.contains("packets transmitted") {
      let numbers = line.split(separator: ",").compactMap {
        Int($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
      }
      if numbers.count >= 2 { return (numbers[0], numbers[1]) }
    }
    FileHandle.standardError.write(Data("[TestBed] \(argv.joined(separator: " ")) gave no summary: \(r.stderr)\n".utf8))
    return (0, 0)
  }

  /// Runs `argv` (argv[0] looked up in PATH and the sbin directories), returns
  /// its stdout; throws with its stderr when it exits non-zero.
  @discardableResult
  public static func run(_ argv: [String]) throws -> String {
    let r = try execute(argv)
    guard r.status == 0 else {
      throw TestBedError(location: argv.joined(separator: " "), what: "exited \(r.status)",
                         why: tail(r.stderr.isEmpty ? r.stdout : r.stderr, lines: 20))
    }
    return r.stdout
  }

  /// Polls `condition` every `poll` seconds until it is true; throws when
  /// `deadlineSeconds` pass first (or rethrows what `condition` throws).
  public static func waitUntil(deadlineSeconds: Double, poll: Double = 0.1, _ what: String = "condition",
                               file: StaticString = #filePath, line: UInt = #line,
                               _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(deadlineSeconds)
    while true {
      if try condition() { return }
      if Date() >= deadline {
        throw TestBedError(location: "\(file):\(line)", what: "\(what) not met",
                           why: "still false after \(deadlineSeconds) s (polled every \(poll) s)")
      }
      Thread.sleep(forTimeInterval: poll)
    }
  }

  /// The same for async tests: sleeps with `Task.sleep`, so it does not hold
  /// one of the few cooperative threads while it waits.
  public static func waitUntil(deadlineSeconds: Double, poll: Double = 0.1, _ what: String = "condition",
                               file: StaticString = #filePath, line: UInt = #line,
                               _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(deadlineSeconds)
    while true {
      if try await condition() { return }
      if Date() >= deadline {
        throw TestBedError(location: "\(file):\(line)", what: "\(what) not met",
                           why: "still false after \(deadlineSeconds) s (polled every \(poll) s)")
      }
      try await Task.sleep(nanoseconds: UInt64(poll * 1e9))
    }
  }

  // MARK: internals

  public struct Output {
    public var status: Int32
    public var stdout: String
    public var stderr: String
  }

  /// Runs `argv` and returns its exit status and both outputs, whatever the status.
  public static func execute(_ argv: [String]) throws -> Output {
    guard let name = argv.first else {
      throw TestBedError(location: "TestBed.run", what: "empty argv", why: "nothing to run")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try resolve(name))
    process.arguments = Array(argv.dropFirst())
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    do { try process.run() } catch {
      throw TestBedError(location: argv.joined(separator: " "), what: "could not start", why: "\(error)")
    }
    // Both pipes are drained at once: a child that fills one while we block on
    // the other would never exit.
    let errData = PipeDrain(err.fileHandleForReading)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Output(status: process.terminationStatus,
                  stdout: String(decoding: outData, as: UTF8.self),
                  stderr: String(decoding: errData.wait(), as: UTF8.self))
  }

  static func resolve(_ name: String) throws -> String {
    if name.contains("/") { return name }
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    // Tools like ip live in sbin, which a non-login PATH may lack.
    for dir in path + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
      let candidate = dir + "/" + name
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestBedError(location: "TestBed.run", what: "\(name) not found",
                       why: "not in PATH nor the sbin/bin directories; deploy/testbed/install installs the tools")
  }

  static func tail(_ text: String, lines: Int) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
  }

  private static let skipNotice = OnceNotice()
}

/// Reads a pipe to its end on another thread.
private final class PipeDrain: @unchecked Sendable {
  private var data = Data()
  private let done = DispatchSemaphore(value: 0)

  init(_ handle: FileHandle) {
    Thread.detachNewThread { [self] in
      data = handle.readDataToEndOfFile()
      done.signal()
    }
  }

  /// The semaphore orders the reader thread's write before this read.
  func wait() -> Data {
    done.wait()
    return data
  }
}

/// Prints a message to stderr the first time only.
private final class OnceNotice: @unchecked Sendable {
  private let lock = NSLock()
  private var printed = false

  func printOnce(_ message: String) {
    lock.lock()
    defer { lock.unlock() }
    guard !printed else { return }
    printed = true
    FileHandle.standardError.write(Data("[TestBed] \(message)\n".utf8))
  }
}

/// Exclusive use of the bed across processes: two test runs (two developers,
/// or CI and a developer) on one machine must not swap the same guests at
/// once. Held until the value is released.
public final class TestBedLease: @unchecked Sendable {
  let fd: Int32
  /// Blocks until no other process holds the bed.
  public init(path: String = "/run/vfshift-testbed/tests.lock") {
    try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                             withIntermediateDirectories: true)
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    if fd >= 0 { _ = flock(fd, LOCK_EX) }
  }
  deinit { if fd >= 0 { close(fd) } }
}

extension TestBed {
  /// Starts a daemon with a clean signal mask and no pipes. A child started with
  /// Foundation's Process from a test inherits the calling thread's mask, in
  /// which libdispatch blocks nearly every signal: a libvirtd started that way
  /// ignores SIGTERM (seen: `pkill -x libvirtd` left it running).
  public static func startDaemon(_ path: String, _ arguments: [String], environment: [String] = []) throws {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in Int32(0)...2 {
      posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
    }
    let env = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" } + environment
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup($0) } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
    guard rc == 0 else { throw TestBedError(location: "posix_spawn \(path)", what: "failed", why: String(cString: strerror(rc))) }
    // `-d` forks the daemon and its first process exits once it is ready.
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
  }
}
