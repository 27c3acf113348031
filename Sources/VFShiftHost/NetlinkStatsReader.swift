import VFShiftCore

/// Reads every interface's counters over rtnetlink, without the kernel
/// formatting text.
///
/// `.getStats` (the default, the faster one at 4,000 interfaces: see
/// docs/observation.md) dumps RTM_GETSTATS filtered to IFLA_STATS_LINK_64: ~230
/// bytes per link, but no names. Names come from one RTM_GETLINK dump at start,
/// then from the RTNLGRP_LINK notifications (new, renamed, deleted links) that a
/// second, non-blocking socket collects between cycles; an index the table does
/// not know, or a notification overrun, triggers a fresh RTM_GETLINK dump.
///
/// `.getLink` dumps RTM_GETLINK and takes IFLA_IFNAME + IFLA_STATS64 from each
/// message: names always current, but ~1.5 KB of attributes per link.
///
/// Both sockets belong to the network namespace of the thread that creates the
/// reader, and are closed when the reader goes away.
public final class NetlinkStatsReader: CounterReader {
  public enum Request: String, Sendable, CaseIterable { case getStats, getLink }

  public let request: Request
  private let socket: NetlinkSocket
  private let notifications: NetlinkSocket?
  private var buffer: [UInt8]
  private var sequence: UInt32 = 1

  private var namesByIndex: [Int32: String] = [:]
  private var namesChanged = true
  private var lastIndexes: [Int32] = []
  private var lastKeys: [NameKey] = []
  private var lastNames: InterfaceNames? = nil
  private var indexes: [Int32] = []
  private var keys: [NameKey] = []
  private var linkNames: [String] = []

  private static let dumpTries = 3

  public init(request: Request = .getStats) throws(NetlinkError) {
    self.request = request
    // Dump datagrams are at most ~32 KB (the kernel caps netlink_dump's skb),
    // but a single RTM_NEWLINK with many VFs can be larger: 1 MiB, kept.
    self.buffer = receiveBuffer(count: 1 << 20)
    do {
      socket = try NetlinkSocket()
      notifications = request == .getStats ? try NetlinkSocket(groups: Netlink.RTMGRP_LINK, nonBlocking: true) : nil
    } catch {
      throw .system(error)
    }
    if request == .getStats { try refreshNames() }
  }

  public func read() throws(NetlinkError) -> CounterSnapshot {
    switch request {
    case .getStats: try readStats()
    case .getLink: try readLinks()
    }
  }

  // MARK: RTM_GETSTATS

  private func readStats() throws(NetlinkError) -> CounterSnapshot {
    try drainNotifications()
    var counters: [InterfaceCounters] = []
    // A local array, not the property, inside the per-message closure: a class
    // property pays a dynamic exclusivity check on every append.
    var indexes: [Int32] = []
    swap(&indexes, &self.indexes)
    defer { swap(&indexes, &self.indexes) }
    for attempt in 1...Self.dumpTries {
      counters.removeAll(keepingCapacity: true)
      counters.reserveCapacity(lastIndexes.count)
      indexes.removeAll(keepingCapacity: true)
      let request = Netlink.request(
        type: Netlink.RTM_GETSTATS, flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP, sequence: nextSequence(),
        family: Netlink.ifStatsMsg(filterMask: 1 << (UInt32(Netlink.IFLA_STATS_LINK_64) - 1)))
      let interrupted = try dump(request, name: "RTM_GETSTATS") { view, m throws(NetlinkError) in
        guard m.type == Netlink.RTM_NEWSTATS else { return }
        guard m.length >= Netlink.headerSize + Netlink.ifStatsMsgSize else {
          throw .malformed(offset: m.offset, reason: "RTM_NEWSTATS of \(m.length) bytes, shorter than nlmsghdr + if_stats_msg")
        }
        var found: InterfaceCounters? = nil
        // What the kernel sends for this filter: one IFLA_STATS_LINK_64
        // filling the rest of the message. Read it straight; anything else
        // takes the general walk, which gives the same for this case and the
        // errors for the others (the walk per link was ~40 % of the reader's
        // own instructions, bench-agent under callgrind).
        let start = m.payload + Netlink.ifStatsMsgSize, end = m.end
        let first = end - start >= Netlink.attributeHeaderSize ? Int(view.u16(start)) : 0
        if first >= Netlink.attributeHeaderSize, first <= end - start, Netlink.align(first) >= end - start,
           view.u16(start + 2) & Netlink.attributeTypeMask == Netlink.IFLA_STATS_LINK_64 {
          found = try interfaceCounters(stats64: view, at: start + Netlink.attributeHeaderSize,
                                        length: first - Netlink.attributeHeaderSize)
        } else {
          try forEachAttribute(view, from: start, to: end) { type, p, len throws(NetlinkError) in
            if type == Netlink.IFLA_STATS_LINK_64 { found = try interfaceCounters(stats64: view, at: p, length: len) }
          }
        }
        guard let c = found else { return }  // a link without 64-bit stats is not reported
        indexes.append(Int32(bitPattern: view.u32(m.payload + 4)))
        counters.append(c)
      }
      if !interrupted { break }
      if attempt == Self.dumpTries { throw .inconsistentDump(request: "RTM_GETSTATS", tries: attempt) }
    }

    if !namesChanged, let last = lastNames, indexes == lastIndexes {
      return CounterSnapshot(interfaces: last, counters: counters)
    }
    if indexes.contains(where: { namesByIndex[$0] == nil }) { try refreshNames() }
    // A link deleted between the name dump and the stats dump has no name: drop it.
    var names: [String] = []
    names.reserveCapacity(indexes.count)
    var kept: [InterfaceCounters] = []
    kept.reserveCapacity(counters.count)
    var keptIndexes: [Int32] = []
    for (i, index) in indexes.enumerated() {
      guard let name = namesByIndex[index] else { continue }
      names.append(name); kept.append(counters[i]); keptIndexes.append(index)
    }
    guard let interfaces = InterfaceNames(names) else {
      throw .malformed(offset: 0, reason: "two links share a name in one RTM_GETSTATS dump")
    }
    // Remember the kernel's index order (with the dropped ones) only when
    // nothing was dropped, so the fast path is exact.
    if keptIndexes.count == indexes.count {
      lastIndexes = indexes
      lastNames = interfaces
      namesChanged = false
    } else {
      lastNames = nil
    }
    return CounterSnapshot(interfaces: interfaces, counters: kept)
  }

