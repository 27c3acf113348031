import Dispatch
import Synchronization
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

/// How `observe` reads one VM on a VF in one cycle: the outcome of its
/// pool's `counters` for that VM.
package enum VFMeasurement: Sendable, Equatable {
  /// A netdev in this cycle's counter snapshot: the NIC's own host device
  /// (a macvtap stand-in), or the VF's representor (kind `.representor`).
  case hostDevice(String, HostDeviceKind)
  /// Counters read some other way this cycle (PF statistics, guest agent),
  /// already from the VM's side. `source` changes when the device does, so
  /// the engine sees a gap instead of a counter jump.
  case counters(source: String, VMCounters, at: Instant)
  /// Nothing could measure it this cycle (the reason is in the choice).
  case unknown
}

/// Asks a VM's guest agent for its interfaces: the blocking call, kept
/// behind a protocol so the benchmark can put a guest that answers slowly, or
/// never, beside real ones.
package protocol GuestAgentTransport: Sendable {
  /// The agent's JSON reply to `guest-network-get-interfaces`.
  func networkInterfaces(uuid: String, timeoutSeconds: Int32) throws -> String
}

extension LibvirtConnection: GuestAgentTransport {
  package func networkInterfaces(uuid: String, timeoutSeconds: Int32) throws -> String {
    try guestAgentCommand(uuid: uuid, guestNetworkInterfacesCommand, timeoutSeconds: timeoutSeconds)
  }
}

/// Asks the guest agents off the cycle's path: `ask` starts at most one
/// request per VM (none while the last is still out), each on a thread of
/// its own with libvirt's timeout, and returns at once; the next cycle
/// `take`s what arrived. A VM whose agent has not answered by then is
/// unknown for that cycle, with the reason. The loop never waits on a guest.
package final class GuestAgentPoller: Sendable {
  package struct Answer: Sendable {
    package var interfaces: Result<[GuestInterface], GuestAgentFailure>
    /// When the reply arrived, on the agent's clock: the reading's time.
    package var at: Instant
    /// How long the call took.
    package var seconds: Double
  }

  package struct GuestAgentFailure: Error, Sendable, CustomStringConvertible {
    package var description: String
  }

  struct Slot: Sendable {
    var inFlightSince: Instant?
    var answer: Answer?
  }

  let transport: any GuestAgentTransport
  let timeoutSeconds: Int32
  let clock: @Sendable () -> Instant
  let slots = Mutex<[String: Slot]>([:])
  private let queue = DispatchQueue(label: "vfshift.guest-agent", attributes: .concurrent)

  package init(transport: any GuestAgentTransport, timeoutSeconds: Int32, clock: @escaping @Sendable () -> Instant) {
    self.transport = transport
    self.timeoutSeconds = max(1, timeoutSeconds)
    self.clock = clock
  }

  /// The answer that arrived since the last take, or why there is none.
  package func take(_ uuid: String) -> Result<Answer, GuestAgentFailure> {
    let now = clock()
    return slots.withLock { slots in
      if let answer = slots[uuid]?.answer {
        slots[uuid]?.answer = nil
        return .success(answer)
      }
      if let since = slots[uuid]?.inFlightSince {
        return .failure(GuestAgentFailure(description: "no answer yet, asked \(((now - since) * 10).rounded() / 10) s ago (timeout \(timeoutSeconds) s)"))
      }
      return .failure(GuestAgentFailure(description: "not asked yet (first cycle on the guest agent)"))
    }
  }

  /// Starts a request for each VM in `uuids` that has none out; forgets
  /// the VMs not listed. Never blocks.
  package func ask(_ uuids: Set<String>) {
    let now = clock()
    let start: [String] = slots.withLock { slots in
      for uuid in slots.keys where !uuids.contains(uuid) { slots[uuid] = nil }
      var start: [String] = []
      for uuid in uuids where slots[uuid]?.inFlightSince == nil {
        slots[uuid, default: Slot()].inFlightSince = now
        start.append(uuid)
      }
      return start
    }
    for uuid in start {
      queue.async { [self] in
        let began = clock()
        let interfaces: Result<[GuestInterface], GuestAgentFailure>
        do {
          let reply = try transport.networkInterfaces(uuid: uuid, timeoutSeconds: timeoutSeconds)
          do { interfaces = .success(try parseGuestNetworkInterfaces(reply)) } catch {
            interfaces = .failure(GuestAgentFailure(description: "\(error)"))
          }
        } catch {
          interfaces = .failure(GuestAgentFailure(description: "\(error)"))
        }
        let at = clock()
        slots.withLock { slots in
          // A VM forgotten meanwhile stays forgotten.
          guard slots[uuid] != nil else { return }
          slots[uuid] = Slot(inFlightSince: nil, answer: Answer(interfaces: interfaces, at: at, seconds: at - began))
        }
      }
    }
  }
}

