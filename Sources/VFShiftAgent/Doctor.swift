import Foundation
import VFShiftCore
import VFShiftFiles
import VFShiftHost
import VFShiftLibvirt

/// Where `vfshift doctor` looks.
public struct DoctorOptions: Sendable {
  public var policyPath: String
  public var uri: String
  public var sysfs: SysfsRoot
  /// The installed unit whose sandbox the agent runs in.
  public var unitPath: String
  public var runtimeDirectory: String
  public var guestAgentTimeoutSeconds: Int32

  public init(policyPath: String = "/etc/vfshift/policy.json", uri: String = "qemu:///system", sysfs: SysfsRoot = SysfsRoot(),
              unitPath: String = "/etc/systemd/system/vfshift.service", runtimeDirectory: String = "/run/vfshift",
              guestAgentTimeoutSeconds: Int32 = 2) {
    self.policyPath = policyPath; self.uri = uri; self.sysfs = sysfs; self.unitPath = unitPath
    self.runtimeDirectory = runtimeDirectory; self.guestAgentTimeoutSeconds = guestAgentTimeoutSeconds
  }
}

/// The readiness report: every check runs even when an earlier one failed,
/// as far as what it needs was found, so one run shows everything to fix.
public func doctor(_ o: DoctorOptions) async -> ReadinessReport {
  var checks: [ReadinessCheck] = []
  let policy: Policy?
  do {
    let p = try loadPolicy(o.policyPath)
    checks.append(ReadinessCheck("policy", o.policyPath, .pass, "'\(p.name)': \(p.pools.count) pool(s), \(p.classes.count) class(es)"))
    policy = p
  } catch {
    checks.append(ReadinessCheck("policy", o.policyPath, .fail, "\(error)",
                                 fix: "fix the file (vfshift policy check \(o.policyPath)) or name another with --policy"))
    policy = nil
  }

  let connection: LibvirtConnection?
  switch LibvirtLibrary.version() {
  case .failure(let e):
    checks.append(ReadinessCheck("libvirt", "library", .fail, e.message, fix: "apt-get install libvirt0"))
    connection = nil
  case .success(let version):
    checks.append(ReadinessCheck("libvirt", "library", .pass, "libvirt \(version)"))
    do {
      connection = try LibvirtConnection(uri: o.uri)
      checks.append(ReadinessCheck("libvirt", "reachable at \(o.uri)", .pass, "connected"))
    } catch {
      checks.append(ReadinessCheck("libvirt", "reachable at \(o.uri)", .fail, "\(error)",
                                   fix: "start the daemon (systemctl start libvirtd) or name the right URI with --connect"))
      connection = nil
    }
  }
  defer { connection?.close() }

  if let policy {
    for pool in policy.pools { checks += poolChecks(pool, connection: connection, sysfs: o.sysfs) }
    if let connection { checks += await vmChecks(policy, connection: connection, options: o) }
  }
  checks += privilegeChecks(o)
  return ReadinessReport(checks: checks)
}

