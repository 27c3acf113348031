import CMalloc
import Foundation
import Synchronization
import VFShiftCore
import VFShiftFiles
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

  public init(policyPath: String) { self.policyPath = policyPath }
}

/// The host agent: each cycle observe → decide → act → record, level-triggered
/// from what libvirt and the kernel say now.
public final class Agent: @unchecked Sendable {
  let config: AgentConfig
  let log: EventLog
  public let metrics = Metrics()
  var policy: Policy
  let stop = Atomic<Bool>(false)
  let reload = Atomic<Bool>(false)
  let reconcileNeeded = Atomic<Bool>(true)
  var lastHold: [String: String] = [:]
  var recorder: TraceRecorder?
  var devicePositions = DevicePositions()
  /// How VMs on VFs are measured; made by `run` (with libvirt for the guest agent).
  var vfSources: VFCounterSources?
  /// Each VM's counter source last cycle, to log a change once.
  var lastSource: [String: TrafficSource] = [:]
  /// The policy's hostdev pool networks (checkPools), to tell which pool a
  /// VF in a live XML came from.
  var hostdevPools: [HostdevPool] = []
  /// The inventory with each VF's pool network filled in, while the
  /// inventory's generation stands (the same array, for observe's cache).
  var attributed: (generation: UInt64, domains: [DomainInventory])?
  var cycle = 0
  /// The last cycle's view, for the control socket.
  let lastCycle = Mutex<LastCycle?>(nil)
  let startedAt = ContinuousClock.now
  /// Decisions this process made, for tests comparing with a replay: the
  /// last `decisionsKept` of them, so a forced move retried for months does
  /// not grow the agent.
  public private(set) var decisions: [(at: Double, verb: Verb, vm: String)] = []
  /// VMs whose guest did not use the NIC a swap gave it: not tried again until then (agent seconds).
  var notTakenUntil: [String: Double] = [:]
  var notTakenCount: [String: Int] = [:]
  package static let decisionsKept = 10_000
  /// VMs held as "not measured" in the last cycle, to log the change only.
  var unmeasured: Set<String> = []

  public init(config: AgentConfig, log: EventLog = EventLog()) throws {
    self.config = config
    self.log = log
    self.policy = try loadPolicy(config.policyPath)
    metrics.setDryRun(config.dryRun)
  }

  public func requestStop() {
    stop.store(true, ordering: .sequentiallyConsistent)
    napping.withLock { $0?.cancel() }
  }

  public func requestReload() {
    reload.store(true, ordering: .sequentiallyConsistent)
    napping.withLock { $0?.cancel() }
  }

  /// The sleep between cycles, which a stop or reload request cuts short.
  let napping = Mutex<Task<Void, Never>?>(nil)

  /// Sleeps until the next tick in one go, one wake-up per cycle instead of
  /// one every 200 ms to look at the flags. A request sets its flag before
  /// cancelling, and the nap is published before the flags are read, so none
  /// is missed.
  func nap(until deadline: ContinuousClock.Instant) async {
    let nap = Task<Void, Never> { _ = try? await Task.sleep(until: deadline, clock: .continuous) }
    napping.withLock { $0 = nap }
    if stop.load(ordering: .sequentiallyConsistent) || reload.load(ordering: .sequentiallyConsistent) { nap.cancel() }
    await nap.value
    napping.withLock { $0 = nil }
  }

  var interval: Double { config.intervalSeconds ?? policy.intervalSeconds }

