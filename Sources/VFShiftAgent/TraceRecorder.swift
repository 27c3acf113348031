import Foundation
import VFShiftCore
import VFShiftFiles

/// Appends the observed samples to a trace file, in the format `whatif` reads.
final class TraceRecorder {
  let handle: FileHandle
  var keys: [String: String] = [:]   // uuid → key
  /// Keys handed out so far: a domain re-created under an old name gets its own.
  var takenKeys = Set<String>()
  var present = Set<String>()

  init(path: String, interval: Double, pools: [String: Int]) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil) else {
      throw FileError(path: path, reason: "cannot be created")
    }
    handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    var header = "\(Trace.magic)\nsource recorded by vfshift on \(ProcessInfo.processInfo.hostName)\ninterval \(interval)\n"
    for (name, n) in pools.sorted(by: { $0.key < $1.key }) { header += "pool \(encodeField(name)) \(n)\n" }
    handle.write(header.data(using: .utf8)!)
  }

  func record(_ observation: Observation, now: Instant) {
    var out = ""
    let seen = Set(observation.vms.map(\.identity.uuid))
    for uuid in present.subtracting(seen).sorted() { out += "gone \(keys[uuid]!)\n"; present.remove(uuid) }
    for vm in observation.vms where !present.contains(vm.identity.uuid) {
      if let key = keys[vm.identity.uuid] {
        out += "back \(key)\n"
      } else {
        let key = Trace.uniqueKey(for: vm.identity.name, taken: &takenKeys)
        keys[vm.identity.uuid] = key
        out += Trace.vmLine(key: key, vm.identity)
      }
      present.insert(vm.identity.uuid)
    }
    out += "c \(now.seconds)\n"
    for vm in observation.vms {
      switch vm.reading {
      case .stale: continue
      default: out += Trace.sampleLine(keys[vm.identity.uuid]!, vm.reading) + "\n"
      }
    }
    handle.write(out.data(using: .utf8)!)
  }

  func close() { try? handle.synchronize(); try? handle.close() }
}
