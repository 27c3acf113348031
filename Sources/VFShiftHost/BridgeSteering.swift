// The host side of a NIC swap's switch-over (docs/swap-timeline.md):
// turning the bridge's forwarding for a guest's MAC from the old NIC's port
// to the new one before the old NIC is unplugged, and clearing a real VF's
// MAC on its PF after a demotion (Documentation/networking/net_failover.rst).
//
//   struct ndmsg { u8 family; u8 pad1; u16 pad2; i32 ifindex; u16 state; u8 flags; u8 type; }   12 bytes
//   struct ifla_vf_mac { u32 vf; u8 mac[32]; }                                                  36 bytes

extension Netlink {
  static let RTM_SETLINK: UInt16 = 19
  static let RTM_NEWNEIGH: UInt16 = 28
  static let NLM_F_REPLACE: UInt16 = 0x100
  static let NLM_F_CREATE: UInt16 = 0x400
  static let AF_BRIDGE: UInt8 = 7
  static let NLA_F_NESTED: UInt16 = 0x8000
  static let IFLA_PROTINFO: UInt16 = 12
  static let IFLA_BRPORT_LEARNING: UInt16 = 8
  static let NDA_LLADDR: UInt16 = 2
  static let NUD_REACHABLE: UInt16 = 0x02
  static let NTF_MASTER: UInt8 = 0x04

  /// One attribute (header + payload, padded), for nesting.
  static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
    var b: [UInt8] = []
    appendHostOrder(UInt16(attributeHeaderSize + payload.count), to: &b)
    appendHostOrder(type, to: &b)
    b += payload
    while b.count % 4 != 0 { b.append(0) }
    return b
  }

  static func ifinfomsg(family: UInt8, index: Int32) -> [UInt8] {
    var b = ifinfomsg(index: index)
    b[0] = family
    return b
  }

  /// `bridge link set dev PORT learning on|off`: whether frames the port
  /// receives move FDB entries to it. Off on the old NIC's port keeps the
  /// guest's replies, still leaving by the old NIC, from pulling its MAC back.
  package static func portLearningMessage(portIndex: Int32, learning: Bool, sequence: UInt32 = 1) -> [UInt8] {
    request(type: RTM_SETLINK, flags: NLM_F_REQUEST | NLM_F_ACK, sequence: sequence,
            family: ifinfomsg(family: AF_BRIDGE, index: portIndex),
            attributes: [(IFLA_PROTINFO | NLA_F_NESTED, attribute(IFLA_BRPORT_LEARNING, [learning ? 1 : 0]))])
  }

  /// `bridge fdb replace MAC dev PORT master dynamic`: the bridge sends
  /// frames for MAC to PORT from now on; an ordinary learned-style entry, so
  /// it ages and moves as any other once the swap is over.
  package static func fdbReplaceMessage(mac: [UInt8], portIndex: Int32, sequence: UInt32 = 1) -> [UInt8] {
    var nd: [UInt8] = [AF_BRIDGE, 0, 0, 0]
    appendHostOrder(portIndex, to: &nd)
    appendHostOrder(NUD_REACHABLE, to: &nd)
    nd += [NTF_MASTER, 0]
    return request(type: RTM_NEWNEIGH, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                   sequence: sequence, family: nd, attributes: [(NDA_LLADDR, mac)])
  }

  /// `ip link set PF vf N mac MAC`: IFLA_VFINFO_LIST → IFLA_VF_INFO → IFLA_VF_MAC.
  package static func vfMACMessage(pf: String, vf: UInt32, mac: [UInt8], sequence: UInt32 = 1) -> [UInt8] {
    var vfMAC = u32(vf)
    vfMAC += mac + [UInt8](repeating: 0, count: 32 - mac.count)
    let info = attribute(IFLA_VF_INFO | NLA_F_NESTED, attribute(IFLA_VF_MAC, vfMAC))
    return request(type: RTM_SETLINK, flags: NLM_F_REQUEST | NLM_F_ACK, sequence: sequence, family: ifinfomsg(),
                   attributes: [(IFLA_IFNAME, cString(pf)), (IFLA_VFINFO_LIST | NLA_F_NESTED, info)])
  }
}

/// "52:54:00:18:00:0d" as 6 bytes, nil when it is not a MAC.
package func macBytes(_ text: String) -> [UInt8]? {
  let parts = text.split(separator: ":", omittingEmptySubsequences: false)
  guard parts.count == 6 else { return nil }
  let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
  return bytes.count == 6 ? bytes : nil
}

