// The only file of VFShiftAgent that touches sockets, file locks and raw
// pointers: the listeners (metrics over HTTP, the control socket), systemd's
// notify socket, the one-agent-per-host lock and whole-buffer writes to a
// descriptor.
import Foundation
import VFShiftHost
#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to `fd`, through short writes and EINTR; false on
/// any other error.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
  bytes.withUnsafeBytes { raw -> Bool in
    var done = 0
    while done < raw.count {
      let n = write(fd, raw.baseAddress! + done, raw.count - done)
      if n < 0 { if errno == EINTR { continue }; return false }
      done += n
    }
    return true
  }
}

/// Sends `state` (e.g. "READY=1", "WATCHDOG=1") to systemd's notify socket,
/// if the service manager gave one. Done by hand: no libsystemd needed.
func notifySystemd(_ state: String) {
  // getenv, not ProcessInfo's environment: that copies every variable into a
  // dictionary, and this runs each cycle for the watchdog.
  guard let value = getenv("NOTIFY_SOCKET") else { return }
  let path = String(cString: value)
  guard !path.isEmpty else { return }
  let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { return }
  defer { close(fd) }
  var addr = sockaddr_un()
  addr.sun_family = sa_family_t(AF_UNIX)
  var bytes = Array(path.utf8)
  // An abstract socket is written "@name" and addressed with a leading NUL.
  if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
  let capacity = MemoryLayout.size(ofValue: addr.sun_path)
  guard bytes.count < capacity else { return }
  withUnsafeMutableBytes(of: &addr.sun_path) { raw in
    for (i, b) in bytes.enumerated() { raw[i] = b }
  }
  let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
  let message = Array(state.utf8)
  _ = withUnsafePointer(to: &addr) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
      sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), sa, length)
    }
  }
}

/// An exclusive lock on a file that names its holder: a second agent on the
/// host learns which process holds it and refuses to start.
final class AgentLock: Sendable {
  let fd: Int32
  let path: String

  init(path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SystemCallError(call: "open", subject: path, errno: errno) }
    if flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let e = errno
      var buffer = [UInt8](repeating: 0, count: 64)
      let n = pread(fd, &buffer, buffer.count, 0)
      close(fd)
      let holder = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
      if e == EWOULDBLOCK {
        throw AgentLockHeld(path: path, holderPID: holder)
      }
      throw SystemCallError(call: "flock", subject: path, errno: e)
    }
    let pid = Array("\(getpid())\n".utf8)
    _ = ftruncate(fd, 0)
    _ = pwrite(fd, pid, pid.count, 0)
    self.fd = fd
    self.path = path
  }

  deinit { close(fd) }
}

public struct AgentLockHeld: Error, CustomStringConvertible {
  public var path: String
  public var holderPID: String
  public var description: String {
    "another vfshift agent already runs on this host (process \(holderPID) holds \(path)); stop it first"
  }
}

/// Limits a listener holds every connection to, whatever the client does.
struct ListenerLimits: Sendable {
  /// The most a request may take before it is refused (and the connection closed).
  var maxRequestBytes = 8192
  /// From a request's first byte to its last; and again for its answer to be read.
  var requestDeadline = 5.0
  /// A connection with no request in progress is closed after this long.
  var idleTimeout = 60.0
  /// Open connections beyond this shed the one idle longest.
  var maxConnections = 128
}

/// What a protocol makes of the bytes a connection has sent so far.
enum Parsed: Sendable {
  case incomplete
  /// The first `consumed` bytes are answered by `response` then `body`
  /// (apart, so a cached body is sent from where it is, not copied per
  /// request); `close` ends the connection once they are sent.
  case answer(consumed: Int, response: [UInt8], body: [UInt8] = [], close: Bool)
}

/// One thread and one poll(2) over the listening socket and all its
/// connections: a client that is slow, idle or hostile costs a slot and a
/// bounded buffer, never another client's turn (issue #16). Answers are
/// computed on this thread, so they must come from a snapshot, not wait on
/// the agent's cycle.
final class PollServer: @unchecked Sendable {
  struct Connection {
    var fd: Int32
    var input: [UInt8] = []
    var output: [UInt8] = []
    var body: [UInt8] = []
    /// Bytes of output, then body, sent so far.
    var sent = 0
    var writing: Bool { sent < output.count + body.count }
    /// When the request now arriving sent its first byte.
    var requestStarted: Double?
    var outputDeadline = 0.0
    var lastActive: Double
    var closeAfterOutput = false
    /// After a refusal: reading and discarding until EOF or this instant, so
    /// the refusal is not lost to a reset from unread bytes.
    var drainUntil: Double?
    var closed = false
  }