  /// Runs until SIGTERM/SIGINT (or `maxCycles`). Throws only for what stops
  /// it from starting: a held lock, no libvirt, a policy that does not fit.
  public func run() async throws {
    // libvirt's client writes to its socket with write(2): when libvirtd goes
    // away mid-call, SIGPIPE would kill the agent (seen: exit by signal 13
    // mid-swap) instead of the call failing and the connection reconnecting.
    signal(SIGPIPE, SIG_IGN)
    let lock = try AgentLock(path: config.lockPath)
    defer { withExtendedLifetime(lock) {} }
    let connection = try LibvirtConnection(uri: config.uri)
    defer { connection.close() }
    let inventory = Inventory(connection: connection)
    try await inventory.start()
    defer { inventory.stop() }
    var poolTotals = try checkPools(connection)
    var reader = HostCounterReader(preferred: config.counterSource)
    let startedAt = self.startedAt
    let timeout = config.guestAgentTimeoutSeconds ?? Int32(max(1, interval.rounded(.up)))
    vfSources = VFCounterSources(sysfs: SysfsRoot(config.sysfsRoot),
                                 poller: GuestAgentPoller(transport: connection, timeoutSeconds: timeout,
                                                          clock: { Instant(seconds: (ContinuousClock.now - startedAt).seconds) }))
    if let reason = reader.fallbackReason { log.emit("counter-source", ["source": "procNetDev", "reason": .string(reason)]) }
    let swapper = Swapper(connection: connection, log: log, attachDeadline: config.attachDeadline,
                          detachDeadline: config.detachDeadline,
                          stepHook: { name in
                            if ProcessInfo.processInfo.environment["VFSHIFT_CRASH_AT_STEP"] == name { kill(getpid(), SIGKILL) }
                            // Fault tests: stop here (once) so the test can break something mid-swap, then SIGCONT.
                            if let v = getenv("VFSHIFT_PAUSE_AT_STEP"), String(cString: v) == name {
                              unsetenv("VFSHIFT_PAUSE_AT_STEP")
                              kill(getpid(), SIGSTOP)
                            }
                          })
    var listener: MetricsListener?
    if let address = config.metricsListen {
      listener = try MetricsListener(address: address) { [metrics] in metrics.exposition() }
    }
    defer { listener?.stop() }
    // Without its control socket the agent still runs: `vfshift status` falls back to the file.
    let controlPath = config.controlPath ?? controlSocketPath(besideStatus: config.statusPath)
    var control: ControlListener?
    do {
      try? FileManager.default.createDirectory(atPath: (controlPath as NSString).deletingLastPathComponent,
                                               withIntermediateDirectories: true)
      control = try ControlListener(path: controlPath) { [weak self] line in
        self?.controlAnswer(line) ?? Array("{\"error\":\"agent stopping\"}\n".utf8)
      }
    } catch {
      log.emit("error", ["kind": "control-socket", "error": .string("\(error)")])
    }
    defer { control?.stop() }
    if let path = config.recordPath { recorder = try TraceRecorder(path: path, interval: interval, pools: poolTotals) }
    let events = connection.subscribe()
    let watcher = Task { [weak self] in
      for await event in events where event == .reconnected {
        self?.reconcileNeeded.store(true, ordering: .sequentiallyConsistent)
      }
    }
    defer { watcher.cancel() }
    log.emit("start", ["policy": .string(policy.name), "dryRun": .bool(config.dryRun), "intervalSeconds": .number(interval),
                       "counterSource": .string(reader.source.rawValue), "metrics": .string(listener?.boundAddress ?? "off"),
                       "control": .string(control?.path ?? "off"),
                       "pools": .object(poolTotals.mapValues { .number(Double($0)) })])
    notifySystemd("READY=1\nSTATUS=running policy \(policy.name)\(config.dryRun ? " (dry run)" : "")")

    var next = ContinuousClock.now
    var trimmedGeneration: UInt64? = nil
    while !stop.load(ordering: .sequentiallyConsistent) {
      if reload.exchange(false, ordering: .sequentiallyConsistent) {
        notifySystemd("RELOADING=1")
        reloadPolicy()
        if let totals = try? checkPools(connection) { poolTotals = totals }
        notifySystemd("READY=1\nSTATUS=running policy \(policy.name)")
      }
      // One snapshot per cycle, shared by reconcile and the cycle; taken
      // again only when reconcile changed something.
      var domains = withPools(inventory)
      if !config.dryRun, !config.recordOnly {
        let full = reconcileNeeded.exchange(false, ordering: .sequentiallyConsistent)
        if await reconcileAll(domains, inventory, swapper, waitingOnGuests: full) { domains = withPools(inventory) }
      }
      observeDetachPending(domains)
      let began = ContinuousClock.now
      await runCycle(domains: domains, inventory: inventory, reader: &reader, swapper: swapper, poolTotals: poolTotals)
      metrics.cycleFinished(seconds: (ContinuousClock.now - began).seconds, intervalSeconds: interval)
      notifySystemd("WATCHDOG=1")
      cycle += 1
      // What start-up and a new inventory leave behind (every domain's XML
      // parsed, libvirt's replies) is freed but stays resident inside the
      // heap, between blocks still in use; give those pages back once the
      // inventory has settled, not each cycle (bench-agent: RSS).
      let generation = inventory.generation
      if generation != trimmedGeneration {
        trimmedGeneration = generation
        releaseFreeHeapPages()
      }
      if let max = config.maxCycles, cycle >= max { break }
      // Fixed ticks on the monotonic clock; a long cycle skips ticks rather
      // than running several back to back.
      next = next + .seconds(interval)
      let now = ContinuousClock.now
      if next < now { next = now + .seconds(interval) }
      await nap(until: next)
    }
    notifySystemd("STOPPING=1")
    log.emit("stop", ["cycles": .number(Double(cycle))])
    recorder?.close()
  }

