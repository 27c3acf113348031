import Foundation
import VFShiftCore

/// A file that could not be read, with the path and the system's reason.
public struct FileError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) { self.path = path; self.reason = reason }
  public var description: String { "\(path): \(reason)" }
}

/// The most a file of each kind may hold: far above any real one (a month of
/// a VM's GWA-T-12 rows is ~2 MB, a day of 1 s samples of 50 VMs ~300 MB),
/// low enough that a wrong path is an error, not memory exhausted.
public enum InputLimits {
  public static let policyBytes = 1 << 20
  public static let traceBytes = 1 << 30
  public static let gwaFileBytes = 64 << 20
  /// All the GWA-T-12 files of one import together.
  public static let gwaTotalBytes = 1 << 30
}

/// A file's text: a regular file (anything else is refused unread), at most
/// `limit` bytes, UTF-8. A UTF-8 byte-order mark is kept for the parser,
/// which knows what its format makes of it.
public func readText(_ path: String, limit: Int, what: String) throws -> String {
  try decodeText(readRegularFile(path, limit: limit, what: what), path: path)
}

func decodeText(_ bytes: [UInt8], path: String) throws(FileError) -> String {
  if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
    throw FileError(path: path, reason: "is UTF-16 text (byte-order mark \(bytes[0] == 0xFF ? "FF FE" : "FE FF")), "
      + "not UTF-8: save it as UTF-8")
  }
  if let text = String(validating: bytes, as: UTF8.self) { return text }
  var line = 1
  var it = bytes.makeIterator()
  var parser = Unicode.UTF8.ForwardParser()
  scan: while true {
    switch parser.parseScalar(from: &it) {
    case .valid(let s): if s.count == 1 && s.first == 0x0A { line += 1 }
    case .error: break scan
    case .emptyInput: break scan
    }
  }
  throw FileError(path: path, reason: "line \(line): not UTF-8 text (Latin-1 or Windows-1252? save it as UTF-8)")
}

/// Reads and validates a policy file; errors name the file, line and field.
public func loadPolicy(_ path: String) throws -> Policy {
  let text = try readText(path, limit: InputLimits.policyBytes, what: "a policy file")
  let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
  return try Policy.parse(text, file: path, defaultName: stem)
}

/// What an import read: files found, VMs it gave, and every file left out
/// with the reason.
public struct TraceInputs: Sendable, Equatable {
  public var files = 0
  public var vms = 0
  public var skipped: [GWAT12.Skipped] = []
  /// Files that may have held data the operator expected.
  public var warnings: [GWAT12.Skipped] { skipped.filter(\.warning) }
  public init() {}
}

/// A vfshift trace file, or GWA-T-12 CSVs as published (directories of
/// `<vm>.csv`, or such files) — told apart by their first line, not by a
/// flag. Several paths are one VM set: files of one name are one VM's rows
/// split by time. Every file found is accounted for in `inputs`.
/// `hostCores` (GWA-T-12 only) estimates each sample's contention from the
/// VMs' CPU use (`GWAT12.estimatedContention`).
public func loadTrace(_ paths: [String], identity: @escaping (String) -> VMIdentity? = { VMIdentity(uuid: $0, name: $0) },
                      hostCores: Int? = nil) throws -> (trace: Trace, inputs: TraceInputs) {
  var inputs = TraceInputs()
  var files: [GWAT12.File] = []
  var seen: [FileID: String] = [:]
  var total = 0
  func take(_ path: String, _ text: String, _ id: FileID) throws {
    total += text.utf8.count
    guard total <= InputLimits.gwaTotalBytes else {
      throw FileError(path: path, reason: "the GWA-T-12 files of this import pass \(InputLimits.gwaTotalBytes) bytes, "
        + "the limit for one import")
    }
    seen[id] = path
    files.append(GWAT12.File(name: path, text: text))
  }
  for path in paths {
    let (kind, id) = try fileKind(path, follow: true)
    if kind == .directory {
      try walk(path, &inputs, { seen[$0] }, take)
      continue
    }
    if let why = kind.notAFile { throw FileError(path: path, reason: why) }
    inputs.files += 1
    let text = try readText(path, limit: InputLimits.traceBytes, what: "a trace")
    let firstLine = text.utf8.prefix { $0 != 0x0A && $0 != 0x0D }
    if GWAT12.looksLike(Substring(firstLine)) {
      if let other = seen[id] {
        inputs.skipped.append(.init(file: path, reason: "the same file as \(other)", warning: false))
      } else { try take(path, text, id) }
      continue
    }
    guard paths.count == 1 else {
      throw FileError(path: path, reason: "not a GWA-T-12 file, and a vfshift trace is read alone "
        + "(only GWA-T-12 files and directories combine)")
    }
    if hostCores != nil {
      throw FileError(path: path, reason: "is a vfshift trace: --host-cores estimates contention for GWA-T-12 files only "
        + "(a trace carries its own)")
    }
    let trace = try Trace.parse(text, file: path)
    inputs.vms = trace.vms.count
    return (trace, inputs)
  }
  let trace = try GWAT12.trace(files, source: paths.joined(separator: ", "), identity: identity, hostCores: hostCores,
                               skipped: &inputs.skipped)
  inputs.skipped.sort { $0.file < $1.file }
  inputs.vms = trace.vms.count
  guard !trace.vms.isEmpty else {
    let why = inputs.skipped.isEmpty ? "" : ": " + inputs.skipped.prefix(3).map { "\($0.file): \($0.reason)" }
      .joined(separator: "; ") + (inputs.skipped.count > 3 ? "; …" : "")
    throw FileError(path: paths.joined(separator: ", "), reason: "no VM imported from \(inputs.files) files\(why)")
  }
  return (trace, inputs)
}

