// The agent's listeners under load and abuse (issue #16), on loopback, each
// test with its own listener on an ephemeral port started in-process; and the
// control socket `vfshift status` asks (#13 item 7).
import Foundation
import Synchronization
import Testing
import VFShiftCore
@testable import VFShiftAgent
import VFShiftFiles
import VFShiftHost
import VFShiftTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A blocking loopback TCP client with a receive deadline: a test that waits
/// on the listener waits at most that long, then fails.
final class Client: @unchecked Sendable {
  let fd: Int32
  init(port: UInt16, receiveTimeout: Double = 5) throws {
    fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var tv = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout - receiveTimeout.rounded(.down)) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let rc = withUnsafePointer(to: &addr) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { let e = errno; close(fd); throw SystemCallError(call: "connect", subject: "127.0.0.1:\(port)", errno: e) }
  }
  deinit { close(fd) }

  /// False once the peer refuses more (reset, closed).
  @discardableResult
  func send(_ text: String) -> Bool { send(Array(text.utf8)) }
  @discardableResult
  func send(_ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
      let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n <= 0 { return false }
      done += n
    }
    return true
  }

  /// Everything until the peer closes, or nil on a timeout.
  func readToEnd() -> [UInt8]? {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n == 0 { return out }
      if n < 0 { return errno == ECONNRESET && !out.isEmpty ? out : nil }
      out.append(contentsOf: chunk[..<n])
    }
  }

  /// One HTTP response (header + Content-Length body), leaving the connection open.
  /// Bytes read past the last response (a pipelined one's).
  var pending: [UInt8] = []

  func readResponse() -> (head: String, body: [UInt8])? {
    var buffer = pending
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      if let end = MetricsHTTP.headerEnd(buffer) {
        let head = String(decoding: buffer[..<end], as: UTF8.self)
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
          .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        if buffer.count - end >= length {
          pending = Array(buffer[(end + length)...])
          return (head, Array(buffer[end..<(end + length)]))
        }
      }
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n <= 0 { return nil }
      buffer.append(contentsOf: chunk[..<n])
    }
  }

  /// True when the peer has closed this connection (EOF) within the timeout.
  func closedByPeer() -> Bool {
    var byte: UInt8 = 0
    return recv(fd, &byte, 1, 0) == 0
  }
}

func port(_ listener: MetricsListener) -> UInt16 { UInt16(listener.boundAddress.split(separator: ":")[1])! }

/// Metrics as an agent of 200 VMs has them after a few cycles: pools, swaps,
/// per-VM rates (the engine decided on real observations).
func busyMetrics() throws -> Metrics {
  let policy = try loadPolicy("\(TestBed.packageRoot.path)/policies/general.json")
  let m = Metrics()
  for t in 1...3 {
    let vms = (0..<200).map { i in
      VMObservation(identity: VMIdentity(uuid: "u\(i)", name: "vm\(i)"), placement: i < 4 ? .vf(pool: "default") : .virtio,
                    reading: .known(source: "vnet\(i)", counters: VMCounters(rxBytes: UInt64(t * i * 1000), txBytes: 0,
                                                                            rxPackets: UInt64(t * i), txPackets: 0),
                                    at: Instant(seconds: Double(t))))
    }
    let observation = Observation(vms: vms, pools: ["default": PoolCapacity(total: 4)])
    _ = m.engine.update { decide(&$0, policy: policy, observation: observation, now: Instant(seconds: Double(t))) }
    m.cycleFinished(seconds: 0.002, intervalSeconds: 1)
  }
  m.observePools(["default": (capacity: 4, used: 4, cap: 4)])
  m.swapFinished(verb: .promote, outcome: "done", seconds: 1.2)
  return m
}