/// Decides, each cycle, how every VM on a VF is measured (its pool's
/// `counters`), and gathers what that needs: sysfs (cached while the
/// inventory stands), one RTM_GETLINK per PF that some VM needs this cycle,
/// and the guest agents' last answers. Used by the agent's loop only.
package final class VFCounterSources {
  let sysfs: SysfsRoot
  let poller: GuestAgentPoller?
  /// One PF's per-VF statistics (`vfStatistics(pf:)`; tests pass recorded replies).
  let pfStatistics: (String) throws -> [Int: InterfaceCounters]
  private var locations: [String: Result<VFLocation, SysfsError>] = [:]
  private var representors: [String: RepresentorLookup] = [:]
  private var cachedGeneration: UInt64? = nil
  /// What each VM on a VF was measured by in the last cycle, for status and metrics.
  package private(set) var choices: [String: TrafficSourceChoice] = [:]
  /// The same, in inventory order with each VM's name: what the metrics list.
  package private(set) var measured: [(name: String, choice: TrafficSourceChoice)] = []
  /// Where the VMs on a VF are in the inventory (domain, NIC, policy pool),
  /// kept while the inventory's generation and the policy's pools stand:
  /// finding them costs a pass over every VM's NICs, at 1,000 VMs each cycle.
  private var onVF: [(domain: Int, nic: Int, pool: Int)] = []
  private var onVFKey: (generation: UInt64, pools: [VFPool])? = nil

  package init(sysfs: SysfsRoot = SysfsRoot(), poller: GuestAgentPoller?,
               pfStatistics: @escaping (String) throws -> [Int: InterfaceCounters] = { pf in try vfStatistics(pf: pf) }) {
    self.sysfs = sysfs
    self.poller = poller
    self.pfStatistics = pfStatistics
  }

  /// The measurement of every VM whose network is on a VF (by UUID). Sysfs is
  /// re-read when the inventory's `generation` changes (a VF was attached or
  /// detached); a representor appears only with a change of eswitch mode,
  /// which an operator does with the VFs unbound, so also a new inventory.
  package func measure(domains: [DomainInventory], policy: Policy, counters: CounterSnapshot, now: Instant,
                       generation: UInt64?) -> [String: VFMeasurement] {
    if generation == nil || generation != cachedGeneration {
      locations = [:]
      representors = [:]
      cachedGeneration = generation
    }
    if generation == nil || onVFKey?.generation != generation || onVFKey?.pools != policy.pools {
      onVF = []
      for d in domains.indices {
        let at = managedNICPositions(domains[d], policy: policy)
        if at.virtio == nil, let v = at.vf, let p = at.pool { onVF.append((d, v, p)) }
      }
      onVFKey = generation.map { ($0, policy.pools) }
    }
    var out: [String: VFMeasurement] = [:]
    var choices: [String: TrafficSourceChoice] = [:]
    var measured: [(name: String, choice: TrafficSourceChoice)] = []
    var pfReplies: [String: Result<[Int: InterfaceCounters], Unavailable>] = [:]
    var askAgents = Set<String>()
    for (d, v, p) in onVF where d < domains.count && v < domains[d].nics.count {
      let domain = domains[d]
      let nic = domain.nics[v]
      var measurement = VFMeasurement.unknown
      let choice = chooseTrafficSource(policy.pools[p].counters) { source in
        switch source {
        case .host:
          guard let device = nic.hostDevice, let kind = nic.hostDeviceKind, kind != .virtualFunction else {
            return .unavailable("a VF passed to the guest has no host netdev")
          }
          measurement = .hostDevice(device, kind)
          return .available
        case .representor:
          let location: VFLocation
          switch self.location(of: nic) {
          case .failure(let why): return .unavailable(why.reason)
          case .success(let l): location = l
          }
          let lookup = self.representor(of: location)
          guard case .found(let netdev) = lookup else {
            if case .none(let why) = lookup { return .unavailable(why) }
            return .unavailable("no representor")
          }
          guard counters[netdev] != nil else { return .unavailable("representor \(netdev) is not in this cycle's counters") }
          measurement = .hostDevice(netdev, .representor)
          return .available
        case .pf:
          let location: VFLocation
          switch self.location(of: nic) {
          case .failure(let why): return .unavailable(why.reason)
          case .success(let l): location = l
          }
          if pfReplies[location.pf] == nil {
            do { pfReplies[location.pf] = .success(try pfStatistics(location.pf)) } catch {
              pfReplies[location.pf] = .failure(Unavailable(reason: "\(error)"))
            }
          }
          switch pfReplies[location.pf]! {
          case .failure(let why): return .unavailable("PF \(location.pf): \(why.reason)")
          case .success(let stats):
            guard let c = stats[location.index] else {
              return .unavailable("the driver of PF \(location.pf) sends no IFLA_VF_STATS for VF \(location.index)")
            }
            measurement = .counters(source: "\(location.pf)/vf\(location.index)", HostDeviceKind.virtualFunction.vmCounters(c), at: now)
            return .available
          }
        case .guestAgent:
          guard let poller else { return .unavailable("no libvirt connection to reach it") }
          askAgents.insert(domain.uuid)
          switch poller.take(domain.uuid) {
          case .failure(let why): return .unavailable(why.description)
          case .success(let answer):
            let interfaces: [GuestInterface]
            switch answer.interfaces {
            case .failure(let why): return .unavailable(why.description)
            case .success(let i): interfaces = i
            }
            switch guestCounters(interfaces, mac: nic.mac) {
            case .failure(let why): return .unavailable(why.problem)
            case .success(let found):
              measurement = .counters(source: "guest:\(nic.mac)/\(found.name)", found.counters, at: answer.at)
              return .available
            }
          }
        case .unknown:
          return .unavailable("not a source")
        }
      }
      out[domain.uuid] = choice.source == .unknown ? .unknown : measurement
      choices[domain.uuid] = choice
      measured.append((domain.name, choice))
    }
    poller?.ask(askAgents)
    self.choices = choices
    self.measured = measured
    return out
  }

  struct Unavailable: Error { var reason: String }

  private func location(of nic: NIC) -> Result<VFLocation, Unavailable> {
    guard case .hostdevVF(let text, _) = nic.kind else {
      return .failure(Unavailable(reason: "not a PCI VF (the NIC is \(nic.hostDeviceKind.map { "a \($0.rawValue)" } ?? "not a host device"))"))
    }
    return location(ofAddress: text)
  }

  fileprivate func location(ofAddress text: String) -> Result<VFLocation, Unavailable> {
    if let known = locations[text] { return known.mapError { Unavailable(reason: "\($0)") } }
    guard let address = PCIAddress(text) else { return .failure(Unavailable(reason: "'\(text)' is not a PCI address")) }
    let found: Result<VFLocation, SysfsError>
    do { found = .success(try virtualFunctionLocation(address, sysfs: sysfs)) } catch { found = .failure(error) }
    locations[text] = found
    return found.mapError { Unavailable(reason: "\($0)") }
  }

  private func representor(of location: VFLocation) -> RepresentorLookup {
    let key = location.address.description
    if let known = representors[key] { return known }
    let found = VFShiftHost.representor(of: location, sysfs: sysfs)
    representors[key] = found
    return found
  }
}