/// One directory's own entries, never its subdirectories; a link is followed
/// only to a file inside the directory (so never out of it, nor around a
/// loop), and a file reached twice is read once.
private func walk(_ dir: String, _ inputs: inout TraceInputs, _ seen: (FileID) -> String?,
                  _ take: (String, String, FileID) throws -> Void) throws {
  let names: [String]
  do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
    throw FileError(path: dir, reason: "cannot be listed: \(error.localizedDescription)")
  }
  let root = try resolvedPath(dir)
  func skip(_ path: String, _ reason: String, warning: Bool = true) {
    inputs.skipped.append(.init(file: path, reason: reason, warning: warning))
  }
  for name in names.sorted() {
    inputs.files += 1
    let path = (dir as NSString).appendingPathComponent(name)
    guard name.hasSuffix(".csv") else {
      skip(path, "not named <vm>.csv", warning: false)
      continue
    }
    var (kind, id) = try fileKind(path, follow: false)
    if kind == .symbolicLink {
      let target: String
      do { target = try resolvedPath(path) } catch { skip(path, "symbolic link not followed: \(error.reason)"); continue }
      guard target.hasPrefix(root == "/" ? "/" : root + "/") else {
        skip(path, "symbolic link to \(target), outside \(dir): not followed")
        continue
      }
      (kind, id) = try fileKind(target, follow: false)
    }
    if let why = kind.notAFile {
      skip(path, why, warning: kind != .directory)
      continue
    }
    if let other = seen(id) {
      skip(path, "the same file as \(other)", warning: false)
      continue
    }
    let text: String
    do { text = try readText(path, limit: InputLimits.gwaFileBytes, what: "a GWA-T-12 file") } catch let e as FileError {
      skip(path, e.reason)
      continue
    }
    try take(path, text, id)
  }
}

/// The trace alone, every file found giving a VM (a warning is an error).
public func loadTrace(_ path: String, identity: @escaping (String) -> VMIdentity? = { VMIdentity(uuid: $0, name: $0) })
  throws -> Trace {
  let (trace, inputs) = try loadTrace([path], identity: identity)
  if let w = inputs.warnings.first { throw FileError(path: w.file, reason: w.reason) }
  return trace
}

/// Where bundled policies and traces live: `$VFSHIFT_DATA`, an installed
/// share directory, or this source tree (so `swift run` works from anywhere).
public func bundledDataDirectory() -> String? {
  var candidates: [String] = []
  if let env = ProcessInfo.processInfo.environment["VFSHIFT_DATA"] { candidates.append(env) }
  let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
  candidates.append(exe.deletingLastPathComponent().appendingPathComponent("../share/vfshift").standardized.path)
  candidates.append("/usr/share/vfshift")
  candidates.append(FileManager.default.currentDirectoryPath)
  let sourceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
  candidates.append(sourceRoot.path)
  return candidates.first { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("policies/paper-multinetwork.json")) }
}
