// libFuzzer target: GWA-T-12 CSV files through `GWAT12.trace`; a NUL byte starts the next file, so one input can hold several VMs.
// Built two ways (see Benchmarks/fuzz/run):
// - with `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING` it is a libFuzzer binary;
// - in the ordinary build (which builds every target) it replays the files
//   named on its command line through the same function, so CI keeps it
//   compiling and a crash file can be re-run without the sanitizers.
import Foundation
import FuzzSupport
import VFShiftCore

/// A crash is whatever traps: every input must give a value or a thrown error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  let files = bytes.split(separator: 0, omittingEmptySubsequences: false).enumerated().map {
    GWAT12.File(name: "\($0.offset + 1).csv", text: String(decoding: $0.element, as: UTF8.self))
  }
  _ = try? GWAT12.trace(files, source: "fuzz")
  // The contention estimate too: a figure outside 0…1 would make the trace it writes unreadable.
  if let t = try? GWAT12.trace(files, source: "fuzz", hostCores: 4) {
    precondition(t.samples.allSatisfy { $0.contention.map { (0...1).contains($0) } ?? false })
  }
  return 0
}

#if FUZZING
@_cdecl("fuzz_gwa_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runLibFuzzer(argc, argv, fuzz)
}
#else
@main struct Replay {
  static func main() { replayInputs("fuzz-gwa", through: fuzz) }
}
#endif
