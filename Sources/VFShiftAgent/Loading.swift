import Foundation
import VFShiftCore

/// A file that could not be read, with the path and the system's reason.
public struct FileError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) { self.path = path; self.reason = reason }
  public var description: String { "\(path): \(reason)" }
}

public func readText(_ path: String) throws -> String {
  guard let data = FileManager.default.contents(atPath: path) else {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
      throw FileError(path: path, reason: isDir.boolValue ? "is a directory" : "cannot be read (permission?)")
    }
    throw FileError(path: path, reason: "no such file")
  }
  guard let text = String(data: data, encoding: .utf8) else { throw FileError(path: path, reason: "is not UTF-8 text") }
  return text
}

/// Reads and validates a policy file; errors name the file, line and field.
public func loadPolicy(_ path: String) throws -> Policy {
  let text = try readText(path)
  let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
  return try Policy.parse(text, file: path, defaultName: stem)
}

/// A vfshift trace file, or a directory (or single file) of GWA-T-12 CSVs as
/// published — told apart by their first line, not by a flag.
public func loadTrace(_ path: String, identity: @escaping (String) -> VMIdentity? = { VMIdentity(uuid: $0, name: $0) })
  throws -> Trace {
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
    throw FileError(path: path, reason: "no such file or directory")
  }
  if isDir.boolValue {
    let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".csv") }
    guard !names.isEmpty else { throw FileError(path: path, reason: "directory holds no .csv files (GWA-T-12 traces are <vm>.csv)") }
    var files: [GWAT12.File] = []
    for name in names {
      let full = (path as NSString).appendingPathComponent(name)
      files.append(GWAT12.File(name: full, text: try readText(full)))
    }
    return try GWAT12.trace(files, source: path, identity: identity)
  }
  let text = try readText(path)
  let firstLine = text.prefix { $0 != "\n" }
  if GWAT12.looksLike(firstLine[...]) {
    return try GWAT12.trace([GWAT12.File(name: path, text: text)], source: path, identity: identity)
  }
  return try Trace.parse(text, file: path)
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
