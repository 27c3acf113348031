// libFuzzer target: netlink datagrams through every pure parser: `parseLinkDump` (RTM_GETSTATS / RTM_GETLINK dumps), `parseVFStatistics` (RTM_GETLINK with RTEXT_FILTER_VF), `parseFilterDump` and `parseQdiscDump` (the DHCP redirect's traffic-control dumps).
// Built two ways (see Benchmarks/fuzz/run):
// - with `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING` it is a libFuzzer binary;
// - in the ordinary build (which builds every target) it replays the files
//   named on its command line through the same function, so CI keeps it
//   compiling and a crash file can be re-run without the sanitizers.
import Foundation
import FuzzSupport
import VFShiftHost

/// A crash is whatever traps: every input must give a value or a thrown error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  _ = try? parseLinkDump(bytes)
  _ = try? parseVFStatistics(bytes)
  _ = try? parseFilterDump(bytes)
  _ = try? parseQdiscDump(bytes)
  return 0
}

#if FUZZING
@_cdecl("fuzz_netlink_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runLibFuzzer(argc, argv, fuzz)
}
#else
@main struct Replay {
  static func main() { replayInputs("fuzz-netlink", through: fuzz) }
}
#endif
