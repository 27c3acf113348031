// The DHCP server's replies to a guest, sent on from the old NIC's bridge
// port to the new NIC's port while the guest takes its lease on the new NIC
// (docs/swap-timeline.md, "Only the DHCP replies"): what
//
//   tc qdisc add dev OLD clsact
//   tc filter add dev OLD egress prio 245 protocol ip u32 \
//     match ip protocol 17 0xff match ip sport 67 0xffff match ip dport 68 0xffff \
//     action mirred egress redirect dev NEW
//
// does, as rtnetlink requests. Layouts per linux/rtnetlink.h, linux/pkt_sched.h,
// linux/pkt_cls.h, linux/tc_act/tc_mirred.h; host byte order unless marked be:
//
//   struct tcmsg       { u8 family; u8 pad1; u16 pad2; i32 ifindex; u32 handle; u32 parent; u32 info; }  20 bytes
//   struct tc_u32_sel  { u8 flags; u8 offshift; u8 nkeys; u8 pad; be16 offmask; u16 off; i16 offoff;
//                        i16 hoff; be32 hmask; struct tc_u32_key keys[]; }                                16 bytes
//   struct tc_u32_key  { be32 mask; be32 val; i32 off; i32 offmask; }                                   16 bytes
//   struct tc_mirred   { u32 index; u32 capab; i32 action; i32 refcnt; i32 bindcnt;  (tc_gen)
//                        i32 eaction; u32 ifindex; }                                                    28 bytes
//
// This kernel has u32 but not flower (docs/swap-timeline.md), so the match is
// u32's: the IPv4 header's protocol byte (offset 9, in the word at 8) and
// the UDP ports (the word at 20, an IHL-5 header: a DHCP server sends no options).

extension Netlink {
  static let RTM_NEWQDISC: UInt16 = 36
  static let RTM_DELQDISC: UInt16 = 37
  static let RTM_GETQDISC: UInt16 = 38
  static let RTM_NEWTFILTER: UInt16 = 44
  static let RTM_DELTFILTER: UInt16 = 45
  static let RTM_GETTFILTER: UInt16 = 46
  static let NLM_F_EXCL: UInt16 = 0x200
  static let TCA_KIND: UInt16 = 1
  static let TCA_OPTIONS: UInt16 = 2
  static let TCA_U32_SEL: UInt16 = 5
  static let TCA_U32_ACT: UInt16 = 7
  static let TCA_ACT_KIND: UInt16 = 1
  static let TCA_ACT_OPTIONS: UInt16 = 2
  static let TCA_MIRRED_PARMS: UInt16 = 2
  static let TC_U32_TERMINAL: UInt8 = 1
  static let TC_ACT_STOLEN: Int32 = 4
  static let TCA_EGRESS_REDIR: Int32 = 1
  /// TC_H_CLSACT (== TC_H_INGRESS): the clsact qdisc's parent; its handle is ffff:0.
  static let TC_H_CLSACT: UInt32 = 0xFFFF_FFF1
  static let clsactHandle: UInt32 = 0xFFFF_0000
  /// TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS): the parent of `tc filter … egress`.
  static let clsactEgress: UInt32 = 0xFFFF_FFF3
  static let clsactIngress: UInt32 = 0xFFFF_FFF2
  static let ETH_P_IP: UInt16 = 0x0800

  /// The priority vfshift's filter takes on the old port's egress: fixed, so
  /// a restarted agent finds (and removes) the one a killed one left.
  package static let dhcpRedirectPriority: UInt16 = 245

  static func tcmsg(index: Int32, handle: UInt32 = 0, parent: UInt32, info: UInt32 = 0) -> [UInt8] {
    var b: [UInt8] = [AF_UNSPEC, 0, 0, 0]
    appendHostOrder(index, to: &b)
    appendHostOrder(handle, to: &b)
    appendHostOrder(parent, to: &b)
    appendHostOrder(info, to: &b)
    return b
  }

  /// tcm_info of a filter: its priority in the upper half, its protocol
  /// (network byte order, as htons leaves it) in the lower.
  static var dhcpFilterInfo: UInt32 {
    UInt32(dhcpRedirectPriority) << 16 | UInt32(ETH_P_IP.bigEndian)
  }

  static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