  let listenFD: Int32
  let wakeFD: Int32
  let wakeWriteFD: Int32
  let limits: ListenerLimits
  let parse: @Sendable ([UInt8]) -> Parsed
  let tooLarge: [UInt8]
  let timedOut: [UInt8]
  /// Refusal bytes for a peer that may not talk to us (nil admits it).
  let admit: @Sendable (Int32) -> [UInt8]?
  private var connections: [Connection] = []
  private let finished = DispatchSemaphore(value: 0)
  private var scratch = [UInt8](repeating: 0, count: 65536)

  init(listening fd: Int32, name: String, limits: ListenerLimits, tooLarge: [UInt8], timedOut: [UInt8],
       admit: @escaping @Sendable (Int32) -> [UInt8]? = { _ in nil }, parse: @escaping @Sendable ([UInt8]) -> Parsed) throws {
    // A pipe to wake the poll for `stop` (eventfd and accept4 are GNU
    // extensions Swift's Glibc module does not show).
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { throw SystemCallError(call: "pipe", subject: name, errno: errno) }
    for e in ends { _ = fcntl(e, F_SETFD, FD_CLOEXEC) }
    let wake = ends[0]
    wakeWriteFD = ends[1]
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    listenFD = fd; wakeFD = wake; self.limits = limits; self.parse = parse
    self.tooLarge = tooLarge; self.timedOut = timedOut; self.admit = admit
    // Named from inside, through /proc: a new thread inherits its creator's
    // name (a dispatch worker's), Foundation's Thread.name did not always
    // replace it, and per-thread CPU (bench-agent, bench-listen) is read by it.
    let thread = Thread { [self] in
      let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
      if comm >= 0 { _ = writeAll(comm, Array(name.utf8.prefix(15))); close(comm) }
      serve()
      finished.signal()
    }
    thread.start()
  }

  /// Closes the listener and every connection; returns once the thread is done.
  func stop() {
    var one: UInt8 = 1
    _ = write(wakeWriteFD, &one, 1)
    finished.wait()
  }