  /// The inventory snapshot with each VF's pool network filled in
  /// (`VFCounterSources.attributingPools`), kept while its generation stands.
  func withPools(_ inventory: Inventory) -> [DomainInventory] {
    let generation = inventory.generation
    if let a = attributed, a.generation == generation { return a.domains }
    let domains = vfSources?.attributingPools(inventory.snapshot(), pools: hostdevPools) ?? inventory.snapshot()
    attributed = (generation, domains)
    return domains
  }

  /// Each pool must exist in libvirt as a pool network; its size comes from
  /// there (or from sysfs for real SR-IOV), else from the configuration.
  func checkPools(_ connection: LibvirtConnection) throws -> [String: Int] {
    var totals: [String: Int] = [:]
    var hostdev: [HostdevPool] = []
    defer { hostdevPools = hostdev; attributed = nil }
    for pool in policy.pools {
      if let n = config.poolSizes[pool.name] { totals[pool.name] = n; continue }
      let network: PoolNetwork
      do { network = try connection.poolNetwork(name: pool.network) } catch {
        throw PoolMismatch(pool: pool.name, network: pool.network, reason: "\(error)")
      }
      var total = network.members.count
      if network.mode == "hostdev" {
        hostdev.append(HostdevPool(network: pool.network, pf: network.pf ?? pool.pf,
                                   members: Set(network.members.compactMap(pciAddress(poolMember:)))))
      }
      // A real SR-IOV pool (`<pf dev>`) lists no members: its VFs are in sysfs.
      if let pf = network.pf ?? pool.pf, network.mode == "hostdev" {
        do { total = try physicalFunction(netdev: pf).enabledVFs } catch {
          throw PoolMismatch(pool: pool.name, network: pool.network, reason: "PF \(pf): \(error)")
        }
      }
      guard total > 0 else { throw PoolMismatch(pool: pool.name, network: pool.network, reason: "it has no members") }
      totals[pool.name] = total
    }
    return totals
  }

  func reloadPolicy() {
    do {
      let fresh = try loadPolicy(config.policyPath)
      log.emit("reload", ["policy": .string(fresh.name), "outcome": "applied"])
      policy = fresh
    } catch {
      metrics.error("reload")
      log.emit("reload", ["outcome": "refused", "errors": .string("\(error)"), "kept": .string(policy.name)])
    }
  }

  /// Journals at detach-pending, for the metric an alert watches: a guest
  /// holding on to its old NIC leaves the VM with two.
  func observeDetachPending(_ domains: [DomainInventory]) {
    let now = Swapper.nowMilliseconds()
    var pending: [String: Double] = [:]
    for d in domains {
      if let j = d.journal, j.step == .detachPending { pending[d.name] = Double(max(0, now - j.startedAtUnixMilliseconds)) / 1000 }
    }
    metrics.observeDetachPending(pending)
  }