/// Resident anonymous memory of this process, in kB (/proc/self/status, RssAnon).
func rssAnonKB() -> Int {
  let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
  let line = text.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
  return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

@Suite("Listeners") struct ListenerTests {
  @Test("a scrape is answered within 1 s while 50 idle connections are held open")
  func scrapeWithIdleConnections() throws {
    let metrics = try busyMetrics()
    let listener = try MetricsListener(address: "127.0.0.1:0") { metrics.exposition() }
    defer { listener.stop() }
    // Each idle client sends nothing: the one-at-a-time listener waited 2 s on each.
    let idle = try (0..<50).map { _ in try Client(port: port(listener)) }
    let scraper = try Client(port: port(listener), receiveTimeout: 1)
    scraper.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    let response = try #require(scraper.readResponse(), "no answer within 1 s with 50 idle connections open")
    #expect(response.head.hasPrefix("HTTP/1.1 200 OK"))
    #expect(String(decoding: response.body, as: UTF8.self).contains("vfshift_vm_on_vf{vm=\"vm0\""))
    withExtendedLifetime(idle) {}
  }

  @Test("a 10 MB request header is refused with 431 within 2 s, and the agent's memory stays flat")
  func hugeHeaderRefused() throws {
    let metrics = try busyMetrics()
    let listener = try MetricsListener(address: "127.0.0.1:0") { metrics.exposition() }
    defer { listener.stop() }
    let payload = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 10 << 20)
    // Warm up (first render, thread stacks) before the baseline.
    let warm = try Client(port: port(listener))
    warm.send("GET /metrics HTTP/1.0\r\n\r\n")
    _ = warm.readToEnd()
    let before = rssAnonKB()
    let client = try Client(port: port(listener), receiveTimeout: 2)
    let sender = Thread { _ = client.send(payload) }
    sender.start()
    let answer = try #require(client.readToEnd(), "no answer within 2 s")
    let after = rssAnonKB()
    #expect(String(decoding: answer.prefix(64), as: UTF8.self).hasPrefix("HTTP/1.1 431 "))
    // The listener holds at most its bound plus one read (64 KB) per connection.
    #expect(after - before < 2048, "RssAnon grew from \(before) kB to \(after) kB")
    shutdown(client.fd, Int32(SHUT_RDWR))
  }

  @Test("200 concurrent scrapes are all answered, with identical exposition text that promtool accepts")
  func concurrentScrapes() throws {
    let metrics = try busyMetrics()
    let listener = try MetricsListener(address: "127.0.0.1:0", limits: ListenerLimits(maxConnections: 256)) { metrics.exposition() }
    defer { listener.stop() }
    // All 200 connected and asking before any answer is read.
    let clients = try (0..<200).map { _ in try Client(port: port(listener)) }
    for c in clients { #expect(c.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")) }
    var bodies = Set<[UInt8]>()
    var answered = 0
    for c in clients {
      guard let raw = c.readToEnd(), let end = MetricsHTTP.headerEnd(raw) else { continue }
      #expect(String(decoding: raw[..<end], as: UTF8.self).hasPrefix("HTTP/1.1 200 OK"))
      answered += 1
      bodies.insert(Array(raw[end...]))
    }
    #expect(answered == 200)
    #expect(bodies.count == 1, "\(bodies.count) different bodies")
    let body = try #require(bodies.first)
    let scratch = Scratch("promtool")
    try FileManager.default.createDirectory(atPath: scratch.path, withIntermediateDirectories: true)
    try Data(body).write(to: URL(fileURLWithPath: scratch.file("metrics.txt")))
    guard (try? TestBed.run(["sh", "-c", "command -v promtool"])) != nil || TestBed.isCI else {
      print("skipped: promtool check metrics (promtool not installed: apt-get install prometheus)")
      return
    }
    // promtool's lint warnings (exit 3) and errors (exit 1) both fail.
    let out = try TestBed.run(["sh", "-c", "promtool check metrics < '\(scratch.file("metrics.txt"))' 2>&1"])
    #expect(out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(out)")
  }

  @Test("HTTP/1.1: HEAD without a body, other methods 405 with Allow, / links /metrics, other paths 404, keep-alive and close")
  func httpSemantics() throws {
    let listener = try MetricsListener(address: ":0") { Array("vfshift_up 1\n".utf8) }
    defer { listener.stop() }
    #expect(listener.boundAddress.hasPrefix("127.0.0.1:"), "an empty host is loopback: \(listener.boundAddress)")
    let c = try Client(port: port(listener))
    // Three requests on one kept-alive connection.
    c.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    try TestBed.waitUntil(deadlineSeconds: 5, "HEAD answered") {
      let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
      if n > 0 { buffer += chunk[..<n] }
      return MetricsHTTP.headerEnd(buffer) != nil
    }
    let head = String(decoding: buffer, as: UTF8.self)
    #expect(head.hasPrefix("HTTP/1.1 200 OK") && head.contains("Content-Length: 13\r\n") && head.hasSuffix("\r\n\r\n"), "\(head)")
    c.send("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    let post = try #require(c.readResponse())
    #expect(post.head.hasPrefix("HTTP/1.1 405 ") && post.head.contains("Allow: GET, HEAD\r\n"), "\(post.head)")
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    let index = try #require(c.readResponse())
    #expect(index.head.hasPrefix("HTTP/1.1 200 OK") && String(decoding: index.body, as: UTF8.self).contains("href=\"/metrics\""))
    let missing = try #require(c.readResponse())
    #expect(missing.head.hasPrefix("HTTP/1.1 404 ") && missing.head.contains("Connection: close"))
    #expect(c.closedByPeer(), "Connection: close is honoured")
    // HTTP/1.0 closes by default; HTTP/1.1 without Host is a 400.
    let old = try Client(port: port(listener))
    old.send("GET /metrics HTTP/1.0\r\n\r\n")
    let oldAnswer = String(decoding: try #require(old.readToEnd()), as: UTF8.self)
    #expect(oldAnswer.hasPrefix("HTTP/1.1 200 OK") && oldAnswer.contains("Connection: close") && oldAnswer.hasSuffix("vfshift_up 1\n"))
    let hostless = try Client(port: port(listener))
    hostless.send("GET /metrics HTTP/1.1\r\n\r\n")
    #expect(String(decoding: try #require(hostless.readToEnd()), as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
  }

  @Test("a request not complete by its deadline gets a 408 and is closed; over the connection cap the longest idle goes first")
  func deadlinesAndCap() throws {
    let limits = ListenerLimits(maxRequestBytes: 8192, requestDeadline: 0.3, idleTimeout: 60, maxConnections: 3)
    let deadlines = try MetricsListener(address: "127.0.0.1:0", limits: limits) { Array("vfshift_up 1\n".utf8) }
    defer { deadlines.stop() }
    let slow = try Client(port: port(deadlines))
    slow.send("GET /metr")
    let cut = String(decoding: try #require(slow.readToEnd(), "not cut off"), as: UTF8.self)
    #expect(cut.hasPrefix("HTTP/1.1 408 "), "\(cut)")
    // The cap on a listener of its own: the refused connection above lingers
    // a second, draining, and counts.
    let listener = try MetricsListener(address: "127.0.0.1:0", limits: limits) { Array("vfshift_up 1\n".utf8) }
    defer { listener.stop() }
    let first = try Client(port: port(listener))
    // The listener has accepted `first` before the next two connect: its
    // answer to a request proves it.
    first.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = try #require(first.readResponse())
    let second = try Client(port: port(listener))
    second.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = try #require(second.readResponse())
    let third = try Client(port: port(listener))
    third.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = try #require(third.readResponse())
    let fourth = try Client(port: port(listener))
    fourth.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try #require(fourth.readResponse()).head.hasPrefix("HTTP/1.1 200 OK"))
    #expect(first.closedByPeer(), "the connection idle longest is shed")
    second.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(second.readResponse()?.head.hasPrefix("HTTP/1.1 200 OK") == true, "the others stay")
  }

  @Test("control socket: 0600 in a root-only directory, root answered, a non-root peer refused by SO_PEERCRED, requests bounded")
  func controlSocketPeers() throws {
    let scratch = Scratch("control")
    try FileManager.default.createDirectory(atPath: scratch.path, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o755])
    let path = scratch.file("control.sock")
    let asked = Mutex<[String]>([])
    let control = try ControlListener(path: path) { line in
      asked.withLock { $0.append(line) }
      return Array("{\"answer\":\"\(line)\"}\n".utf8)
    }
    defer { control.stop() }
    var st = stat()
    #expect(lstat(path, &st) == 0 && st.st_mode & 0o777 == 0o600, "mode \(String(st.st_mode & 0o777, radix: 8))")
    guard geteuid() == 0 else {
      #expect(!TestBed.isCI, "the peer test needs root to run a client as nobody")
      print("skipped: the control socket's non-root peer test (needs root)")
      return
    }
    // Root (this process) is answered; several at once.
    let answers = Mutex<[String?]>([])
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
      let a = askAgent(socket: path, "status").map { String(decoding: $0, as: UTF8.self) }
      answers.withLock { $0.append(a) }
    }
    #expect(answers.withLock { $0 } == Array(repeating: "{\"answer\":\"status\"}\n", count: 8))
    let client = """
      import socket, sys
      s = socket.socket(socket.AF_UNIX)
      try:
          s.connect(sys.argv[1])
      except OSError as e:
          print('connect:', e.strerror); sys.exit(0)
      s.sendall(b'status\\n'); s.shutdown(socket.SHUT_WR)
      data = b''
      while True:
          b = s.recv(4096)
          if not b: break
          data += b
      print(data.decode().strip())
      """
    // The socket's mode alone keeps nobody out ...
    let denied = try TestBed.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", client, path])
    #expect(denied.contains("connect: Permission denied"), "\(denied)")
    // ... and with the mode opened up (an operator's mistake), SO_PEERCRED still does.
    #expect(chmod(path, 0o666) == 0)
    let refused = try TestBed.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", client, path])
    #expect(refused.contains("\"error\":\"refused: peer uid 65534 is not root\""), "\(refused)")
    #expect(asked.withLock { $0 }.count == 8, "the refused peer's request never reached the agent")
    // A request over the bound is refused, not read on.
    let big = askUnix(path, [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20), timeout: 2)
    #expect(big.map { String(decoding: $0, as: UTF8.self) }?.contains("request over 1024 bytes") == true)
  }

  @Test("control socket: a directory others can write to is refused (another user could swap the socket)")
  func controlDirectoryChecked() throws {
    let scratch = Scratch("control-dir")
    try FileManager.default.createDirectory(atPath: scratch.path, withIntermediateDirectories: true)
    #expect(chmod(scratch.path, 0o777) == 0)
    #expect(throws: SystemCallError.self) { try ControlListener(path: scratch.file("control.sock")) { _ in [] } }
  }
}

@Suite("Listeners: snapshot and status") struct SnapshotAndStatusTests {
  @Test("a scrape is answered while the cycle holds the engine state (it renders the last snapshot)")
  func scrapeDuringCycle() throws {
    let metrics = try busyMetrics()
    let listener = try MetricsListener(address: "127.0.0.1:0") { metrics.exposition() }
    defer { listener.stop() }
    let first = try Client(port: port(listener))
    first.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    let before = try #require(first.readResponse()).body
    // A cycle in progress: the engine held until the scrape has been answered.
    let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
    Thread {
      _ = metrics.engine.update { _ in holding.signal(); release.wait() }
      done.signal()
    }.start()
    holding.wait()
    let during = try Client(port: port(listener), receiveTimeout: 2)
    during.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    let answer = during.readResponse()
    release.signal()
    done.wait()
    let body = try #require(answer, "the scrape waited for the cycle").body
    #expect(body == before, "the last snapshot's rows")
  }

  @Test("vfshift status asks the running agent; status VM prints its decision chain; without the agent, the file (noted); a bad file is named")
  func statusFromAgent() async throws {
    let scratch = Scratch("status")
    try FileManager.default.createDirectory(atPath: scratch.path, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o755])
    // libvirt's test driver, in the agent's process: three domains, no bed needed.
    var xml = "<node>\n"
    for i in 0..<3 {
      xml += "<domain type='test'><name>vm\(i)</name><uuid>00000000-0000-4000-8000-00000000000\(i)</uuid><memory>65536</memory>"
      xml += "<vcpu>1</vcpu><os><type>hvm</type></os><devices><interface type='bridge'><mac address='52:54:00:00:00:0\(i)'/>"
      xml += "<source bridge='br-none'/><target dev='vfst\(i)'/><model type='virtio'/><alias name='ua-net0'/></interface></devices></domain>\n"
    }
    try (xml + "</node>\n").write(toFile: scratch.file("node.xml"), atomically: true, encoding: .utf8)
    let agent = try AgentProcess(scratch: scratch, policy: "\(TestBed.packageRoot.path)/policies/general.json",
                                 arguments: ["--dry-run", "--connect", "test://\(scratch.file("node.xml"))", "--pool-size", "default=4"])
    defer { if agent.process.isRunning { agent.process.terminate(); agent.process.waitUntilExit() } }
    let socket = scratch.file("control.sock")
    try await agent.waitFor("the control socket answering after a cycle", seconds: 30) {
      guard let a = askAgent(socket: socket, "status") else { return false }
      return (try? JSONDecoder().decode(AgentStatus.self, from: Data(a)))?.vms.count == 3
    }
    func cli(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
      let r = try vfshiftCLI(args)
      return (r.status, r.stdout, r.stderr)
    }
    let status = try cli(["status", "--status-file", scratch.file("status.json")])
    #expect(status.code == 0 && status.err.isEmpty, "\(status)")
    #expect(status.out.contains("vm1  standard"), "\(status.out)")
    #expect(status.out.contains("CPU WAIT"), "the contention column: \(status.out)")
    if FileManager.default.fileExists(atPath: "/proc/pressure/cpu") {
      #expect(status.out.contains("host CPU pressure (PSI some): "), "\(status.out)")
    }
    let chain = try cli(["status", "vm1", "--status-file", scratch.file("status.json")])
    #expect(chain.code == 0, "\(chain)")
    for line in ["class                 standard (vf: eligible, pool default, priority 0)", "rank in pool          2 of 3",
                 "promote threshold     2.0MB/s, 5.0kpkt/s; not above (needs 10.0 s)", "decision              keep"] {
      #expect(chain.out.contains(line), "\(line) in \(chain.out)")
    }
    let json = try cli(["status", "vm2", "--json", "--status-file", scratch.file("status.json")])
    let decoded = try JSONDecoder().decode(VMDecisionChain.self, from: Data(json.out.utf8))
    #expect(decoded.vm == "vm2" && decoded.rank == 3 && decoded.contenders == 3 && decoded.swapsPerHourLimit == 6)
    let unknown = try cli(["status", "nope", "--status-file", scratch.file("status.json")])
    #expect(unknown.code == 1 && unknown.err.contains("no VM 'nope' in the last cycle"), "\(unknown)")

    agent.process.terminate()
    agent.process.waitUntilExit()
    let fallback = try cli(["status", "--status-file", scratch.file("status.json")])
    #expect(fallback.code == 0 && fallback.err.contains("note: no agent answers at \(socket); showing \(scratch.file("status.json"))"),
            "\(fallback)")
    try "{\"policy\": 3}".write(toFile: scratch.file("status.json"), atomically: true, encoding: .utf8)
    let bad = try cli(["status", "--status-file", scratch.file("status.json")])
    #expect(bad.code == 1 && bad.err.contains("error: \(scratch.file("status.json")): not a vfshift status:"), "\(bad)")
    #expect(bad.err.contains("at policy"), "names the field: \(bad.err)")
  }
}

