import VFShiftCore

/// Per-VF traffic of a PF as its driver reports it over rtnetlink:
/// RTM_GETLINK on the PF with IFLA_EXT_MASK = RTEXT_FILTER_VF, then
/// IFLA_VFINFO_LIST → IFLA_VF_INFO (one per VF) → IFLA_VF_MAC (for the VF
/// number) and IFLA_VF_STATS (nested u64s).
///
/// Keys are VF numbers (the N of `virtfnN`). Counters are from the VF's side,
/// that is the guest's (HostDeviceKind.virtualFunction). IFLA_VF_STATS has no
/// error counters, so `rxErrors`/`txErrors` are 0; drops are 0 where the
/// kernel predates IFLA_VF_STATS_{RX,TX}_DROPPED. A VF whose driver sends no
/// IFLA_VF_STATS is left out of the map: its rate is unknown, not zero.
///
/// A device without VFs (a veth, a PF with SR-IOV off) gives an empty map.
/// Uses the network namespace of the calling thread.
public func vfStatistics(pf: String) throws(NetlinkError) -> [Int: InterfaceCounters] {
  let request = Netlink.request(
    type: Netlink.RTM_GETLINK, flags: Netlink.NLM_F_REQUEST, sequence: 1, family: Netlink.ifinfomsg(),
    attributes: [(Netlink.IFLA_IFNAME, Netlink.cString(pf)),
                 (Netlink.IFLA_EXT_MASK, Netlink.u32(Netlink.RTEXT_FILTER_VF))])
  var statistics: [Int: InterfaceCounters] = [:]
  try exchangeDatagrams(request, what: "RTM_GETLINK \(pf)", bufferBytes: 1 << 20) { datagram throws(NetlinkError) in
    do throws(NetlinkError) { statistics = try parseVFStatistics(datagram, pf: pf) } catch {
      if case .kernel(_, let errno) = error { throw .kernel(request: "RTM_GETLINK \(pf) with RTEXT_FILTER_VF", errno: errno) }
      throw error
    }
    return true
  }
  return statistics
}

/// Parses the reply to RTM_GETLINK with RTEXT_FILTER_VF (one RTM_NEWLINK, or
/// NLMSG_ERROR). Pure and total: truncated or malformed attributes give
/// `.malformed` with the byte offset and the attribute path, never a trap.
/// Public so a fuzz target can call it.
public func parseVFStatistics(_ bytes: [UInt8], pf: String = "PF") throws(NetlinkError) -> [Int: InterfaceCounters] {
  try withByteView(bytes) { view throws(NetlinkError) in
    var result: [Int: InterfaceCounters] = [:]
    var sawLink = false
    try forEachMessage(view) { m throws(NetlinkError) in
      if try checkError(view, m, request: "RTM_GETLINK \(pf)") { return true }
      guard m.type == Netlink.RTM_NEWLINK else { return true }
      guard m.length >= Netlink.headerSize + Netlink.ifinfomsgSize else {
        throw .malformed(offset: m.offset, reason: "RTM_NEWLINK of \(m.length) bytes, shorter than nlmsghdr + ifinfomsg")
      }
      sawLink = true
      try forEachAttribute(view, from: m.payload + Netlink.ifinfomsgSize, to: m.end) { type, p, len throws(NetlinkError) in
        guard type == Netlink.IFLA_VFINFO_LIST else { return }
        try forEachAttribute(view, from: p, to: p + len) { type, p, len throws(NetlinkError) in
          guard type == Netlink.IFLA_VF_INFO else { return }
          if let (vf, counters) = try parseVFInfo(view, from: p, length: len) {
            guard result.updateValue(counters, forKey: vf) == nil else {
              throw .malformed(offset: p, reason: "IFLA_VFINFO_LIST: VF \(vf) reported twice")
            }
          }
        }
      }
      return true
    }
    guard sawLink else {
      throw .malformed(offset: 0, reason: "reply for \(pf) holds no RTM_NEWLINK message")
    }
    return result
  }
}

/// One IFLA_VF_INFO: the VF number from IFLA_VF_MAC (`struct ifla_vf_mac
/// { u32 vf; u8 mac[32]; }`) and the counters from IFLA_VF_STATS. `nil` when
/// the driver sent no statistics for this VF.
private func parseVFInfo(_ view: ByteView, from start: Int, length: Int) throws(NetlinkError) -> (Int, InterfaceCounters)? {
  var vf: Int? = nil
  var stats: InterfaceCounters? = nil
  var statsOffset = start
  try forEachAttribute(view, from: start, to: start + length) { type, p, len throws(NetlinkError) in
    switch type {
    case Netlink.IFLA_VF_MAC:
      guard len >= 4 else {
        throw .malformed(offset: p, reason: "IFLA_VF_INFO/IFLA_VF_MAC of \(len) bytes, need 4 for the VF number")
      }
      vf = Int(view.u32(p))
    case Netlink.IFLA_VF_STATS:
      statsOffset = p
      var c = InterfaceCounters()
      try forEachAttribute(view, from: p, to: p + len) { type, p, len throws(NetlinkError) in
        let field: WritableKeyPath<InterfaceCounters, UInt64>
        switch type {
        case Netlink.IFLA_VF_STATS_RX_PACKETS: field = \.rxPackets
        case Netlink.IFLA_VF_STATS_TX_PACKETS: field = \.txPackets
        case Netlink.IFLA_VF_STATS_RX_BYTES: field = \.rxBytes
        case Netlink.IFLA_VF_STATS_TX_BYTES: field = \.txBytes
        case Netlink.IFLA_VF_STATS_RX_DROPPED: field = \.rxDrops
        case Netlink.IFLA_VF_STATS_TX_DROPPED: field = \.txDrops
        default: return  // broadcast, multicast, pad
        }
        guard len == 8 else {
          throw .malformed(offset: p, reason: "IFLA_VF_INFO/IFLA_VF_STATS/\(type) of \(len) bytes, expected a u64 (8)")
        }
        c[keyPath: field] = view.u64(p)
      }
      stats = c
    default:
      break
    }
  }
  guard let stats else { return nil }
  guard let vf else {
    throw .malformed(offset: statsOffset, reason: "IFLA_VF_INFO has IFLA_VF_STATS but no IFLA_VF_MAC to say which VF")
  }
  return (vf, stats)
}
