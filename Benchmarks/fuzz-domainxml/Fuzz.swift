// libFuzzer target: libvirt XML through `parseDomainXML`, `parseInterfaceXML` and the swap journal's `SwapJournal(xml:)`.
// Built two ways (see Benchmarks/fuzz/run):
// - with `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING` it is a libFuzzer binary;
// - in the ordinary build (which builds every target) it replays the files
//   named on its command line through the same function, so CI keeps it
//   compiling and a crash file can be re-run without the sanitizers.
import Foundation
import FuzzSupport
import VFShiftLibvirt

/// A crash is whatever traps: every input must give a value or a thrown error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  let text = String(decoding: bytes, as: UTF8.self)
  _ = try? parseDomainXML(text)
  _ = try? parseInterfaceXML(text)
  _ = try? SwapJournal(xml: text)
  return 0
}

#if FUZZING
@_cdecl("fuzz_domainxml_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runLibFuzzer(argc, argv, fuzz)
}
#else
@main struct Replay {
  static func main() { replayInputs("fuzz-domainxml", through: fuzz) }
}
#endif
