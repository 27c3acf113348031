import Foundation
import VFShiftCore
import VFShiftFiles

/// Appends the observed samples to a trace file, in the format `whatif` reads,
/// through Core's one `TraceWriter`.
final class TraceRecorder {
  let handle: FileHandle
  var writer = TraceWriter()
  /// Each VM's index in the trace, by UUID, in order of first sighting.
  var index: [String: Int32] = [:]
  var identities: [VMIdentity] = []

  init(path: String, interval: Double, pools: [String: Int]) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil) else {
      throw FileError(path: path, reason: "cannot be created")
    }
    handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    // Version 2 from the first line: the contention figure comes only after
    // a window of cycles (or never, on a host that cannot read it), and a
    // streamed header cannot be changed once written.
    let header = TraceWriter.header(version: 2, source: "recorded by vfshift on \(ProcessInfo.processInfo.hostName)",
                                    intervalSeconds: interval, poolSizes: pools)
    handle.write(Data(header.utf8))
  }

  func record(_ observation: Observation, now: Instant) {
    let present = observation.vms.map { vm in
      if let i = index[vm.identity.uuid] { return i }
      let i = Int32(identities.count)
      index[vm.identity.uuid] = i
      identities.append(vm.identity)
      return i
    }
    // A figure outside 0…1 (clamped by the engine too) would make the trace unreadable.
    let samples = zip(present, observation.vms).lazy.map {
      TraceSample(vm: $0, reading: $1.reading, contention: $1.contention.flatMap { $0.isFinite ? min(1, max(0, $0)) : nil })
    }
    let out = writer.cycle(at: now, present: present, identity: { identities[Int($0)] }, samples: samples)
    handle.write(Data(out.utf8))
  }

  func close() { try? handle.synchronize(); try? handle.close() }
}