  /// Swaps run one at a time inside the loop, so a journal seen between
  /// cycles is one a failed or pending swap left. On start and reconnect
  /// every journal is reconciled; between cycles (`waitingOnGuests: false`)
  /// a detach still pending in a guest that holds on to its old NIC (paused,
  /// hung) is left to libvirt — asking again would block the loop for the
  /// detach deadline each cycle — and is finished once the NIC is gone.
  /// True when it reconciled anything.
  @discardableResult
  func reconcileAll(_ domains: [DomainInventory], _ inventory: Inventory, _ swapper: Swapper,
                    waitingOnGuests: Bool = true) async -> Bool {
    var acted = false
    for domain in domains where domain.journal != nil {
      if !waitingOnGuests, let j = domain.journal, j.step == .detachPending, domain.nic(alias: j.oldAlias) != nil { continue }
      let identity = VMIdentity(uuid: domain.uuid, name: domain.name, label: domain.qosLabel)
      // A journal is vfshift's own: finishing it is never touching an
      // unmanaged VM, even if the policy no longer matches the VM.
      let outcome = await swapper.reconcile(domain)
      log.emit("reconcile", ["vm": .string(identity.name), "outcome": .string(outcome?.rawValue ?? "none")])
      try? inventory.refresh(uuid: domain.uuid)
      acted = true
    }
    return acted
  }

  func runCycle(domains: [DomainInventory], inventory: Inventory, reader: inout HostCounterReader, swapper: Swapper,
                poolTotals: [String: Int]) async {
    let now = Instant(seconds: (ContinuousClock.now - startedAt).seconds)
    let counters: CounterSnapshot
    do { counters = try reader.read() } catch {
      metrics.error("counters")
      log.emit("error", ["kind": "counters", "error": .string("\(error)")])
      return
    }
    let vfSince = parkedSince(domains, swapper: swapper, now: now)
    let measurements = vfSources?.measure(domains: domains, policy: policy, counters: counters, now: now,
                                          generation: inventory.generation)
    guard let plan = observeAndDecide(domains: domains, counters: counters, poolTotals: poolTotals, now: now,
                                      vfSince: vfSince, measurements: measurements) else { return }
    guard !plan.actions.isEmpty else { return }
    let byUUID = Dictionary(domains.map { ($0.uuid, $0) }, uniquingKeysWith: { a, _ in a })
    recordDecisions(plan, now: now)
    for action in plan.actions {
      guard !config.dryRun else { continue }
      guard let domain = byUUID[action.vm.uuid], let pool = policy.pools.first(where: { $0.name == action.pool }) else { continue }
      if let until = notTakenUntil[domain.uuid], until > now.seconds {
        log.emit("held", ["vm": .string(action.vm.name), "direction": .string(action.verb.rawValue),
                          "reason": .string(String(format: "the guest did not use its new NIC last time; cooldown %.0f s left", until - now.seconds))])
        continue
      }
      let nics = managedNICs(domain, policy: policy)
      let began = ContinuousClock.now
      let outcome = switch action {
      case .promote: await swapper.promote(domain, to: pool, nics: nics)
      case .demote: await swapper.demote(domain, from: pool, nics: nics)
      }
      let seconds = (ContinuousClock.now - began).seconds
      metrics.swapFinished(verb: action.verb, outcome: outcome.rawValue, seconds: seconds)
      // Tells the engine, so a forced move that keeps failing backs off. A
      // guest still holding its old NIC is mid-swap, not a failure.
      let succeeded = outcome == .done || outcome == .detachPending
      metrics.withEngine { $0.swapFinished(uuid: action.vm.uuid, succeeded: succeeded, now: now) }
      log.emit("swap", ["vm": .string(action.vm.name), "direction": .string(action.verb.rawValue), "pool": .string(action.pool),
                        "outcome": .string(outcome.rawValue), "seconds": .number(seconds)])
      // A guest that did not take its new NIC is left alone, 30 s and doubling
      // up to 10 min while it keeps refusing: each try holds the loop up to
      // confirmSeconds and would most likely fail the same way.
      if outcome == .notTaken {
        let n = notTakenCount[domain.uuid, default: 0]
        notTakenCount[domain.uuid] = n + 1
        notTakenUntil[domain.uuid] = now.seconds + min(600, 30 * Double(1 << min(n, 5)))
      } else if outcome == .done {
        notTakenCount[domain.uuid] = nil
        notTakenUntil[domain.uuid] = nil
      }
      try? inventory.refresh(uuid: domain.uuid)
      // SIGTERM lets the swap in progress finish, then stops.
      if stop.load(ordering: .sequentiallyConsistent) { break }
    }
  }