  /// Names of all links from an RTM_GETLINK dump that skips statistics.
  private func refreshNames() throws(NetlinkError) {
    for attempt in 1...Self.dumpTries {
      var fresh: [Int32: String] = [:]
      let request = Netlink.request(
        type: Netlink.RTM_GETLINK, flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP, sequence: nextSequence(),
        family: Netlink.ifinfomsg(),
        attributes: [(Netlink.IFLA_EXT_MASK, Netlink.u32(Netlink.RTEXT_FILTER_SKIP_STATS))])
      let interrupted = try dump(request, name: "RTM_GETLINK (names)") { view, m throws(NetlinkError) in
        guard m.type == Netlink.RTM_NEWLINK else { return }
        let link = try parseNewLink(view, m)
        if let name = link.name { fresh[link.index] = name }
      }
      if !interrupted || attempt == Self.dumpTries {
        namesByIndex = fresh
        namesChanged = true
        return
      }
    }
  }

  /// Applies the link notifications queued since the last cycle.
  private func drainNotifications() throws(NetlinkError) {
    guard let notifications else { return }
    while true {
      let received: NetlinkSocket.Received
      do {
        received = try notifications.receive(into: &buffer)
      } catch where error.isReceiveOverrun {
        // The kernel dropped notifications: nothing short of a full dump is exact.
        try refreshNames()
        continue
      } catch {
        throw .system(error)
      }
      switch received {
      case .nothing: return
      case .truncated: try refreshNames()
      case .bytes(let n):
        try withByteView(buffer, count: n) { view throws(NetlinkError) in
          try forEachMessage(view) { m throws(NetlinkError) in
            switch m.type {
            case Netlink.RTM_NEWLINK:
              let link = try parseNewLink(view, m)
              if let name = link.name, namesByIndex[link.index] != name {
                namesByIndex[link.index] = name
                namesChanged = true
              }
            case Netlink.RTM_DELLINK:
              let link = try parseNewLink(view, m)
              if namesByIndex.removeValue(forKey: link.index) != nil { namesChanged = true }
            default: break
            }
            return true
          }
        }
      }
    }
  }

  // MARK: RTM_GETLINK

