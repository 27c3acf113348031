import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

public struct AgentConfig: Sendable {
  public var policyPath: String
  public var dryRun = false
  public var intervalSeconds: Double?
  public var uri = "qemu:///system"
  /// "HOST:PORT" for /metrics; nil for none. Loopback unless told otherwise.
  public var metricsListen: String? = "127.0.0.1:9479"
  /// A node_exporter textfile to write the metrics into each cycle.
  public var metricsTextfile: String?
  /// Where `vfshift run` writes its status and `vfshift status` reads it.
  public static let defaultStatusPath = "/run/vfshift/status.json"
  public var statusPath = AgentConfig.defaultStatusPath
  public var lockPath = "/run/vfshift/agent.lock"
  /// The control socket `vfshift status` asks; nil: `control.sock` beside the status file.
  public var controlPath: String?
  /// Write the observed samples as a trace (for `whatif` on the host's own traffic).
  public var recordPath: String?
  /// Only record: observe, never decide or act.
  public var recordOnly = false
  /// How the host's own interface counters are read (netlink falls back to /proc/net/dev).
  public var counterSource: CounterSource = .preferred
  /// Where sysfs is, for VF representors and PF/VF numbers.
  public var sysfsRoot = "/sys"
  /// How long a guest agent may take to answer; nil: the interval, at least 1 s.
  public var guestAgentTimeoutSeconds: Int32?
  /// VFs per pool when libvirt's pool network cannot say (by policy pool name).
  public var poolSizes: [String: Int] = [:]
  /// Stop after this many cycles (tests, benchmarks); nil runs until SIGTERM.
  public var maxCycles: Int?
  public var attachDeadline: Duration = .seconds(15)
  public var detachDeadline: Duration = .seconds(10)
  /// Read each managed VM's CPU contention every Nth cycle: 150 kept the
  /// mean cycle within 1.3× its floor at 1,000 VMs × 4 vCPUs on both days
  /// bench-agent measured it (65 sufficed on one, not the other:
  /// docs/observation.md), about every 2.5 minutes at 1 s.
  public var contentionEveryNth = 150
  /// Where the contention is read: /proc, and libvirt's QEMU pid files.
  public var procRoot = "/proc"
  public var qemuRunDirectory = "/run/libvirt/qemu"
  /// Called at each swap step by name: the fault tests' seam (`faultInjectionFromEnvironment`).
  public var stepHook: (@Sendable (SwapStep) -> Void)?

  public init(policyPath: String) { self.policyPath = policyPath }
}