/// The Linux bridge port that carries a host device's traffic, or nil when
/// none does (a real VF in legacy mode: its NIC's eswitch delivers by MAC).
/// A device enslaved to a bridge is its own port (a tap, a representor); a
/// veth that is not is reached through its peer (the bed's pool members).
public func bridgePort(of device: String, sysfs: String = "/sys/class/net") -> String? {
  if resolves("\(sysfs)/\(device)/master") { return device }
  guard let peer = readInt("\(sysfs)/\(device)/iflink"), peer != readInt("\(sysfs)/\(device)/ifindex"),
        let names = try? directoryEntries(sysfs) else { return nil }
  return names.first { readInt("\(sysfs)/\($0)/ifindex") == peer && resolves("\(sysfs)/\($0)/master") }
}

func readInt(_ path: String) -> Int? { attributeText(path).flatMap { Int($0) } }

/// A netdev's ifindex, for the requests that take one.
public func interfaceIndex(_ device: String) throws(NetlinkError) -> Int32 {
  guard let i = readInt("/sys/class/net/\(device)/ifindex"), let index = Int32(exactly: i) else {
    throw .malformed(offset: 0, reason: "/sys/class/net/\(device)/ifindex: no such network device")
  }
  return index
}

/// A bridge port's learning flag as the kernel exports it
/// (/sys/class/net/PORT/brport/learning, br_sysfs_if.c); nil when PORT is
/// not a bridge port (or is gone).
public func bridgePortLearns(_ port: String, sysfs: String = "/sys/class/net") -> Bool? {
  readInt("\(sysfs)/\(port)/brport/learning").map { $0 != 0 }
}

/// Sets a bridge port's learning flag (IFLA_BRPORT_LEARNING).
public func setBridgePortLearning(_ port: String, _ learning: Bool) throws(NetlinkError) {
  try exchange(Netlink.portLearningMessage(portIndex: try interfaceIndex(port), learning: learning),
               what: "RTM_SETLINK \(port) IFLA_PROTINFO.IFLA_BRPORT_LEARNING=\(learning ? 1 : 0)")
}

/// Points the bridge's FDB entry for `mac` at `port` (a port of the bridge).
public func pointBridgeFDB(mac: String, at port: String) throws(NetlinkError) {
  guard let bytes = macBytes(mac) else { throw .malformed(offset: 0, reason: "NDA_LLADDR: \(mac) is not a MAC address") }
  try exchange(Netlink.fdbReplaceMessage(mac: bytes, portIndex: try interfaceIndex(port)),
               what: "RTM_NEWNEIGH \(mac) master dev \(port)")
}

/// Sets VF `vf`'s MAC on `pf`; 00:00:00:00:00:00 clears it, as net_failover
/// asks after a VF is unplugged, so the PF stops steering the MAC to the VF.
public func setVFMAC(pf: String, vf: Int, mac: String = "00:00:00:00:00:00") throws(NetlinkError) {
  guard let bytes = macBytes(mac), let n = UInt32(exactly: vf) else {
    throw .malformed(offset: 0, reason: "IFLA_VF_MAC: vf \(vf) mac \(mac) is not a VF number and a MAC address")
  }
  try exchange(Netlink.vfMACMessage(pf: pf, vf: n, mac: bytes), what: "RTM_SETLINK \(pf) IFLA_VF_MAC vf \(vf) \(mac)")
}

/// One request, its ACK (or the kernel's errno, named by `what`).
func exchange(_ request: [UInt8], what: String) throws(NetlinkError) {
  try exchangeDatagrams(request, what: what) { datagram throws(NetlinkError) in
    var acked = false
    try withByteView(datagram) { view throws(NetlinkError) in
      try forEachMessage(view) { m throws(NetlinkError) in
        if try checkError(view, m, request: what) { acked = true; return false }
        return true
      }
    }
    return acked
  }
}

/// Sends one request on a socket of its own; `each` gets every datagram the
/// kernel answers with and says whether it was the last.
func exchangeDatagrams(_ request: [UInt8], what: String, bufferBytes: Int = 1 << 16,
                       _ each: ([UInt8]) throws(NetlinkError) -> Bool) throws(NetlinkError) {
  let socket: NetlinkSocket
  do { socket = try NetlinkSocket(receiveBufferBytes: Int32(clamping: max(bufferBytes, 1 << 16))) } catch { throw .system(error) }
  do { try socket.send(request) } catch { throw .system(error) }
  var buffer = receiveBuffer(count: bufferBytes)
  while true {
    let received: NetlinkSocket.Received
    do { received = try socket.receive(into: &buffer) } catch { throw .system(error) }
    switch received {
    case .nothing: continue
    case .truncated(let needed):
      throw .malformed(offset: 0, reason: "\(what): a datagram of \(needed) bytes exceeded the \(bufferBytes)-byte receive buffer")
    case .bytes(let n): if try each(Array(buffer[0..<n])) { return }
    }
  }
}
