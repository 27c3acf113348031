import Foundation
import VFShiftTestSupport

/// A finished process: its exit status and both outputs.
struct Exec {
  var status: Int32
  var stdout: String
  var stderr: String

  /// Runs `argv` (argv[0] a path, or a name looked up in PATH and the sbin
  /// directories) to its end, both pipes drained at once.
  static func run(_ argv: [String], cwd: String? = nil, environment: [String: String] = [:], input: String? = nil) throws -> Exec {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: Tools.path(argv[0]) ?? argv[0])
    p.arguments = Array(argv.dropFirst())
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe(), stdin = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try p.run()
    if let input {
      stdin.fileHandleForWriting.write(Data(input.utf8))
      try stdin.fileHandleForWriting.close()
    }
    let errData = Drain(err.fileHandleForReading)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Exec(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                stderr: String(decoding: errData.wait(), as: UTF8.self))
  }

  /// Reads a pipe to its end on another thread.
  final class Drain: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)
    init(_ handle: FileHandle) {
      Thread.detachNewThread { [self] in data = handle.readDataToEndOfFile(); done.signal() }
    }
    func wait() -> Data { done.wait(); return data }
  }
}

/// The programs a test needs from Debian. Locally a suite whose tools are
/// missing is skipped, saying which and the package to install; with CI=true
/// it runs and fails on the missing tool (.ci/run installs them all).
enum Tools {
  static func path(_ name: String) -> String? {
    if name.contains("/") { return name }
    let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
      + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    return dirs.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }

  /// `[tool: Debian package]` all present (or CI, where absence must fail).
  static func present(_ tools: [String: String], for what: String) -> Bool {
    if TestBed.isCI { return true }
    let missing = tools.filter { path($0.key) == nil }
    guard !missing.isEmpty else { return true }
    let list = missing.sorted { $0.key < $1.key }.map { "\($0.key) (apt-get install \($0.value))" }.joined(separator: ", ")
    FileHandle.standardError.write(Data("[Tools] skipping \(what) (set CI=true to fail instead): missing \(list)\n".utf8))
    return false
  }

  /// The tool's path, or a failure naming the package that brings it.
  static func require(_ name: String, package: String) throws -> String {
    guard let p = path(name) else {
      throw TestBedError(location: "Tools", what: "\(name) not found", why: "install Debian's \(package) (.ci/run does)")
    }
    return p
  }
}