  /// `tc qdisc add dev PORT clsact`.
  package static func clsactAddMessage(portIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_NEWQDISC, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, sequence: sequence,
            family: tcmsg(index: portIndex, handle: clsactHandle, parent: TC_H_CLSACT),
            attributes: [(TCA_KIND, cString("clsact"))])
  }

  /// `tc qdisc del dev PORT clsact`.
  package static func clsactDeleteMessage(portIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_DELQDISC, flags: NLM_F_REQUEST | NLM_F_ACK, sequence: sequence,
            family: tcmsg(index: portIndex, handle: clsactHandle, parent: TC_H_CLSACT))
  }

  /// `tc qdisc show`: every qdisc (a GET of the ingress hook's qdisc is
  /// answered with an ACK alone on this kernel, so the kind comes from a dump).
  package static func qdiscDumpMessage(portIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_GETQDISC, flags: NLM_F_REQUEST | NLM_F_DUMP, sequence: sequence,
            family: tcmsg(index: portIndex, parent: 0))
  }

  /// The u32 filter on the port's egress that redirects IPv4 UDP from port 67
  /// to port 68 (a DHCP server's reply) out of `toIndex` instead.
  package static func dhcpRedirectAddMessage(portIndex: Int32, toIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    var mirred: [UInt8] = []
    for v in [UInt32(0), 0] { appendHostOrder(v, to: &mirred) }                       // index, capab
    for v in [TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR] { appendHostOrder(v, to: &mirred) } // action, refcnt, bindcnt, eaction
    appendHostOrder(UInt32(bitPattern: toIndex), to: &mirred)
    let action = attribute(TCA_ACT_KIND, cString("mirred"))
      + attribute(TCA_ACT_OPTIONS | NLA_F_NESTED, attribute(TCA_MIRRED_PARMS, mirred))
    // Keys sharing a word are merged into one, as tc's pack_key does.
    let keys: [(mask: UInt32, value: UInt32, offset: Int32)] = [
      (0x00FF_0000, 0x0011_0000, 8),    // ip protocol 17 (UDP)
      (0xFFFF_FFFF, 0x0043_0044, 20),   // sport 67, dport 68
    ]
    var sel: [UInt8] = [TC_U32_TERMINAL, 0, UInt8(keys.count), 0]
    sel += [UInt8](repeating: 0, count: 12)  // offmask, off, offoff, hoff, hmask
    for k in keys {
      sel += bigEndian(k.mask) + bigEndian(k.value)
      appendHostOrder(k.offset, to: &sel)
      appendHostOrder(Int32(0), to: &sel)
    }
    let options = attribute(TCA_U32_ACT | NLA_F_NESTED, attribute(1 | NLA_F_NESTED, action))
      + attribute(TCA_U32_SEL, sel)
    return request(type: RTM_NEWTFILTER, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                   sequence: sequence, family: tcmsg(index: portIndex, parent: clsactEgress, info: dhcpFilterInfo),
                   attributes: [(TCA_KIND, cString("u32")), (TCA_OPTIONS | NLA_F_NESTED, options)])
  }

  /// `tc filter del dev PORT egress prio 245 protocol ip`: the whole
  /// priority, which holds only vfshift's filter.
  package static func dhcpRedirectDeleteMessage(portIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_DELTFILTER, flags: NLM_F_REQUEST | NLM_F_ACK, sequence: sequence,
            family: tcmsg(index: portIndex, parent: clsactEgress, info: dhcpFilterInfo))
  }

  /// `tc filter show dev PORT ingress|egress`.
  package static func filterDumpMessage(portIndex: Int32, parent: UInt32, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_GETTFILTER, flags: NLM_F_REQUEST | NLM_F_DUMP, sequence: sequence,
            family: tcmsg(index: portIndex, parent: parent))
  }
}

/// Which filters a dump of one port's ingress or egress showed: each one's
/// priority (tcm_info's upper half). Pure and total, for the tests and fuzzing.
public func parseFilterDump(_ bytes: [UInt8]) throws(NetlinkError) -> (priorities: [UInt16], done: Bool) {
  var priorities: [UInt16] = []
  let done = try parseDump(bytes, request: "RTM_GETTFILTER", type: Netlink.RTM_NEWTFILTER) { view, m in
    priorities.append(UInt16(view.u32(m.payload + 16) >> 16))
  }
  return (priorities, done)
}

/// The qdiscs one datagram of an RTM_GETQDISC dump describes: each one's
/// device, parent and kind (TCA_KIND). Pure and total, for the tests and fuzzing.
public func parseQdiscDump(_ bytes: [UInt8]) throws(NetlinkError)
  -> (qdiscs: [(index: Int32, parent: UInt32, kind: String?)], done: Bool) {
  var qdiscs: [(index: Int32, parent: UInt32, kind: String?)] = []
  let done = try parseDump(bytes, request: "RTM_GETQDISC", type: Netlink.RTM_NEWQDISC) { view, m throws(NetlinkError) in
    var kind: String?
    try forEachAttribute(view, from: m.payload + 20, to: m.end) { type, p, len throws(NetlinkError) in
      if type == Netlink.TCA_KIND { kind = view.string(p, length: len) }
    }
    qdiscs.append((Int32(bitPattern: view.u32(m.payload + 4)), view.u32(m.payload + 12), kind))
  }
  return (qdiscs, done)
}

/// One datagram of a traffic-control dump: `body` gets each message of
/// `type` (checked to hold its tcmsg); true when NLMSG_DONE ended it.
func parseDump(_ bytes: [UInt8], request: String, type: UInt16,
               _ body: (ByteView, NetlinkMessage) throws(NetlinkError) -> Void) throws(NetlinkError) -> Bool {
  try withByteView(bytes) { view throws(NetlinkError) in
    var done = false
    try forEachMessage(view) { m throws(NetlinkError) in
      switch m.type {
      case Netlink.NLMSG_DONE:
        if m.length >= Netlink.headerSize + 4, case let e = Int32(bitPattern: view.u32(m.payload)), e < 0, e != .min {
          throw .kernel(request: request, errno: -e)
        }
        done = true
        return false
      case Netlink.NLMSG_ERROR:
        _ = try checkError(view, m, request: request)
      case type:
        guard m.length >= Netlink.headerSize + 20 else {
          throw .malformed(offset: m.offset, reason: "message type \(type) of \(m.length) bytes, shorter than nlmsghdr + tcmsg")
        }
        try body(view, m)
      default: break
      }
      return true
    }
    return done
  }
}

