import VFShiftCore

// Netlink message layout per linux/netlink.h, linux/rtnetlink.h and
// linux/if_link.h, as byte offsets. All fields are in host byte order.
//
//   struct nlmsghdr   { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   16 bytes
//   struct rtattr     { u16 len; u16 type; }                                 4 bytes
//   struct ifinfomsg  { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }  16 bytes
//   struct if_stats_msg { u8 family; u8 pad1; u16 pad2; u32 ifindex; u32 filter_mask; } 12 bytes
//   struct rtnl_link_stats64 { u64 rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors,
//                              tx_errors, rx_dropped, tx_dropped, multicast, collisions,
//                              rx_length_errors, rx_over_errors, rx_crc_errors,
//                              rx_frame_errors, rx_fifo_errors, rx_missed_errors, ... }
package enum Netlink {
  static let headerSize = 16
  static let attributeHeaderSize = 4
  static let ifinfomsgSize = 16
  static let ifStatsMsgSize = 12

  // nlmsg_type (linux/netlink.h, linux/rtnetlink.h)
  package static let NLMSG_ERROR: UInt16 = 2
  package static let NLMSG_DONE: UInt16 = 3
  static let RTM_NEWLINK: UInt16 = 16
  static let RTM_DELLINK: UInt16 = 17
  package static let RTM_GETLINK: UInt16 = 18
  static let RTM_NEWSTATS: UInt16 = 92
  package static let RTM_GETSTATS: UInt16 = 94

  // nlmsg_flags
  package static let NLM_F_REQUEST: UInt16 = 0x01
  static let NLM_F_MULTI: UInt16 = 0x02
  static let NLM_F_ACK: UInt16 = 0x04
  static let NLM_F_DUMP_INTR: UInt16 = 0x10
  package static let NLM_F_DUMP: UInt16 = 0x300  // NLM_F_ROOT | NLM_F_MATCH

  // IFLA_* (linux/if_link.h)
  static let IFLA_IFNAME: UInt16 = 3
  static let IFLA_VFINFO_LIST: UInt16 = 22
  static let IFLA_STATS64: UInt16 = 23
  static let IFLA_EXT_MASK: UInt16 = 29
  package static let IFLA_STATS_LINK_64: UInt16 = 1
  static let IFLA_VF_INFO: UInt16 = 1
  static let IFLA_VF_MAC: UInt16 = 1
  static let IFLA_VF_STATS: UInt16 = 8
  static let IFLA_VF_STATS_RX_PACKETS: UInt16 = 0
  static let IFLA_VF_STATS_TX_PACKETS: UInt16 = 1
  static let IFLA_VF_STATS_RX_BYTES: UInt16 = 2
  static let IFLA_VF_STATS_TX_BYTES: UInt16 = 3
  static let IFLA_VF_STATS_RX_DROPPED: UInt16 = 7
  static let IFLA_VF_STATS_TX_DROPPED: UInt16 = 8

  // linux/rtnetlink.h
  static let RTEXT_FILTER_VF: UInt32 = 1 << 0
  static let RTEXT_FILTER_SKIP_STATS: UInt32 = 1 << 3
  static let RTMGRP_LINK: UInt32 = 1
  static let AF_UNSPEC: UInt8 = 0

  /// Attribute type without NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000).
  static let attributeTypeMask: UInt16 = 0x3FFF

  @inline(__always) package static func align(_ n: Int) -> Int { (n + 3) & ~3 }

  /// One request: header, fixed family header, attributes (type, payload).
  package static func request(type: UInt16, flags: UInt16, sequence: UInt32, family: [UInt8],
                      attributes: [(UInt16, [UInt8])] = []) -> [UInt8] {
    var body = family
    while body.count % 4 != 0 { body.append(0) }
    for (attrType, payload) in attributes {
      appendHostOrder(UInt16(attributeHeaderSize + payload.count), to: &body)
      appendHostOrder(attrType, to: &body)
      body += payload
      while body.count % 4 != 0 { body.append(0) }
    }
    var message: [UInt8] = []
    message.reserveCapacity(headerSize + body.count)
    appendHostOrder(UInt32(headerSize + body.count), to: &message)
    appendHostOrder(type, to: &message)
    appendHostOrder(flags, to: &message)
    appendHostOrder(sequence, to: &message)
    appendHostOrder(UInt32(0), to: &message)
    return message + body
  }

  package static func ifinfomsg(index: Int32 = 0) -> [UInt8] {
    var b: [UInt8] = [AF_UNSPEC, 0]
    appendHostOrder(UInt16(0), to: &b)
    appendHostOrder(index, to: &b)
    appendHostOrder(UInt32(0), to: &b)
    appendHostOrder(UInt32(0), to: &b)
    return b
  }

  package static func ifStatsMsg(filterMask: UInt32) -> [UInt8] {
    var b: [UInt8] = [AF_UNSPEC, 0]
    appendHostOrder(UInt16(0), to: &b)
    appendHostOrder(UInt32(0), to: &b)  // ifindex 0: every link
    appendHostOrder(filterMask, to: &b)
    return b
  }

  static func u32(_ v: UInt32) -> [UInt8] { var b: [UInt8] = []; appendHostOrder(v, to: &b); return b }

  static func cString(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
}

/// Why a netlink exchange failed: the socket call, the kernel's answer, or a
/// message that does not follow the UAPI layout (with its byte offset).
public enum NetlinkError: Error, Sendable, Equatable, CustomStringConvertible {
  case system(SystemCallError)
  /// NLMSG_ERROR (or a failed NLMSG_DONE) with the kernel's errno for `request`.
  case kernel(request: String, errno: Int32)
  case malformed(offset: Int, reason: String)
  /// A dump was interrupted by concurrent changes (NLM_F_DUMP_INTR) every try.
  case inconsistentDump(request: String, tries: Int)
  /// The device is in a state the request must not change (what it found, why).
  case refused(device: String, reason: String)

  public var description: String {
    switch self {
    case .system(let e): "netlink: \(e)"
    case .kernel(let request, let errno):
      "netlink \(request): kernel answered \(SystemCallError(call: "", subject: "", errno: errno).errnoName)"
        + " (\(errno))"
    case .malformed(let offset, let reason): "netlink message malformed at byte \(offset): \(reason)"
    case .inconsistentDump(let request, let tries): "netlink \(request): dump interrupted by changes \(tries) times in a row"
    case .refused(let device, let reason): "\(device): \(reason)"
    }
  }
}

/// One netlink message within a received buffer.
struct NetlinkMessage {
  var offset: Int       // of the nlmsghdr
  var length: Int       // nlmsg_len
  var type: UInt16
  var flags: UInt16
  var payload: Int { offset + Netlink.headerSize }
  var end: Int { offset + length }
}

/// Walks the messages of one datagram, checking every length against the bytes
/// there are. `body` returns false to stop early.
func forEachMessage(_ bytes: ByteView, _ body: (NetlinkMessage) throws(NetlinkError) -> Bool) throws(NetlinkError) {
  var offset = 0
  let n = bytes.count
  while offset < n {
    guard n - offset >= Netlink.headerSize else {
      throw .malformed(offset: offset, reason: "\(n - offset) bytes left, less than a 16-byte nlmsghdr")
    }
    let length = Int(bytes.u32(offset))
    guard length >= Netlink.headerSize else {
      throw .malformed(offset: offset, reason: "nlmsg_len \(length) shorter than its own header")
    }
    guard length <= n - offset else {
      throw .malformed(offset: offset, reason: "nlmsg_len \(length) runs past the \(n - offset) bytes received")
    }
    let message = NetlinkMessage(offset: offset, length: length, type: bytes.u16(offset + 4), flags: bytes.u16(offset + 6))
    guard try body(message) else { return }
    offset += min(Netlink.align(length), n - offset)
  }
}

/// Walks the attributes in `start..<end`; `body` gets (type without flags,
/// payload start, payload length).
func forEachAttribute(_ bytes: ByteView, from start: Int, to end: Int,
                      _ body: (UInt16, Int, Int) throws(NetlinkError) -> Void) throws(NetlinkError) {
  var offset = start
  while offset < end {
    guard end - offset >= Netlink.attributeHeaderSize else {
      throw .malformed(offset: offset, reason: "\(end - offset) bytes left, less than a 4-byte rtattr")
    }
    let length = Int(bytes.u16(offset))
    let type = bytes.u16(offset + 2) & Netlink.attributeTypeMask
    guard length >= Netlink.attributeHeaderSize else {
      throw .malformed(offset: offset, reason: "attribute type \(type): rta_len \(length) shorter than its header")
    }
    guard length <= end - offset else {
      throw .malformed(offset: offset, reason: "attribute type \(type): rta_len \(length) runs past its container (\(end - offset) bytes left)")
    }
    try body(type, offset + Netlink.attributeHeaderSize, length - Netlink.attributeHeaderSize)
    offset += min(Netlink.align(length), end - offset)
  }
}

/// Throws for NLMSG_ERROR with a non-zero errno; returns true for an ACK
/// (NLMSG_ERROR with errno 0).
func checkError(_ bytes: ByteView, _ message: NetlinkMessage, request: String) throws(NetlinkError) -> Bool {
  guard message.type == Netlink.NLMSG_ERROR else { return false }
  guard message.length >= Netlink.headerSize + 4 else {
    throw .malformed(offset: message.offset, reason: "NLMSG_ERROR of \(message.length) bytes has no errno")
  }
  let error = Int32(bitPattern: bytes.u32(message.payload))
  // The kernel sends -errno; Int32.min has no positive twin, and negating it
  // trapped (found by Benchmarks/fuzz-netlink).
  guard error != .min else {
    throw .malformed(offset: message.payload, reason: "NLMSG_ERROR error \(error) is not a negated errno")
  }
  if error != 0 { throw .kernel(request: request, errno: -error) }
  return true
}

/// The counters the host reports in `struct rtnl_link_stats64`, mapped as
/// /proc/net/dev shows them (`dev_seq_printf_stats`: its "drop" column for
/// receive is rx_dropped + rx_missed_errors), so both readers agree.
@inline(__always)
func interfaceCounters(stats64 bytes: ByteView, at p: Int, length: Int) throws(NetlinkError) -> InterfaceCounters {
  guard length >= 64 else {
    throw .malformed(offset: p, reason: "rtnl_link_stats64 of \(length) bytes, need at least 64")
  }
  bytes.check(p, length: length >= 128 ? 128 : 64)
  let missed = length >= 128 ? bytes.u64(inChecked: p + 120) : 0
  return InterfaceCounters(rxBytes: bytes.u64(inChecked: p + 16), rxPackets: bytes.u64(inChecked: p + 0),
                           rxErrors: bytes.u64(inChecked: p + 32), rxDrops: bytes.u64(inChecked: p + 48) &+ missed,
                           txBytes: bytes.u64(inChecked: p + 24), txPackets: bytes.u64(inChecked: p + 8),
                           txErrors: bytes.u64(inChecked: p + 40), txDrops: bytes.u64(inChecked: p + 56))
}

// MARK: - Pure parsers, public for fuzzing

/// One link's counters from an RTM_NEWSTATS or RTM_NEWLINK message.
public struct LinkCounters: Sendable, Equatable {
  public var index: Int32
  /// From IFLA_IFNAME; RTM_NEWSTATS carries no name.
  public var name: String?
  /// `nil` when the message had no IFLA_STATS_LINK_64 / IFLA_STATS64.
  public var counters: InterfaceCounters?

  public init(index: Int32, name: String?, counters: InterfaceCounters?) {
    self.index = index; self.name = name; self.counters = counters
  }
}

/// What one received datagram of a dump held.
public struct NetlinkDumpPart: Sendable, Equatable {
  public var links: [LinkCounters]
  /// NLMSG_DONE was seen: the dump is complete.
  public var done: Bool
  /// NLM_F_DUMP_INTR was set on some message: the dump must be retried.
  public var interrupted: Bool
}

/// Parses one datagram of an RTM_GETSTATS (filter IFLA_STATS_LINK_64) or
/// RTM_GETLINK dump. Pure and total: malformed input gives `.malformed` with the
/// byte offset, never a trap.
public func parseLinkDump(_ bytes: [UInt8]) throws(NetlinkError) -> NetlinkDumpPart {
  try withByteView(bytes) { view throws(NetlinkError) in
    var part = NetlinkDumpPart(links: [], done: false, interrupted: false)
    try forEachMessage(view) { m throws(NetlinkError) in
      if m.flags & Netlink.NLM_F_DUMP_INTR != 0 { part.interrupted = true }
      switch m.type {
      case Netlink.NLMSG_DONE:
        part.done = true
        return false
      case Netlink.NLMSG_ERROR:
        _ = try checkError(view, m, request: "dump")
      case Netlink.RTM_NEWSTATS:
        guard m.length >= Netlink.headerSize + Netlink.ifStatsMsgSize else {
          throw .malformed(offset: m.offset, reason: "RTM_NEWSTATS of \(m.length) bytes, shorter than nlmsghdr + if_stats_msg")
        }
        var link = LinkCounters(index: Int32(bitPattern: view.u32(m.payload + 4)), name: nil, counters: nil)
        try forEachAttribute(view, from: m.payload + Netlink.ifStatsMsgSize, to: m.end) { type, p, len throws(NetlinkError) in
          if type == Netlink.IFLA_STATS_LINK_64 { link.counters = try interfaceCounters(stats64: view, at: p, length: len) }
        }
        part.links.append(link)
      case Netlink.RTM_NEWLINK:
        part.links.append(try parseNewLink(view, m))
      default:
        break
      }
      return true
    }
    return part
  }
}

func parseNewLink(_ view: ByteView, _ m: NetlinkMessage) throws(NetlinkError) -> LinkCounters {
  guard m.length >= Netlink.headerSize + Netlink.ifinfomsgSize else {
    throw .malformed(offset: m.offset, reason: "RTM_NEWLINK of \(m.length) bytes, shorter than nlmsghdr + ifinfomsg")
  }
  var link = LinkCounters(index: Int32(bitPattern: view.u32(m.payload + 4)), name: nil, counters: nil)
  try forEachAttribute(view, from: m.payload + Netlink.ifinfomsgSize, to: m.end) { type, p, len throws(NetlinkError) in
    switch type {
    case Netlink.IFLA_IFNAME: link.name = view.string(p, length: len)
    case Netlink.IFLA_STATS64: link.counters = try interfaceCounters(stats64: view, at: p, length: len)
    default: break
    }
  }
  return link
}