  /// observe → record → decide → log → metrics and status: the part of a
  /// cycle that needs neither libvirt nor a swap. `package` so bench-agent
  /// times exactly this code; nil when only recording.
  package func observeAndDecide(domains: [DomainInventory], counters: CounterSnapshot, poolTotals: [String: Int],
                                now: Instant, vfSince: [String: Instant] = [:],
                                measurements: [String: VFMeasurement]? = nil) -> Plan? {
    let observation = observe(domains: domains, counters: counters, policy: policy, poolTotals: poolTotals, now: now,
                              vfSince: vfSince, measurements: measurements, positions: &devicePositions)
    reportCounterSources(observation)
    recorder?.record(observation, now: now)
    if config.recordOnly { return nil }
    let policy = self.policy
    let plan = metrics.withEngine { decide(&$0, policy: policy, observation: observation, now: now) }
    let news = report(plan, observation: observation, now: now)
    publish(observation, plan: plan, poolTotals: poolTotals, now: now, news: news)
    return plan
  }

  /// Appends the plan's actions to `decisions`, dropping the oldest beyond
  /// `decisionsKept` (half a window at a time: amortised, not a shift per append).
  package func recordDecisions(_ plan: Plan, now: Instant) {
    for action in plan.actions { decisions.append((now.seconds, action.verb, action.vm.name)) }
    if decisions.count > Self.decisionsKept {
      decisions.removeFirst(decisions.count - Self.decisionsKept / 2)
    }
  }

  /// What `run` does after each cycle, for bench-agent: the status file is
  /// written every tenth cycle, so the cycle number matters to the cost.
  package func cycleFinished() { cycle += 1 }

  /// When each VM got its VF, from the parked NIC's timestamp — read only for
  /// VMs the engine does not know yet, so a restart keeps the dwell.
  func parkedSince(_ domains: [DomainInventory], swapper: Swapper, now: Instant) -> [String: Instant] {
    guard cycle == 0 else { return [:] }
    var out: [String: Instant] = [:]
    let wallNow = Swapper.nowMilliseconds()
    for d in domains {
      guard managedNICs(d, policy: policy).vf != nil, let parked = swapper.readParked(d.uuid) else { continue }
      out[d.uuid] = now + (-Double(wallNow - parked.sinceUnixMilliseconds) / 1000)
    }
    return out
  }

  /// Logs the plan; true when it logged something (an action, a hold whose rule changed).
  @discardableResult
  func report(_ plan: Plan, observation: Observation, now: Instant) -> Bool {
    var news = !plan.actions.isEmpty
    for action in plan.actions {
      let rate = metrics.withEngine { $0.rate(of: action.vm.uuid) }
      log.emit("decision", ["vm": .string(action.vm.name), "class": .string(className(action.vm)),
                            "decision": .string(action.verb.rawValue), "pool": .string(action.pool), "rule": .string(action.reason.rule),
                            "reason": .string("\(action.reason)"), "bytesPerSecond": .optional(rate?.bytesPerSecond),
                            "packetsPerSecond": .optional(rate?.packetsPerSecond), "dryRun": .bool(config.dryRun),
                            "t": .number(now.seconds)])
      lastHold[action.vm.uuid] = nil
    }
    // Not measured, and measured again: one line per change, not per cycle.
    var nowUnmeasured: Set<String> = []
    for hold in plan.holds {
      // A baseline (the cycle after a swap or a start) is routine: its hold
      // line says so; unknown and stale readings are what an operator watches
      // (and a baseline after them is not yet "measured again").
      guard case .notMeasured(let why) = hold.reason else { continue }
      if why == .baseline && !unmeasured.contains(hold.vm.uuid) { continue }
      nowUnmeasured.insert(hold.vm.uuid)
      if !unmeasured.contains(hold.vm.uuid) {
        news = true
        log.emit("measurement", ["vm": .string(hold.vm.name), "measured": .bool(false), "why": .string(why.rawValue),
                                 "reason": .string(why.description), "t": .number(now.seconds)])
      }
    }
    if !unmeasured.isEmpty || !nowUnmeasured.isEmpty {
      for uuid in unmeasured where !nowUnmeasured.contains(uuid) {
        // The VM may have left; its name is in the observation when it has not.
        let name = observation.vms.first { $0.identity.uuid == uuid }?.identity.name
        if let name { log.emit("measurement", ["vm": .string(name), "measured": .bool(true), "t": .number(now.seconds)]) }
        if lastHold[uuid] == "not-measured" { lastHold[uuid] = nil }
        news = true
      }
      unmeasured = nowUnmeasured
    }
    // A hold is logged when its rule changes, not every second it lasts.
    for hold in plan.holds where lastHold[hold.vm.uuid] != hold.reason.rule {
      lastHold[hold.vm.uuid] = hold.reason.rule
      news = true
      log.emit("decision", ["vm": .string(hold.vm.name), "class": .string(className(hold.vm)), "decision": "hold",
                            "wants": .string(hold.wants.rawValue), "rule": .string(hold.reason.rule), "reason": .string("\(hold.reason)"),
                            "t": .number(now.seconds)])
    }
    return news
  }