func poolChecks(_ pool: VFPool, connection: LibvirtConnection?, sysfs: SysfsRoot) -> [ReadinessCheck] {
  let subject = "pool \(pool.name)"
  guard let connection else { return [] }
  let network: PoolNetwork
  do { network = try connection.poolNetwork(name: pool.network) } catch {
    return [ReadinessCheck(subject, "network \(pool.network)", .fail, "\(error)",
                           fix: "define and start a <forward mode='hostdev'> network named \(pool.network) (virsh net-define, net-start, net-autostart)")]
  }
  var checks: [ReadinessCheck] = []
  switch network.mode {
  case "hostdev":
    guard let pf = network.pf ?? pool.pf else {
      checks.append(ReadinessCheck(subject, "network \(pool.network)", network.members.isEmpty ? .fail : .pass,
                                   "hostdev pool listing \(network.members.count) VF address(es), no <pf dev>",
                                   fix: network.members.isEmpty ? "give the network a <pf dev='PF'/> or its VFs' <address> elements" : nil))
      if !network.members.isEmpty {
        checks.append(SRIOVReadiness.iommuCheck(subject: subject, devices: network.members.compactMap(pciAddress(poolMember:)), sysfs: sysfs))
      }
      return checks
    }
    checks.append(ReadinessCheck(subject, "network \(pool.network)", .pass, "hostdev pool of PF \(pf)"))
    checks += SRIOVReadiness.physicalFunctionChecks(pool: pool.name, pf: pf, sysfs: sysfs)
    checks.append(hostdevCounterCheck(pool, pf: pf, sysfs: sysfs))
  default:
    // The test bed's stand-in: whole netdevs handed out as macvtap passthrough.
    let missing = network.members.filter { !FileManager.default.fileExists(atPath: "\(sysfs.path)/class/net/\($0)") }
    checks.append(ReadinessCheck(subject, "network \(pool.network)", missing.isEmpty && !network.members.isEmpty ? .pass : .fail,
                                 "passthrough stand-in for a VF pool: \(network.members.count) member(s)"
                                   + (missing.isEmpty ? "" : "; missing on the host: \(missing.joined(separator: ", "))"),
                                 fix: "create the member netdevs, or list the right ones in the network's <forward>"))
    checks.append(ReadinessCheck(subject, "SR-IOV", .warn, "a passthrough stand-in is not SR-IOV: no PF, no IOMMU, swaps are real but the VF is not",
                                 fix: "for production, point the pool at a <forward mode='hostdev'> network of a real PF"))
    switch pool.counters {
    case .guestAgent:
      checks.append(ReadinessCheck(subject, "VF counters (counters: guestAgent)", .pass,
                                   "read through each VM's guest agent, as on a real VF (see each VM's guest agent check)"))
    case .auto, .host:
      checks.append(ReadinessCheck(subject, "VF counters (counters: \(pool.counters.rawValue))", .pass,
                                   "the stand-in's host netdev; a real VF has none (representor, PF statistics or guest agent there)"))
    case .representor, .pf:
      checks.append(ReadinessCheck(subject, "VF counters (counters: \(pool.counters.rawValue))", .fail,
                                   "a passthrough stand-in has no PF and no representors",
                                   fix: "use counters: \"guestAgent\" (or \"auto\") for a stand-in pool"))
    }
  }
  return checks
}

/// Which VF counter source works for a hostdev pool, judged on its PF's first VF.
func hostdevCounterCheck(_ pool: VFPool, pf: String, sysfs: SysfsRoot) -> ReadinessCheck {
  let subject = "pool \(pool.name)", what = "VF counters (counters: \(pool.counters.rawValue))"
  guard let first = (try? physicalFunction(netdev: pf, sysfs: sysfs))?.virtualFunctions.first,
        let location = try? virtualFunctionLocation(first.address, sysfs: sysfs) else {
    return ReadinessCheck(subject, what, .warn, "no VF of \(pf) to judge by", fix: "enable the PF's VFs (see above)")
  }
  let representor = representor(of: location, sysfs: sysfs)
  switch (pool.counters, representor) {
  case (.representor, .found(let netdev)), (.auto, .found(let netdev)):
    return ReadinessCheck(subject, what, .pass, "representor \(netdev) of VF \(location.index) (switchdev), read with every other interface")
  case (.representor, .none(let why)):
    return ReadinessCheck(subject, what, .fail, why, fix: "put the PF's eswitch in switchdev mode (devlink dev eswitch set … mode switchdev) or use counters: \"pf\"")
  case (.auto, .none(let why)):
    return ReadinessCheck(subject, what, .pass, "\(why); PF \(pf)'s per-VF statistics next (IFLA_VF_STATS; a driver without them leaves the guest agent)")
  case (.pf, _):
    return ReadinessCheck(subject, what, .pass, "PF \(pf)'s per-VF statistics, one request per cycle (a driver that sends none leaves the VMs unmeasured)")
  case (.guestAgent, _):
    return ReadinessCheck(subject, what, .pass, "each VM's guest agent (see its guest agent check)")
  case (.host, _):
    return ReadinessCheck(subject, what, .fail, "a VF passed to a guest has no host netdev to read",
                          fix: "use counters: \"auto\", \"representor\", \"pf\" or \"guestAgent\"")
  }
}

