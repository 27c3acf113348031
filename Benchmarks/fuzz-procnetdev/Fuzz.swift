// libFuzzer target: /proc/net/dev text through `parseProcNetDev`.
// Built two ways (see Benchmarks/fuzz/run):
// - with `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING` it is a libFuzzer binary;
// - in the ordinary build (which builds every target) it replays the files
//   named on its command line through the same function, so CI keeps it
//   compiling and a crash file can be re-run without the sanitizers.
import Foundation
import VFShiftHost

/// A crash is whatever traps: every input must give a value or a thrown error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  _ = try? parseProcNetDev(bytes)
  return 0
}

#if FUZZING
// SwiftPM links an executable with `main` defined as `<module>_main`, so the
// entry point must carry that name; it hands control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
  _ body: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("fuzz_procnetdev_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc, argv = argv
  return runFuzzerDriver(&argc, &argv, fuzz)
}
#else
@main struct Replay {
  static func main() {
    var count = 0
    for path in CommandLine.arguments.dropFirst() {
      var files = [path]
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" }
      }
      for file in files {
        guard let data = FileManager.default.contents(atPath: file) else {
          FileHandle.standardError.write(Data("fuzz-procnetdev: cannot read \(file)\n".utf8)); exit(1)
        }
        let bytes = [UInt8](data)
        _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        count += 1
      }
    }
    print("fuzz-procnetdev: replayed \(count) inputs without a crash")
  }
}
#endif
