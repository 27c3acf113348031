import Foundation
import Synchronization
import VFShiftCore
import VFShiftFiles
import VFShiftHost
import VFShiftLibvirt

/// The host agent: each cycle observe → decide → act → record, level-triggered
/// from what libvirt and the kernel say now.
public final class Agent: @unchecked Sendable {
  let config: AgentConfig
  let log: EventLog
  /// The engine state the loop decides on; `metrics` and the control socket read it.
  let engine = EngineCell()
  let contention: ContentionSampler
  public let metrics: Metrics
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
  /// inventory's generation stands (its generation keys observe's cache).
  var attributed: (generation: UInt64, domains: [DomainInventory])?
  var cycle = 0
  /// Each VM's placement as the status file last gave it, in observation order.
  var statusPlacements: [Placement] = []
  /// The last cycle's view, for the control socket.
  let lastCycle = Mutex<LastCycle?>(nil)
  let startedAt = ContinuousClock.now
  /// Decisions this process made, for tests comparing with a replay: the
  /// last `decisionsKept` of them, so a forced move retried for months does
  /// not grow the agent.
  public private(set) var decisions: [(at: Double, verb: Verb, vm: String)] = []
  package static let decisionsKept = 10_000
  /// VMs held as "not measured" in the last cycle, to log the change only.
  var unmeasured: Set<String> = []