  /// Logs a VM's counter source when it changes (one line, with the reason
  /// for an unknown one) and hands the VF sources to the metrics.
  func reportCounterSources(_ observation: Observation) {
    guard let sources = vfSources else { return }
    var rows: [(vm: String, source: String, reason: String?)] = []
    rows.reserveCapacity(sources.measured.count)
    for m in sources.measured { rows.append((m.name, m.choice.source.rawValue, m.choice.reason)) }
    // Keyed by UUID: only the few VMs on a VF, looked up once each.
    var seen: [String: TrafficSource] = [:]
    for (uuid, choice) in sources.choices {
      seen[uuid] = choice.source
      if lastSource[uuid] != choice.source {
        let name = observation.vms.first { $0.identity.uuid == uuid }?.identity.name ?? uuid
        log.emit("counter-source", ["vm": .string(name), "source": .string(choice.source.rawValue),
                                    "reason": choice.reason.map { .string($0) } ?? .null])
      }
    }
    lastSource = seen
    metrics.observeCounterSources(rows)
  }

  /// Which source measures a VM, and why it is unknown: a VF as its
  /// pool's `counters` decided, a virtio NIC by its host device.
  func counterSource(_ vm: VMObservation) -> (source: String?, reason: String?) {
    counterSource(vm, choices: vfSources?.choices ?? [:])
  }

  func counterSource(_ vm: VMObservation, choices: [String: TrafficSourceChoice]) -> (source: String?, reason: String?) {
    if let choice = choices[vm.identity.uuid] { return (choice.source.rawValue, choice.reason) }
    if case .virtio = vm.placement { return (TrafficSource.host.rawValue, nil) }
    if case .vf = vm.placement, vm.reading.isUnknown { return (TrafficSource.unknown.rawValue, "a VF passed to the guest has no host netdev") }
    if case .vf = vm.placement { return (TrafficSource.host.rawValue, nil) }
    return (nil, nil)
  }

  func className(_ vm: VMIdentity) -> String {
    if case .managed(let c) = policy.resolveClass(of: vm) { return policy.classes[c].name }
    return "-"
  }

