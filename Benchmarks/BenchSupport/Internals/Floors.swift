// The benchmarks' floors and naive alternatives, the only C of the
// benchmark support: what the kernel costs at the least and what polling one
// interface at a time costs, timed beside vfshift's own readers. Not part of
// VFShiftHost's API: the agent never runs them.
#if canImport(Glibc)
import Glibc
#endif
import VFShiftCore
import VFShiftHost

/// The kernel's own cost to hand over every link's counters: one rtnetlink
/// dump, received to NLMSG_DONE, looking at nothing but each message's length
/// and type — no attribute walk, no names, no allocation per link.
/// bench-counters and bench-agent time vfshift's readers and cycle against it
/// in the same run, so both measure the same floor. The socket belongs to the
/// network namespace of the thread that creates it.
public final class BareNetlinkDump {
  public enum Request: String, Sendable, CaseIterable {
    /// RTM_GETSTATS filtered to IFLA_STATS_LINK_64, what NetlinkStatsReader(.getStats) sends.
    case getStats
    /// RTM_GETLINK with everything, what NetlinkStatsReader(.getLink) sends.
    case getLink
  }

  private let socket: NetlinkSocket
  private var buffer = receiveBuffer(count: 1 << 20)
  private var sequence: UInt32 = 0

  public init() throws(SystemCallError) { socket = try NetlinkSocket() }

  /// One dump; returns the bytes the kernel sent. Throws on NLMSG_ERROR, a
  /// truncated datagram or a bad length (the floor is no parser, but it must
  /// not loop on garbage).
  public func dump(_ request: Request) throws(SystemCallError) -> Int {
    sequence &+= 1
    let message = switch request {
    case .getStats:
      Netlink.request(type: Netlink.RTM_GETSTATS, flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP, sequence: sequence,
                      family: Netlink.ifStatsMsg(filterMask: 1 << (UInt32(Netlink.IFLA_STATS_LINK_64) - 1)))
    case .getLink:
      Netlink.request(type: Netlink.RTM_GETLINK, flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP, sequence: sequence,
                      family: Netlink.ifinfomsg())
    }
    try socket.send(message)
    var total = 0
    while true {
      guard case .bytes(let n) = try socket.receive(into: &buffer) else {
        throw SystemCallError(call: "recv", subject: "bare \(request.rawValue) dump: datagram larger than \(buffer.count) bytes", errno: EMSGSIZE)
      }
      total += n
      let done: Bool? = buffer.withUnsafeBytes { raw in
        var offset = 0
        while offset + 16 <= n {
          let length = Int(raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
          let type = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
          if type == Netlink.NLMSG_DONE { return true }
          if type == Netlink.NLMSG_ERROR || length < 16 { return nil }
          offset += Netlink.align(length)
        }
        return false
      }
      guard let done else {
        throw SystemCallError(call: "recv", subject: "bare \(request.rawValue) dump: NLMSG_ERROR or nlmsg_len < 16", errno: EPROTO)
      }
      if done { return total }
    }
  }
}

// MARK: - libvirt's way of reading one interface

/// What libvirt's virNetDevTapInterfaceStats does for one interface: fopen
/// /proc/net/dev, fgets line by line until "NAME:", parse that line, fclose.
/// Kept as the alternative the benchmarks compare against: one open and scan
/// per interface is what polling VMs one by one costs.
public func perInterfaceLookup(_ name: String, path: String = "/proc/net/dev") -> InterfaceCounters? {
  guard let fp = fopen(path, "r") else { return nil }
  defer { fclose(fp) }
  var line = [CChar](repeating: 0, count: 256)
  while fgets(&line, 256, fp) != nil {
    guard let colon = strchr(line, 0x3A) else { continue }
    colon.pointee = 0
    var start = line.withUnsafeBufferPointer { $0.baseAddress! }
    while start.pointee == 0x20 { start += 1 }
    if strcmp(start, name) == 0 {
      var fields = [UInt64](repeating: 0, count: 16)
      var p = colon + 1
      for i in 0..<16 {
        var end: UnsafeMutablePointer<CChar>? = nil
        fields[i] = strtoull(p, &end, 10)
        p = end!
      }
      return InterfaceCounters(rxBytes: fields[0], rxPackets: fields[1], rxErrors: fields[2], rxDrops: fields[3],
                               txBytes: fields[8], txPackets: fields[9], txErrors: fields[10], txDrops: fields[11])
    }
  }
  return nil
}
