import VFShiftCore

/// Reads the cumulative counters of every interface of one network namespace,
/// once per cycle. Implementations keep buffers and name tables between reads,
/// which is why `read` is mutating. Counters are the host's view: on a tap
/// (`vnetN`) the host's transmit is the guest's receive, on a `macvtapN` the
/// host's receive is the guest's receive (HostDeviceKind.vmCounters turns them).
public protocol CounterReader {
  mutating func read() throws -> CounterSnapshot
}

public enum CounterSource: String, Sendable, Equatable, CaseIterable {
  case procNetDev
  case netlink

  /// The faster of the two at 4,000 interfaces (bench-counters).
  public static let preferred: CounterSource = .netlink
}

/// The reader the agent uses: netlink by default, /proc/net/dev when netlink
/// cannot be opened or fails during a read — the fallback is taken once and
/// for good, with the reason kept for `vfshift status` and the log.
public final class HostCounterReader: CounterReader {
  public private(set) var source: CounterSource
  /// Why the reader is on /proc/net/dev although netlink was asked for.
  public private(set) var fallbackReason: String?
  private var netlink: (any CounterReader)?
  private var proc: ProcNetDevReader

  public convenience init(preferred: CounterSource = .preferred, procPath: String = "/proc/net/dev") {
    self.init(preferred: preferred, procPath: procPath, openNetlink: { try NetlinkStatsReader() })
  }

  /// `openNetlink` is where the tests make netlink fail on purpose.
  init(preferred: CounterSource, procPath: String, openNetlink: () throws -> any CounterReader) {
    proc = ProcNetDevReader(path: procPath)
    source = .procNetDev
    guard preferred == .netlink else { return }
    do {
      netlink = try openNetlink()
      source = .netlink
    } catch {
      fallbackReason = "netlink reader could not start: \(error)"
    }
  }

  public func read() throws -> CounterSnapshot {
    if netlink != nil {
      do {
        return try netlink!.read()
      } catch {
        fallbackReason = "netlink read failed, using \(proc.path) from now on: \(error)"
        netlink = nil
        source = .procNetDev
      }
    }
    return try proc.read()
  }
}