  func publish(_ observation: Observation, plan: Plan, poolTotals: [String: Int], now: Instant, news: Bool) {
    // Status for `vfshift status`: in the cycle something new is logged (an
    // action, a hold whose rule changed — not a hold that lasts), else every
    // tenth, so a host of 1,000 VMs does not rewrite it each second; its rows
    // are built only for the cycles that write it.
    let writeStatus = news || cycle % 10 == 0
    var used: [String: Int] = [:]
    for i in observation.vms.indices {
      if case .vf(let p) = observation.vms[i].placement { used[p, default: 0] += 1 }
    }
    for (p, n) in observation.pools { used[p, default: 0] += n.heldByOthers }
    var pools: [String: (capacity: Int, used: Int, cap: Int)] = [:]
    for pool in policy.pools {
      let total = poolTotals[pool.name] ?? 0
      pools[pool.name] = (total, used[pool.name] ?? 0, min(pool.maxInUse ?? total, total))
    }
    metrics.observePools(pools)
    var waiting: [String: Int] = [:]
    for hold in plan.holds where hold.wants == .promote {
      if case .managed(let c) = policy.resolveClass(of: hold.vm), let p = policy.classes[c].pool { waiting[p, default: 0] += 1 }
    }
    metrics.observeWaiting(waiting)
    if let path = config.metricsTextfile { writeAtomically(metrics.render(), to: path) }
    let last = LastCycle(observation: observation, plan: plan,
                         pools: pools.map { .init(name: $0.key, vfs: $0.value.capacity, used: $0.value.used, cap: $0.value.cap) }
                           .sorted { $0.name < $1.name },
                         policy: policy, cycle: cycle, now: now, updatedAt: logTimestamp(),
                         sources: vfSources?.choices ?? [:])
    lastCycle.withLock { $0 = last }
    if writeStatus {
      let rows = metrics.withEngineRead { statusRows(observation, plan: plan, policy: policy, state: $0, source: counterSource) }
      writeAtomically(status(last, rows: rows).json, to: config.statusPath)
    }
  }
}

public struct PoolMismatch: Error, CustomStringConvertible {
  public var pool: String
  public var network: String
  public var reason: String
  public var description: String {
    "policy pool '\(pool)': libvirt network '\(network)' is not a usable VF pool: \(reason)"
  }
}

public struct StatusRow: Codable, Sendable {
  public var vm: String
  public var className: String
  public var placement: String
  public var bytesPerSecond: Double?
  public var packetsPerSecond: Double?
  public var intensive: Bool
  public var decision: String
  /// What measured the VM this cycle (`host`, `representor`, `pf`,
  /// `guestAgent`, `unknown`); nil while it has no NIC to read.
  public var counterSource: String?
  /// Why it is `unknown` (each source tried, with its reason).
  public var counterSourceReason: String?

  public init(vm: String, className: String, placement: String, bytesPerSecond: Double?, packetsPerSecond: Double?,
              intensive: Bool, decision: String, counterSource: String? = nil, counterSourceReason: String? = nil) {
    self.vm = vm; self.className = className; self.placement = placement; self.bytesPerSecond = bytesPerSecond
    self.packetsPerSecond = packetsPerSecond; self.intensive = intensive; self.decision = decision
    self.counterSource = counterSource; self.counterSourceReason = counterSourceReason
  }
}

public struct AgentStatus: Codable, Sendable {
  public struct Pool: Codable, Sendable { public var name: String; public var vfs: Int; public var used: Int; public var cap: Int }
  public var policy: String
  public var dryRun: Bool
  public var pid: Int
  public var cycle: Int
  public var intervalSeconds: Double
  public var updatedAt: String
  public var pools: [Pool]
  public var vms: [StatusRow]
}

extension AgentStatus {
  /// The status as JSON that `JSONDecoder` reads back into the same value
  /// (nil rates left out, as JSONEncoder does). Written by hand: at 1,000 VMs
  /// JSONEncoder took ~60 ms per write, most of the agent's steady CPU (bench-agent).
  package var json: [UInt8] {
    var out = JSONOutput(capacity: 256 + vms.count * 192)
    out.raw("{\"policy\":"); out.string(policy)
    out.raw(",\"dryRun\":"); out.bool(dryRun)
    out.raw(",\"pid\":"); out.int(pid)
    out.raw(",\"cycle\":"); out.int(cycle)
    out.raw(",\"intervalSeconds\":")
    if intervalSeconds.isFinite { out.number(intervalSeconds) } else { out.raw("0") }
    out.raw(",\"updatedAt\":"); out.string(updatedAt)
    out.raw(",\"pools\":[")
    for (i, p) in pools.enumerated() {
      if i > 0 { out.raw(",") }
      out.raw("{\"name\":"); out.string(p.name)
      out.raw(",\"vfs\":"); out.int(p.vfs)
      out.raw(",\"used\":"); out.int(p.used)
      out.raw(",\"cap\":"); out.int(p.cap)
      out.raw("}")
    }
    out.raw("],\"vms\":[")
    for i in vms.indices {
      if i > 0 { out.raw(",") }
      out.raw("{\"vm\":"); out.string(vms[i].vm)
      out.raw(",\"className\":"); out.string(vms[i].className)
      out.raw(",\"placement\":"); out.string(vms[i].placement)
      if let b = vms[i].bytesPerSecond, b.isFinite { out.raw(",\"bytesPerSecond\":"); out.number(b) }
      if let p = vms[i].packetsPerSecond, p.isFinite { out.raw(",\"packetsPerSecond\":"); out.number(p) }
      out.raw(",\"intensive\":"); out.bool(vms[i].intensive)
      out.raw(",\"decision\":"); out.string(vms[i].decision)
      if let c = vms[i].counterSource { out.raw(",\"counterSource\":"); out.string(c) }
      if let r = vms[i].counterSourceReason { out.raw(",\"counterSourceReason\":"); out.string(r) }
      out.raw("}")
    }
    out.raw("]}")
    return out.bytes
  }
}