  private func readLinks() throws(NetlinkError) -> CounterSnapshot {
    var counters: [InterfaceCounters] = []
    for attempt in 1...Self.dumpTries {
      counters.removeAll(keepingCapacity: true)
      counters.reserveCapacity(lastKeys.count)
      keys.removeAll(keepingCapacity: true)
      linkNames.removeAll(keepingCapacity: true)
      var sameAsLast = lastNames != nil
      let request = Netlink.request(
        type: Netlink.RTM_GETLINK, flags: Netlink.NLM_F_REQUEST | Netlink.NLM_F_DUMP, sequence: nextSequence(),
        family: Netlink.ifinfomsg())
      let interrupted = try dump(request, name: "RTM_GETLINK") { view, m throws(NetlinkError) in
        guard m.type == Netlink.RTM_NEWLINK else { return }
        guard m.length >= Netlink.headerSize + Netlink.ifinfomsgSize else {
          throw .malformed(offset: m.offset, reason: "RTM_NEWLINK of \(m.length) bytes, shorter than nlmsghdr + ifinfomsg")
        }
        var name: (Int, Int)? = nil
        var found: InterfaceCounters? = nil
        try forEachAttribute(view, from: m.payload + Netlink.ifinfomsgSize, to: m.end) { type, p, len throws(NetlinkError) in
          switch type {
          case Netlink.IFLA_IFNAME: name = (p, len)
          case Netlink.IFLA_STATS64: found = try interfaceCounters(stats64: view, at: p, length: len)
          default: break
          }
        }
        guard let (p, len) = name, let c = found else { return }
        var length = 0
        while length < len && view[p + length] != 0 { length += 1 }
        guard length <= 16 else { throw .malformed(offset: p, reason: "IFLA_IFNAME of \(length) bytes, longer than IFNAMSIZ") }
        let key = view.nameKey(p, length: length)
        let i = keys.count
        keys.append(key)
        if sameAsLast && (i >= lastKeys.count || lastKeys[i] != key) {
          // Catch up: the names so far were skipped on the assumption they repeat.
          sameAsLast = false
          linkNames = lastNames!.names[0..<i].map { $0 }
        }
        if !sameAsLast { linkNames.append(view.string(p, length: length)) }
        counters.append(c)
      }
      if interrupted {
        if attempt == Self.dumpTries { throw .inconsistentDump(request: "RTM_GETLINK", tries: attempt) }
        continue
      }
      if sameAsLast, let last = lastNames, keys.count == lastKeys.count {
        return CounterSnapshot(interfaces: last, counters: counters)
      }
      if sameAsLast, let last = lastNames { linkNames = Array(last.names[0..<keys.count]) }
      guard let interfaces = InterfaceNames(linkNames) else {
        throw .malformed(offset: 0, reason: "two links share a name in one RTM_GETLINK dump")
      }
      lastNames = interfaces
      swap(&lastKeys, &keys)
      return CounterSnapshot(interfaces: interfaces, counters: counters)
    }
    throw .inconsistentDump(request: "RTM_GETLINK", tries: Self.dumpTries)
  }

  // MARK: Dump plumbing

  private func nextSequence() -> UInt32 {
    sequence &+= 1
    return sequence
  }

  /// Sends a dump request and hands every message of this sequence to `body`
  /// until NLMSG_DONE. Returns whether the kernel flagged the dump as
  /// interrupted by concurrent changes.
  private func dump(_ request: [UInt8], name: String,
                    _ body: (ByteView, NetlinkMessage) throws(NetlinkError) -> Void) throws(NetlinkError) -> Bool {
    let sequence = self.sequence
    do { try socket.send(request) } catch { throw .system(error) }
    var interrupted = false
    var done = false
    while !done {
      let received: NetlinkSocket.Received
      do { received = try socket.receive(into: &buffer) } catch { throw .system(error) }
      switch received {
      case .nothing: continue
      case .truncated(let needed):
        // The datagram is lost; grow for the retry and report it.
        buffer = receiveBuffer(count: needed * 2)
        throw .malformed(offset: 0, reason: "\(name): datagram of \(needed) bytes exceeded the receive buffer")
      case .bytes(let n):
        try withByteView(buffer, count: n) { view throws(NetlinkError) in
          try forEachMessage(view) { m throws(NetlinkError) in
            // A datagram left over from an earlier, abandoned request: skip.
            guard view.u32(m.offset + 8) == sequence else { return true }
            if m.flags & Netlink.NLM_F_DUMP_INTR != 0 { interrupted = true }
            if m.type == Netlink.NLMSG_DONE {
              if m.length >= Netlink.headerSize + 4 {
                let error = Int32(bitPattern: view.u32(m.payload))
                if error < 0 { throw .kernel(request: name, errno: -error) }
              }
              done = true
              return false
            }
            if try checkError(view, m, request: name) { return true }
            try body(view, m)
            return true
          }
        }
      }
    }
    return interrupted
  }
}
