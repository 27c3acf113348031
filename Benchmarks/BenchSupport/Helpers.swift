import Foundation

/// A line on stderr: the benchmarks keep stdout for their figures.
public func note(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

public struct BenchError: Error, CustomStringConvertible {
  public let description: String
  public init(description: String) { self.description = description }
}

/// Runs a tool to its end; its stdout, or an error with its stderr. Both
/// pipes are drained together: a tool that fills stderr before it closes
/// stdout would otherwise wait on us while we wait on it.
@discardableResult
public func run(_ argv: [String]) throws -> String {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  p.arguments = argv
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  nonisolated(unsafe) var e = Data()
  let drained = DispatchSemaphore(value: 0)
  DispatchQueue.global().async {
    e = err.fileHandleForReading.readDataToEndOfFile()
    drained.signal()
  }
  let o = out.fileHandleForReading.readDataToEndOfFile()
  drained.wait()
  p.waitUntilExit()
  guard p.terminationStatus == 0 else {
    throw BenchError(description: "\(argv.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: e, as: UTF8.self))")
  }
  return String(decoding: o, as: UTF8.self)
}

/// `s` padded with spaces to `width`, on the right (or on the left: `right`, for figures).
public func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
  let fill = String(repeating: " ", count: max(0, width - s.count))
  return right ? fill + s : s + fill
}

public func milliseconds(_ d: Duration) -> Double {
  Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
}