/// Returns the heap's free pages to the kernel (glibc's malloc_trim, which
/// also releases free pages in the middle of the heap, not only at its top).
func releaseFreeHeapPages() {
  _ = malloc_trim(0)
}

/// Write-then-rename, so a reader never sees half a file.
func writeAtomically(_ text: String, to path: String) {
  writeAtomically(Array(text.utf8), to: path)
}

func writeAtomically(_ bytes: [UInt8], to path: String) {
  // open/write/rename, not FileManager + Data: this runs every tenth cycle
  // with ~140 KB of status at 1,000 VMs, and Foundation's file code copied
  // the bytes and kept its own pages of the binary resident (bench-agent).
  let tmp = path + ".tmp"
  let flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
  var fd = open(tmp, flags, 0o666)
  if fd < 0 && errno == ENOENT {
    // The directory is made on first use (/run/vfshift after a boot).
    let dir = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    fd = open(tmp, flags, 0o666)
  }
  guard fd >= 0 else { return }
  let complete = writeAll(fd, bytes)
  guard close(fd) == 0, complete else { unlink(tmp); return }
  _ = rename(tmp, path)
}

/// Appends the observed samples to a trace file, in the format `whatif` reads.
final class TraceRecorder {
  let handle: FileHandle
  var keys: [String: String] = [:]   // uuid → key
  /// Keys handed out so far: a domain re-created under an old name gets its own.
  var takenKeys = Set<String>()
  var present = Set<String>()

  init(path: String, interval: Double, pools: [String: Int]) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil) else {
      throw FileError(path: path, reason: "cannot be created")
    }
    handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    var header = "\(Trace.magic)\nsource recorded by vfshift on \(ProcessInfo.processInfo.hostName)\ninterval \(interval)\n"
    for (name, n) in pools.sorted(by: { $0.key < $1.key }) { header += "pool \(encodeField(name)) \(n)\n" }
    handle.write(header.data(using: .utf8)!)
  }

  func record(_ observation: Observation, now: Instant) {
    var out = ""
    let seen = Set(observation.vms.map(\.identity.uuid))
    for uuid in present.subtracting(seen).sorted() { out += "gone \(keys[uuid]!)\n"; present.remove(uuid) }
    for vm in observation.vms where !present.contains(vm.identity.uuid) {
      if let key = keys[vm.identity.uuid] {
        out += "back \(key)\n"
      } else {
        let key = Trace.uniqueKey(for: vm.identity.name, taken: &takenKeys)
        keys[vm.identity.uuid] = key
        out += Trace.vmLine(key: key, vm.identity)
      }
      present.insert(vm.identity.uuid)
    }
    out += "c \(now.seconds)\n"
    for vm in observation.vms {
      switch vm.reading {
      case .stale: continue
      default: out += Trace.sampleLine(keys[vm.identity.uuid]!, vm.reading) + "\n"
      }
    }
    handle.write(out.data(using: .utf8)!)
  }

  func close() { try? handle.synchronize(); try? handle.close() }
}

extension Duration {
  var seconds: Double {
    let (s, atto) = components
    return Double(s) + Double(atto) / 1e18
  }
}