extension SnapshotAndStatusTests {
  @Test("status VM: the chain carries the engine's sustain clock, dwell left, rank and the plan's rule, as of the last cycle")
  func decisionChainFromEngine() throws {
    let policyPath = "\(TestBed.packageRoot.path)/policies/general.json"
    let policy = try loadPolicy(policyPath)
    let agent = try Agent(config: AgentConfig(policyPath: policyPath))
    var plan = Plan()
    var observation = Observation(vms: [], pools: [:])
    // "busy" pushes 3 MB/s (over the 2 MB/s promote threshold) from t=0; "held"
    // has had its VF since t=0; "quiet" sends nothing.
    for t in 0...6 {
      func vm(_ name: String, _ bytesPerSecond: UInt64, _ placement: Placement) -> VMObservation {
        VMObservation(identity: VMIdentity(uuid: "u-\(name)", name: name), placement: placement,
                      reading: .known(source: "tap-\(name)", counters: VMCounters(rxBytes: bytesPerSecond * UInt64(t), txBytes: 0,
                                                                                rxPackets: 0, txPackets: 0),
                                      at: Instant(seconds: Double(t))),
                      vfSince: placement == .virtio ? nil : Instant(seconds: 0))
      }
      observation = Observation(vms: [vm("busy", 3_000_000, .virtio), vm("held", 0, .vf(pool: "default")), vm("quiet", 0, .virtio)],
                                pools: ["default": PoolCapacity(total: 4)])
      let now = Instant(seconds: Double(t))
      plan = agent.engine.update { decide(&$0, policy: policy, observation: observation, now: now) }
    }
    agent.lastCycle.withLock {
      $0 = LastCycle(observation: observation, plan: plan, pools: [], policy: policy, cycle: 6, now: Instant(seconds: 6), updatedAt: "t6")
    }
    func chain(_ name: String) throws -> VMDecisionChain {
      try JSONDecoder().decode(VMDecisionChain.self, from: Data(agent.controlAnswer("vm \(name)")))
    }
    let busy = try chain("busy")
    #expect(busy.className == "standard" && busy.rateSource == "tap-busy" && busy.placement == "virtio")
    #expect(busy.intervalBytesPerSecond == 3_000_000)
    let above = try #require(busy.promote?.heldSeconds)
    #expect(above >= 5 && above <= 6 && busy.promote?.sustainSeconds == 10, "held \(above) s of 10")
    #expect(busy.demote?.heldSeconds == nil)
    #expect(busy.rank == 1 && busy.contenders == 3, "the busiest ranks first")
    let held = try chain("held")
    #expect(held.onVF && held.placement == "vf:default")
    #expect(held.dwellLeftSeconds == 294, "300 s dwell from t=0, at t=6")
    let quiet = try chain("quiet")
    #expect(quiet.rank == 3 || quiet.rank == 2)
    #expect(String(decoding: agent.controlAnswer("vm nobody"), as: UTF8.self).contains("no VM 'nobody' in the last cycle"))
    #expect(String(decoding: agent.controlAnswer("bogus"), as: UTF8.self).contains("unknown request 'bogus'"))
    // What the plan said of a VM is its decision and rule.
    if let action = plan.actions.first {
      let c = try chain(action.vm.name)
      #expect(c.decision == action.verb.rawValue && c.rule == action.reason.rule)
    }
    if let hold = plan.holds.first {
      let c = try chain(hold.vm.name)
      #expect(c.decision.hasPrefix("hold") && c.rule == hold.reason.rule)
    }
  }
}