  private static func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
  }

  private func serve() {
    var fds: [pollfd] = []
    while true {
      fds.removeAll(keepingCapacity: true)
      fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
      fds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
      var next = Double.infinity
      for c in connections {
        let writing = c.writing
        fds.append(pollfd(fd: c.fd, events: Int16(writing ? POLLOUT : POLLIN), revents: 0))
        next = min(next, deadline(of: c))
      }
      let wait = next.isFinite ? Int32(max(0, min(60_000, (next - Self.now()) * 1000 + 1))) : -1
      let n = poll(&fds, nfds_t(fds.count), wait)
      if n < 0 && errno != EINTR { break }
      if fds[0].revents != 0 { break }
      let now = Self.now()
      for i in connections.indices where n > 0 && fds[i + 2].revents != 0 {
        let ev = fds[i + 2].revents
        if ev & Int16(POLLOUT) != 0 { flush(i, now) }
        else if ev & Int16(POLLIN | POLLHUP | POLLERR) != 0 { receive(i, now) }
        if ev & Int16(POLLNVAL) != 0 { connections[i].closed = true }
      }
      for i in connections.indices where !connections[i].closed && deadline(of: connections[i]) <= now { expire(i, now) }
      for c in connections where c.closed { close(c.fd) }
      connections.removeAll { $0.closed }
      if fds[1].revents != 0 { acceptAll(now) }
    }
    for c in connections { close(c.fd) }
    connections.removeAll()
    close(listenFD)
    close(wakeFD)
    close(wakeWriteFD)
  }

  private func deadline(of c: Connection) -> Double {
    if let d = c.drainUntil { return d }
    if c.writing { return c.outputDeadline }
    if let started = c.requestStarted { return started + limits.requestDeadline }
    return c.lastActive + limits.idleTimeout
  }

  private func expire(_ i: Int, _ now: Double) {
    let c = connections[i]
    // A request cut off at its deadline is told so; anything else just closes.
    if c.drainUntil == nil, !c.writing, c.requestStarted != nil {
      refuse(i, timedOut, now)
    } else {
      connections[i].closed = true
    }
  }

  private func refuse(_ i: Int, _ response: [UInt8], _ now: Double) {
    connections[i].input = []
    connections[i].requestStarted = nil
    connections[i].output = response
    connections[i].body = []
    connections[i].sent = 0
    connections[i].outputDeadline = now + limits.requestDeadline
    connections[i].closeAfterOutput = true
    connections[i].drainUntil = nil
    flush(i, now)
  }

  private func acceptAll(_ now: Double) {
    while true {
      let fd = accept(listenFD, nil, nil)
      if fd < 0 { if errno == EINTR { continue }; return }
      _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
      _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
      connections.append(Connection(fd: fd, lastActive: now))
      if let refusal = admit(fd) { refuse(connections.count - 1, refusal, now) }
      if connections.count > limits.maxConnections { shed() }
    }
  }

  /// Over the cap: the connection idle longest goes first; with none idle,
  /// the newest (it has cost nothing yet).
  private func shed() {
    var victim = connections.count - 1
    var oldest = Double.infinity
    for (i, c) in connections.enumerated()
    where !c.closed && c.requestStarted == nil && !c.writing && c.drainUntil == nil && c.lastActive < oldest {
      oldest = c.lastActive
      victim = i
    }
    close(connections[victim].fd)
    connections.remove(at: victim)
  }

  private func receive(_ i: Int, _ now: Double) {
    let fd = connections[i].fd
    let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
    if n < 0 {
      if errno != EAGAIN && errno != EINTR { connections[i].closed = true }
      return
    }
    if connections[i].drainUntil != nil {
      if n == 0 { connections[i].closed = true }
      return
    }
    if n == 0 {
      // The client is done sending: answer what it sent, if it is a request.
      if !connections[i].input.isEmpty, case .answer(_, let response, let body, _) = parse(connections[i].input) {
        connections[i].input = []
        connections[i].output = response
        connections[i].body = body
        connections[i].sent = 0
        connections[i].outputDeadline = now + limits.requestDeadline
        connections[i].closeAfterOutput = true
        flush(i, now)
      } else {
        connections[i].closed = true
      }
      return
    }
    if connections[i].requestStarted == nil { connections[i].requestStarted = now }
    connections[i].input.append(contentsOf: scratch[..<n])
    answer(i, now)
  }

  /// Answers the request at the head of the input, if it is complete.
  private func answer(_ i: Int, _ now: Double) {
    // Only the first maxRequestBytes are looked at: a request that does not
    // end within them is refused, however fast the rest arrived.
    let input = connections[i].input
    switch parse(input.count > limits.maxRequestBytes ? Array(input[..<limits.maxRequestBytes]) : input) {
    case .incomplete:
      if input.count >= limits.maxRequestBytes { refuse(i, tooLarge, now); return }
    case let .answer(consumed, response, body, close):
      connections[i].input.removeFirst(min(consumed, connections[i].input.count))
      connections[i].requestStarted = connections[i].input.isEmpty ? nil : now
      connections[i].output = response
      connections[i].body = body
      connections[i].sent = 0
      connections[i].outputDeadline = now + limits.requestDeadline
      connections[i].closeAfterOutput = close
      connections[i].lastActive = now
      flush(i, now)
    }
  }

  private func flush(_ i: Int, _ now: Double) {
    let fd = connections[i].fd
    while connections[i].writing {
      let start = connections[i].sent, head = connections[i].output.count
      let k = start < head
        ? connections[i].output[start...].withUnsafeBytes {
          // MSG_MORE: the header waits for the body, one segment not two.
          send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT) | (connections[i].body.isEmpty ? 0 : Int32(MSG_MORE)))
        }
        : connections[i].body[(start - head)...].withUnsafeBytes {
          send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        }
      if k < 0 {
        if errno == EINTR { continue }
        if errno != EAGAIN { connections[i].closed = true }
        return
      }
      connections[i].sent += k
    }
    connections[i].output = []
    connections[i].body = []
    connections[i].sent = 0
    connections[i].lastActive = now
    if connections[i].closeAfterOutput {
      // Half-close and read what is still coming, so the client reads the
      // answer rather than a reset.
      shutdown(fd, Int32(SHUT_WR))
      connections[i].drainUntil = now + 1
      connections[i].input = []
      return
    }
    // Pipelined requests behind the one answered.
    if !connections[i].input.isEmpty { answer(i, now) }
  }
}