  public init(config: AgentConfig, log: EventLog = EventLog()) throws {
    self.config = config
    self.log = log
    self.metrics = Metrics(engine: engine)
    self.contention = ContentionSampler(everyNth: config.contentionEveryNth, proc: ProcRoot(config.procRoot),
                                        runDirectory: config.qemuRunDirectory)
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
    ignoreBrokenPipes()
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
    var swapper = Swapper(connection: connection, log: log, attachDeadline: config.attachDeadline,
                          detachDeadline: config.detachDeadline,
                          stepHook: config.stepHook ?? { _ in })
    swapper.switchOver = switchOverFromEnvironment()
    // Dry run and record-only observe and decide like a live run; only the actuator differs.
    let actuator: Actuator = config.dryRun || config.recordOnly
      ? DryRunActuator(log: log)
      : LibvirtActuator(swapper: swapper, inventory: inventory, log: log) { [weak self] in self?.bothNICRepairs($0) ?? [] }
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
      let full = reconcileNeeded.exchange(false, ordering: .sequentiallyConsistent)
      if await actuator.reconcile(domains, waitingOnGuests: full) { domains = withPools(inventory) }
      observeDetachPending(domains)
      let began = ContinuousClock.now
      await runCycle(domains: domains, inventory: inventory, reader: &reader, swapper: swapper, actuator: actuator,
                     poolTotals: poolTotals)
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

  func runCycle(domains: [DomainInventory], inventory: Inventory, reader: inout HostCounterReader, swapper: Swapper,
                actuator: Actuator, poolTotals: [String: Int]) async {
    let now = Instant(seconds: (ContinuousClock.now - startedAt).seconds)
    let counters: CounterSnapshot
    do { counters = try reader.read() } catch {
      metrics.error("counters")
      log.emit("error", ["kind": "counters", "error": .string("\(error)")])
      return
    }
    // The wall clock at `now`: the domains' records are in Unix time, the engine's instants are not.
    let wallAtNow = Swapper.nowMilliseconds()
    let vfSince = parkedSince(domains, swapper: swapper, now: now, wallAtNow: wallAtNow)
    if cycle == 0 { restoreRefusals(domains, now: now, wallAtNow: wallAtNow) }
    let policy = self.policy
    contention.sample(domains, cycle: cycle, generation: inventory.generation) {
      if case .managed = policy.resolveClass(of: VMIdentity(uuid: $0.uuid, name: $0.name, label: $0.qosLabel)) { true } else { false }
    }
    metrics.observeCPUPressure(contention.pressure)
    let measurements = vfSources?.measure(domains: domains, policy: policy, counters: counters, now: now,
                                          generation: inventory.generation)
    guard let plan = cycleWithoutActing(domains: domains, counters: counters, poolTotals: poolTotals, now: now,
                                        vfSince: vfSince, measurements: measurements,
                                        generation: attributed?.generation) else { return }
    guard !plan.actions.isEmpty else { return }
    recordDecisions(plan, now: now)
    for step in steps(plan, domains: domains) {
      let action = step.action
      let began = ContinuousClock.now
      guard let outcome = await actuator.apply(step, now: now) else { continue }
      let seconds = (ContinuousClock.now - began).seconds
      metrics.swapFinished(verb: action.verb, outcome: outcome.rawValue, seconds: seconds)
      // Tells the engine, so a forced move that keeps failing backs off. A
      // guest still holding its old NIC is mid-swap, not a failure.
      let succeeded = outcome == .done || outcome == .detachPending
      let refusal = engine.update { state -> (times: Int, until: Instant)? in
        state.swapFinished(uuid: action.vm.uuid, succeeded: succeeded, now: now)
        if outcome == .notTaken { state.guestRefused(uuid: action.vm.uuid, now: now) }
        return state.refusal(of: action.vm.uuid)
      }
      if outcome == .notTaken, let refusal {
        actuator.keepRefusal(step.domain, RefusalRecord(times: refusal.times,
                                                        untilUnixMilliseconds: wallAtNow + Int64((refusal.until - now) * 1000)))
      } else if succeeded, step.domain.refusal != nil {
        actuator.keepRefusal(step.domain, nil)
      }
      log.emit("swap", ["vm": .string(action.vm.name), "direction": .string(action.verb.rawValue), "pool": .string(action.pool),
                        "outcome": .string(outcome.rawValue), "seconds": .number(seconds)])
      // SIGTERM lets the swap in progress finish, then stops.
      if stop.load(ordering: .sequentiallyConsistent) { break }
    }
  }

  /// The part of a cycle that needs neither libvirt nor a swap: observe,
  /// decide, then account for both. `package` so bench-agent times exactly
  /// this code; nil when only recording. `generation`: the inventory
  /// generation `domains` are of (observe's cache), nil when unknown.
  package func cycleWithoutActing(domains: [DomainInventory], counters: CounterSnapshot, poolTotals: [String: Int],
                                  now: Instant, vfSince: [String: Instant] = [:],
                                  measurements: [String: VFMeasurement]? = nil, generation: UInt64? = nil) -> Plan? {
    let (observation, plan) = observeAndDecide(domains: domains, counters: counters, poolTotals: poolTotals, now: now,
                                               vfSince: vfSince, measurements: measurements, generation: generation)
    account(observation, plan: plan, poolTotals: poolTotals, now: now)
    return plan
  }

  /// The world as seen this cycle and the engine's plan for it (none when only recording).
  func observeAndDecide(domains: [DomainInventory], counters: CounterSnapshot, poolTotals: [String: Int],
                        now: Instant, vfSince: [String: Instant], measurements: [String: VFMeasurement]?,
                        generation: UInt64?) -> (observation: Observation, plan: Plan?) {
    var observation = observe(domains: domains, counters: counters, policy: policy, poolTotals: poolTotals, now: now,
                              vfSince: vfSince, measurements: measurements, generation: generation,
                              positions: &devicePositions)
    contention.annotate(&observation)
    if config.recordOnly { return (observation, nil) }
    let policy = self.policy
    return (observation, engine.update { decide(&$0, policy: policy, observation: observation, now: now) })
  }

  /// What a cycle leaves besides its actions: the trace, the log, metrics and status.
  func account(_ observation: Observation, plan: Plan?, poolTotals: [String: Int], now: Instant) {
    reportCounterSources(observation)
    recorder?.record(observation, now: now)
    guard let plan else { return }
    let news = report(plan, observation: observation, now: now)
    publish(observation, plan: plan, poolTotals: poolTotals, now: now, news: news)
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

  /// A restarted agent's first cycle: the refusals the domains keep
  /// (`RefusalRecord`) go to the engine before it decides anything.
  func restoreRefusals(_ domains: [DomainInventory], now: Instant, wallAtNow: Int64) {
    let found = domains.compactMap { d in d.refusal.map { (d.uuid, $0) } }
    guard !found.isEmpty else { return }
    engine.update { state in
      for (uuid, r) in found {
        state.restoreRefusal(uuid: uuid, times: r.times, until: now + Double(r.untilUnixMilliseconds - wallAtNow) / 1000, now: now)
      }
    }
  }

  /// When each VM got its VF, from the parked NIC's timestamp — read only for
  /// VMs the engine does not know yet, so a restart keeps the dwell.
  func parkedSince(_ domains: [DomainInventory], swapper: Swapper, now: Instant, wallAtNow: Int64) -> [String: Instant] {
    guard cycle == 0 else { return [:] }
    var out: [String: Instant] = [:]
    for d in domains {
      guard managedNICs(d, policy: policy).vf != nil, let parked = swapper.readParked(d.uuid) else { continue }
      out[d.uuid] = now + (-Double(wallAtNow - parked.sinceUnixMilliseconds) / 1000)
    }
    return out
  }
}

extension Duration {
  var seconds: Double {
    let (s, atto) = components
    return Double(s) + Double(atto) / 1e18
  }
}

