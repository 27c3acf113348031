// What every fuzz target shares: libFuzzer's driver when built with
// `-DFUZZING` (and the sanitizers), and otherwise a replayer that runs the
// files or folders named on the command line through the same function, so
// the ordinary build keeps the targets compiling and a crash file can be
// re-run without the sanitizers.
import Foundation

public typealias FuzzBody = @convention(c) (UnsafePointer<UInt8>, Int) -> CInt

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
  _ body: FuzzBody
) -> CInt

/// Hands control to libFuzzer. SwiftPM links an executable's `main` as
/// `<module>_main`, so each target exports that name and calls this.
public func runLibFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                         _ body: FuzzBody) -> CInt {
  var argc = argc, argv = argv
  return runFuzzerDriver(&argc, &argv, body)
}
#endif

/// Replays every input named in `arguments` (files, or folders of files).
public func replayInputs(_ name: String, _ arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                         through body: FuzzBody) {
  var count = 0
  for path in arguments {
    var files = [path]
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
      files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" }
    }
    for file in files {
      guard let data = FileManager.default.contents(atPath: file) else {
        FileHandle.standardError.write(Data("\(name): cannot read \(file)\n".utf8))
        exit(1)
      }
      let bytes = [UInt8](data)
      _ = bytes.withUnsafeBufferPointer { body($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
      count += 1
    }
  }
  print("\(name): replayed \(count) inputs without a crash")
}