/// A `<forward mode='hostdev'>` pool network as far as finding its VFs goes.
package struct HostdevPool: Sendable, Equatable {
  package var network: String
  /// `<pf dev>`, or the policy pool's `pf`.
  package var pf: String?
  /// The `<address>` members the network lists.
  package var members: Set<PCIAddress>
  package init(network: String, pf: String?, members: Set<PCIAddress>) { self.network = network; self.pf = pf; self.members = members }
}

extension VFCounterSources {
  /// Gives each VF NIC from a hostdev pool network its network. libvirt's
  /// live XML shows such a NIC as the device it got, `<interface
  /// type='hostdev'>` with the VF's `<source><address/></source>` and no
  /// network name (src/conf/domain_conf.c `virDomainNetDefFormat`: the
  /// actual device is reported instead of the config), so the pool is found
  /// from the PCI address: a member the network lists, or a VF of its PF.
  /// Returns `domains` itself (the same storage) when nothing needs it.
  package func attributingPools(_ domains: [DomainInventory], pools: [HostdevPool]) -> [DomainInventory] {
    guard !pools.isEmpty else { return domains }
    var out: [DomainInventory]? = nil
    for d in domains.indices {
      for n in domains[d].nics.indices {
        guard case .hostdevVF(let text, nil) = domains[d].nics[n].kind, let address = PCIAddress(text) else { continue }
        var network = pools.first { $0.members.contains(address) }?.network
        if network == nil, case .success(let location) = self.location(ofAddress: text) {
          network = pools.first { $0.pf == location.pf }?.network
        }
        guard let network else { continue }
        if out == nil { out = domains }
        out![d].nics[n].kind = .hostdevVF(pciAddress: text, network: network)
      }
    }
    return out ?? domains
  }
}