/// What the old port had before vfshift's redirect: whether the clsact
/// qdisc was vfshift's to remove.
public enum DHCPRedirect: Sendable, Equatable {
  case onOwnQdisc
  case onExistingClsact
}

/// Sends the DHCP server's replies that would leave by `port` out of `to`
/// instead. A port whose ingress qdisc is not clsact (libvirt's inbound
/// bandwidth limit uses `ingress`) refuses it; the caller falls back.
public func redirectDHCPReplies(from port: String, to newPort: String) throws(NetlinkError) -> DHCPRedirect {
  let index = try interfaceIndex(port), to = try interfaceIndex(newPort)
  var kind = DHCPRedirect.onOwnQdisc
  do { try exchange(Netlink.clsactAddMessage(portIndex: index), what: "RTM_NEWQDISC \(port) clsact") } catch {
    guard case .kernel(_, let errno) = error, errno == KernelErrno.exists else { throw error }
    // An `ingress` qdisc holds the same handle and takes a filter meant for
    // clsact's egress onto its ingress: the redirect would never run.
    let found = try ingressQdiscKind(index)
    guard found == "clsact" else {
      throw .refused(device: port, reason: "its ingress qdisc is \(found ?? "unknown"), not clsact; left as it is")
    }
    kind = .onExistingClsact
  }
  do {
    try exchange(Netlink.dhcpRedirectAddMessage(portIndex: index, toIndex: to),
                 what: "RTM_NEWTFILTER \(port) egress prio \(Netlink.dhcpRedirectPriority) u32 udp 67->68 mirred redirect \(newPort)")
  } catch {
    if kind == .onOwnQdisc { try? exchange(Netlink.clsactDeleteMessage(portIndex: index), what: "RTM_DELQDISC \(port) clsact") }
    throw error
  }
  return kind
}

/// Whether `port` carries vfshift's redirect (nil: no such device).
public func hasDHCPRedirect(_ port: String) -> Bool? {
  guard let index = try? interfaceIndex(port) else { return nil }
  return (try? filterPriorities(index, parent: Netlink.clsactEgress))?.contains(Netlink.dhcpRedirectPriority) ?? false
}

/// Takes vfshift's redirect off `port`, and the clsact qdisc with it when no
/// other filter is left on it: after a crash nothing says whether the qdisc
/// was vfshift's, and an empty one does nothing. False when there was none
/// (or no such port: a tap goes with its NIC).
@discardableResult
public func removeDHCPRedirect(_ port: String) throws(NetlinkError) -> Bool {
  guard let index = try? interfaceIndex(port) else { return false }
  guard try filterPriorities(index, parent: Netlink.clsactEgress).contains(Netlink.dhcpRedirectPriority) else { return false }
  try exchange(Netlink.dhcpRedirectDeleteMessage(portIndex: index), what: "RTM_DELTFILTER \(port) egress prio \(Netlink.dhcpRedirectPriority)")
  if try filterPriorities(index, parent: Netlink.clsactEgress).isEmpty,
     try filterPriorities(index, parent: Netlink.clsactIngress).isEmpty {
    try exchange(Netlink.clsactDeleteMessage(portIndex: index), what: "RTM_DELQDISC \(port) clsact")
  }
  return true
}

/// The kind of the qdisc on a port's ingress hook (clsact, ingress), nil for none.
func ingressQdiscKind(_ index: Int32) throws(NetlinkError) -> String? {
  var kind: String?
  try exchangeDatagrams(Netlink.qdiscDumpMessage(portIndex: index), what: "RTM_GETQDISC", bufferBytes: 1 << 20) { bytes throws(NetlinkError) in
    let part = try parseQdiscDump(bytes)
    if let q = part.qdiscs.first(where: { $0.index == index && $0.parent == Netlink.TC_H_CLSACT }) { kind = q.kind }
    return part.done
  }
  return kind
}

/// The priorities of the filters on one side of a port's clsact; empty when
/// the port has no clsact (the kernel answers EINVAL or ENOENT for it).
func filterPriorities(_ index: Int32, parent: UInt32) throws(NetlinkError) -> [UInt16] {
  var all: [UInt16] = []
  do {
    try exchangeDatagrams(Netlink.filterDumpMessage(portIndex: index, parent: parent), what: "RTM_GETTFILTER") { bytes throws(NetlinkError) in
      let part = try parseFilterDump(bytes)
      all += part.priorities
      return part.done
    }
  } catch {
    if case .kernel(_, let errno) = error, errno == KernelErrno.invalid || errno == KernelErrno.notFound { return [] }
    throw error
  }
  return all
}