func vmChecks(_ policy: Policy, connection: LibvirtConnection, options o: DoctorOptions) async -> [ReadinessCheck] {
  let inventory = Inventory(connection: connection)
  do { try await inventory.start() } catch {
    return [ReadinessCheck("vms", "inventory", .fail, "\(error)", fix: "check libvirt's logs: the domains could not be listed")]
  }
  defer { inventory.stop() }
  var checks: [ReadinessCheck] = []
  var managed = 0
  for domain in inventory.snapshot() {
    let identity = VMIdentity(uuid: domain.uuid, name: domain.name, label: domain.qosLabel)
    guard case .managed(let c) = policy.resolveClass(of: identity) else { continue }
    managed += 1
    let subject = "vm \(domain.name)"
    let nics = managedNICs(domain, policy: policy)
    let data = nics.vf ?? nics.virtio
    if let data, data.alias != nil {
      checks.append(ReadinessCheck(subject, "data NIC", .pass,
                                   "class \(policy.classes[c].name), \(data.mac) alias \(data.alias!)\(nics.vf != nil ? " (on a VF of pool \(nics.pool ?? "?"))" : "")"))
    } else {
      checks.append(ReadinessCheck(subject, "data NIC", .fail,
                                   data == nil ? "no virtio NIC on a bridge or network and no pool VF" : "its NIC has no alias in the live XML",
                                   fix: "give the VM a virtio-net <interface> on a bridge or libvirt network"))
    }
    let pool = policy.classes[c].pool.flatMap { name in policy.pools.first { $0.name == name } } ?? policy.pools.first
    if pool?.mode == .failover {
      let ok = nics.virtio?.teaming == .persistent && nics.virtio?.model == "virtio"
      checks.append(ReadinessCheck(subject, "failover pair", ok ? .pass : .fail,
                                   ok ? "virtio NIC carries <teaming type='persistent'/>" : "pool \(pool!.name) is in failover mode but the virtio NIC has no <teaming type='persistent'/>",
                                   fix: "add <teaming type='persistent'/> and an alias (ua-…) to the VM's virtio <interface>, and net_failover in the guest"))
    }
    do {
      _ = try connection.guestAgentCommand(uuid: domain.uuid, #"{"execute":"guest-ping"}"#, timeoutSeconds: o.guestAgentTimeoutSeconds)
      checks.append(ReadinessCheck(subject, "guest agent", .pass, "answers guest-ping"))
    } catch {
      // Where the pool reads VF counters through the agent, a VM without one
      // would sit on its VF unmeasured.
      let needed = pool?.counters == .guestAgent
      checks.append(ReadinessCheck(subject, "guest agent", needed ? .fail : .warn,
                                   needed ? "\(error.message); pool \(pool!.name) reads its VF counters through it" : error.message,
                                   fix: "add a virtio-serial channel org.qemu.guest_agent.0 to the domain and run qemu-guest-agent in the guest: without it a VM on a VF is measured only where the host sees its VF (representor or PF statistics)"))
    }
  }
  checks.append(ReadinessCheck("vms", "managed under the policy", managed > 0 ? .pass : .warn,
                               "\(managed) of \(inventory.snapshot().count) running domain(s)",
                               fix: managed > 0 ? nil : "label VMs (virsh metadata … vfshift qos) or match them by name in the policy's classes"))
  return checks
}

func privilegeChecks(_ o: DoctorOptions) -> [ReadinessCheck] {
  var checks: [ReadinessCheck] = []
  let capNetAdmin = effectiveCapabilities().map { $0 & (1 << 12) != 0 } ?? false
  checks.append(ReadinessCheck("privileges", "CAP_NET_ADMIN", capNetAdmin ? .pass : .fail,
                               capNetAdmin ? "held (uid \(realUserID))" : "not held (uid \(realUserID))",
                               fix: "run as root, as the unit does: a released VF or pool member must be brought up and a VF's MAC cleared on the PF"))
  let dir = o.runtimeDirectory
  let writable = access(dir, W_OK) == 0 || (!FileManager.default.fileExists(atPath: dir) && access((dir as NSString).deletingLastPathComponent, W_OK) == 0)
  checks.append(ReadinessCheck("privileges", "runtime directory \(dir)", writable ? .pass : .fail,
                               writable ? "writable (status, lock, control socket)" : "not writable",
                               fix: "run as root; the unit's RuntimeDirectory=vfshift makes it"))
  guard let unit = try? String(contentsOfFile: o.unitPath, encoding: .utf8) else {
    checks.append(ReadinessCheck("privileges", "unit \(o.unitPath)", .warn, "not installed", fix: "deploy/install puts it there"))
    return checks
  }
  var missing: [String] = []
  let caps = unitValues(unit, "CapabilityBoundingSet")
  if !caps.isEmpty && !caps.contains("CAP_NET_ADMIN") { missing.append("CapabilityBoundingSet lacks CAP_NET_ADMIN") }
  let families = unitValues(unit, "RestrictAddressFamilies")
  for f in ["AF_UNIX", "AF_NETLINK"] where !families.isEmpty && !families.contains(f) { missing.append("RestrictAddressFamilies lacks \(f)") }
  if unitValues(unit, "ProtectSystem").contains("strict") {
    let rw = unitValues(unit, "ReadWritePaths")
    for p in ["/run/vfshift", "/run/libvirt"] where !rw.contains(p) { missing.append("ReadWritePaths lacks \(p)") }
  }
  if unitValues(unit, "PrivateNetwork").contains("yes") { missing.append("PrivateNetwork=yes hides the host's interfaces") }
  checks.append(ReadinessCheck("privileges", "unit \(o.unitPath)", missing.isEmpty ? .pass : .fail,
                               missing.isEmpty ? "its sandbox leaves libvirt's socket, netlink and CAP_NET_ADMIN" : missing.joined(separator: "; "),
                               fix: "compare with the shipped deploy/vfshift.service"))
  return checks
}

/// Every value of `key=` in a unit file's lines, split on spaces (systemd lists).
func unitValues(_ unit: String, _ key: String) -> [String] {
  unit.split(separator: "\n").flatMap { line -> [String] in
    let l = line.trimmingCharacters(in: .whitespaces)
    guard l.hasPrefix(key + "=") else { return [] }
    return l.dropFirst(key.count + 1).split(separator: " ").map(String.init)
  }
}

/// CapEff from /proc/self/status, as a bit mask.
func effectiveCapabilities() -> UInt64? {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }) else { return nil }
  return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
}

/// A hostdev pool member as PoolNetwork lists it ("0x0000:0x03:0x10:0x1", the
/// <address> attributes in order) as the kernel names the function.
func pciAddress(poolMember member: String) -> PCIAddress? {
  let parts = member.split(separator: ":").map { p in UInt32(p.hasPrefix("0x") ? p.dropFirst(2) : p, radix: 16) }
  guard parts.count == 4, let d = parts[0], let b = parts[1], let s = parts[2], let f = parts[3],
        b <= 0xff, s <= 0x1f, f <= 7 else { return nil }
  return PCIAddress(domain: d, bus: UInt8(b), device: UInt8(s), function: UInt8(f))
}