/// A listening TCP socket on IPv4 "HOST:PORT" (empty host: 127.0.0.1, so
/// nothing leaves the machine unless the operator says so); port 0 picks one.
func listenTCP(_ address: String) throws -> (fd: Int32, bound: String) {
  let parts = address.split(separator: ":", omittingEmptySubsequences: false)
  guard parts.count == 2, let port = UInt16(parts[1]) else {
    throw SystemCallError(call: "parse", subject: "listen address '\(address)' is not HOST:PORT", errno: EINVAL)
  }
  let host = parts[0].isEmpty ? "127.0.0.1" : String(parts[0])
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_port = port.bigEndian
  guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
    throw SystemCallError(call: "inet_pton", subject: host, errno: EINVAL)
  }
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { throw SystemCallError(call: "socket", subject: address, errno: errno) }
  var one: Int32 = 1
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
  let rc = withUnsafePointer(to: &addr) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard rc == 0, listen(fd, 256) == 0 else {
    let e = errno
    close(fd)
    throw SystemCallError(call: "bind", subject: address, errno: e)
  }
  var bound = sockaddr_in()
  var len = socklen_t(MemoryLayout<sockaddr_in>.size)
  _ = withUnsafeMutablePointer(to: &bound) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
  }
  return (fd, "\(host):\(UInt16(bigEndian: bound.sin_port))")
}

private func unixAddress(_ path: String) throws -> sockaddr_un {
  var addr = sockaddr_un()
  addr.sun_family = sa_family_t(AF_UNIX)
  let bytes = Array(path.utf8)
  guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
    throw SystemCallError(call: "bind", subject: "\(path): path too long for a unix socket", errno: ENAMETOOLONG)
  }
  withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
  return addr
}

/// A listening unix socket at `path`, mode 0600, in a directory that only
/// its owner (root, or the agent's own user) can write to: otherwise another
/// user could put their own socket in its place for `vfshift status` to ask.
func listenUnix(_ path: String) throws -> Int32 {
  let dir = (path as NSString).deletingLastPathComponent
  var st = stat()
  guard stat(dir, &st) == 0 else { throw SystemCallError(call: "stat", subject: dir, errno: errno) }
  if st.st_uid != 0 && st.st_uid != geteuid() || st.st_mode & 0o022 != 0 {
    throw SystemCallError(call: "listen", subject: "\(dir): owned by uid \(st.st_uid), mode \(String(st.st_mode & 0o7777, radix: 8)); the control socket's directory must be writable by root only",
                          errno: EPERM)
  }
  // A socket left by an agent that died (the agent lock says none runs now).
  if lstat(path, &st) == 0 {
    guard st.st_mode & S_IFMT == S_IFSOCK else {
      throw SystemCallError(call: "bind", subject: "\(path) exists and is not a socket", errno: EEXIST)
    }
    unlink(path)
  }
  var addr = try unixAddress(path)
  let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { throw SystemCallError(call: "socket", subject: path, errno: errno) }
  // The umask makes the path 0600 as bind creates it: no moment where
  // others may connect (chmod after it only confirms it).
  let old = umask(0o177)
  let rc = withUnsafePointer(to: &addr) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
  }
  umask(old)
  guard rc == 0, chmod(path, 0o600) == 0, listen(fd, 64) == 0 else {
    let e = errno
    close(fd)
    throw SystemCallError(call: "bind", subject: path, errno: e)
  }
  return fd
}

/// The peer's user id (SO_PEERCRED), nil when the kernel cannot say.
func peerUID(_ fd: Int32) -> UInt32? {
  // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (socket(7)); the
  // struct itself is behind _GNU_SOURCE.
  var cred: [UInt32] = [0, 0, 0]
  var len = socklen_t(12)
  guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, len == 12 else { return nil }
  return cred[1]
}

/// Sends `request` to the unix socket at `path` and reads the answer to EOF,
/// within `timeout` seconds in all; nil when no agent answers there.
func askUnix(_ path: String, _ request: [UInt8], timeout: Double, maxBytes: Int = 64 << 20) -> [UInt8]? {
  guard var addr = try? unixAddress(path) else { return nil }
  let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
  let rc = withUnsafePointer(to: &addr) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
  }
  guard rc == 0 else { return nil }
  var sent = 0
  while sent < request.count {
    let k = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if k < 0 { if errno == EINTR { continue }; return nil }
    sent += k
  }
  shutdown(fd, Int32(SHUT_WR))
  var out: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while out.count <= maxBytes {
    let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    if n < 0 { if errno == EINTR { continue }; return nil }
    if n == 0 { return out }
    out.append(contentsOf: chunk[..<n])
  }
  return nil
}
