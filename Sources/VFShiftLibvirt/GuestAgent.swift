import VFShiftCore

/// One interface as the QEMU guest agent reports it
/// (`guest-network-get-interfaces`, qga/qapi-schema.json
/// GuestNetworkInterface / GuestNetworkInterfaceStat). Counters are the
/// guest's own, so from the VM's side already.
public struct GuestInterface: Sendable, Equatable {
  public var name: String
  /// Lower-case `aa:bb:cc:dd:ee:ff`, nil when the guest reports none.
  public var mac: String?
  /// nil when the agent sent no `statistics` (it may leave them out).
  public var counters: VMCounters?
  /// Its IPv4 addresses (`ip-addresses` of type ipv4): a swap takes a new NIC
  /// that has one as the guest using it.
  public var ipv4: [String]

  public init(name: String, mac: String?, counters: VMCounters?, ipv4: [String] = []) {
    self.name = name; self.mac = mac; self.counters = counters; self.ipv4 = ipv4
  }
}

/// Why a guest agent's reply could not be read: where in it and what.
public struct GuestAgentReplyError: Error, Sendable, Equatable, CustomStringConvertible {
  public var path: String
  public var problem: String
  public init(path: String, problem: String) { self.path = path; self.problem = problem }
  public var description: String { "guest agent reply: \(path): \(problem)" }
}

/// The command vfshift sends.
public let guestNetworkInterfacesCommand = #"{"execute":"guest-network-get-interfaces"}"#

/// Reads the reply to `guest-network-get-interfaces`: `{"return": [ … ]}`,
/// or `{"error": {"class": …, "desc": …}}`, which becomes an error quoting
/// the agent. Pure and total.
public func parseGuestNetworkInterfaces(_ json: String) throws(GuestAgentReplyError) -> [GuestInterface] {
  let root: JSONNode
  do { root = try parseJSON5(json) } catch {
    throw GuestAgentReplyError(path: "line \(error.line) column \(error.column)", problem: error.reason)
  }
  guard case .object(let top) = root.value else {
    throw GuestAgentReplyError(path: "$", problem: "is \(root.value.typeName), not an object")
  }
  if let error = top.first(where: { $0.key == "error" })?.value {
    var desc = "no description"
    if case .object(let e) = error.value, let d = e.first(where: { $0.key == "desc" })?.value, case .string(let s) = d.value { desc = s }
    throw GuestAgentReplyError(path: "error", problem: "the agent refused: \(desc)")
  }
  guard let ret = top.first(where: { $0.key == "return" })?.value else {
    throw GuestAgentReplyError(path: "$", problem: "has neither \"return\" nor \"error\"")
  }
  guard case .array(let items) = ret.value else {
    throw GuestAgentReplyError(path: "return", problem: "is \(ret.value.typeName), not an array")
  }
  var out: [GuestInterface] = []
  for (i, item) in items.enumerated() {
    let path = "return[\(i)]"
    guard case .object(let o) = item.value else {
      throw GuestAgentReplyError(path: path, problem: "is \(item.value.typeName), not an object")
    }
    func field(_ key: String) -> JSONNode? { o.first(where: { $0.key == key })?.value }
    guard let n = field("name"), case .string(let name) = n.value else {
      throw GuestAgentReplyError(path: "\(path).name", problem: "missing or not a string")
    }
    var mac: String? = nil
    if let m = field("hardware-address") {
      guard case .string(let s) = m.value else {
        throw GuestAgentReplyError(path: "\(path).hardware-address", problem: "is \(m.value.typeName), not a string")
      }
      mac = s.lowercased()
    }
    var counters: VMCounters? = nil
    if let s = field("statistics") {
      guard case .object(let stats) = s.value else {
        throw GuestAgentReplyError(path: "\(path).statistics", problem: "is \(s.value.typeName), not an object")
      }
      func counter(_ key: String) throws(GuestAgentReplyError) -> UInt64 {
        guard let v = stats.first(where: { $0.key == key })?.value else {
          throw GuestAgentReplyError(path: "\(path).statistics.\(key)", problem: "missing")
        }
        // Exact up to 2^53 (JSON numbers are read as doubles): 9 PB.
        guard case .number(let d) = v.value, d >= 0, d == d.rounded(), d < 0x1p64 else {
          throw GuestAgentReplyError(path: "\(path).statistics.\(key)", problem: "is not a counter (a whole number ≥ 0)")
        }
        return UInt64(d)
      }
      counters = VMCounters(rxBytes: try counter("rx-bytes"), txBytes: try counter("tx-bytes"),
                            rxPackets: try counter("rx-packets"), txPackets: try counter("tx-packets"))
    }
    var ipv4: [String] = []
    if let a = field("ip-addresses") {
      guard case .array(let addresses) = a.value else {
        throw GuestAgentReplyError(path: "\(path).ip-addresses", problem: "is \(a.value.typeName), not an array")
      }
      for address in addresses {
        guard case .object(let fields) = address.value,
              case .string("ipv4")? = fields.first(where: { $0.key == "ip-address-type" })?.value.value,
              case .string(let ip)? = fields.first(where: { $0.key == "ip-address" })?.value.value else { continue }
        ipv4.append(ip)
      }
    }
    out.append(GuestInterface(name: name, mac: mac, counters: counters, ipv4: ipv4))
  }
  return out
}

/// What the guest agent says of the guest's NIC with `mac`: its counters,
/// or why it cannot say. Several guest interfaces with one MAC (a failover
/// triple, a bond) are ambiguous and so not read.
public func guestCounters(_ interfaces: [GuestInterface], mac: String) -> Result<(name: String, counters: VMCounters), GuestAgentReplyError> {
  let wanted = mac.lowercased()
  let matching = interfaces.filter { $0.mac == wanted }
  guard !matching.isEmpty else {
    return .failure(GuestAgentReplyError(path: "return", problem: "no guest interface has MAC \(wanted)"))
  }
  guard matching.count == 1 else {
    return .failure(GuestAgentReplyError(path: "return", problem: "guest interfaces \(matching.map(\.name).joined(separator: ", ")) all have MAC \(wanted)"))
  }
  guard let counters = matching[0].counters else {
    return .failure(GuestAgentReplyError(path: "return", problem: "guest interface \(matching[0].name) (\(wanted)) has no statistics"))
  }
  return .success((matching[0].name, counters))
}
