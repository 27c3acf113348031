// The only file of VFShiftAgent that touches sockets, file locks and raw
// pointers: the metrics listener, systemd's notify socket, the
// one-agent-per-host lock and whole-buffer writes to a descriptor.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct SystemCallError: Error, CustomStringConvertible {
  var call: String
  var detail: String
  var errno: Int32
  var description: String { "\(call)(\(detail)): \(String(cString: strerror(errno)))" }
}

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
    guard fd >= 0 else { throw SystemCallError(call: "open", detail: path, errno: errno) }
    if flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let e = errno
      var buffer = [UInt8](repeating: 0, count: 64)
      let n = pread(fd, &buffer, buffer.count, 0)
      close(fd)
      let holder = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
      if e == EWOULDBLOCK {
        throw AgentLockHeld(path: path, holderPID: holder)
      }
      throw SystemCallError(call: "flock", detail: path, errno: e)
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

/// A minimal HTTP/1.1 listener that answers `GET /metrics` and nothing else,
/// one short-lived connection at a time on its own thread.
final class MetricsListener: @unchecked Sendable {
  let fd: Int32
  let render: @Sendable () -> String
  public let boundAddress: String

  /// `address` is "HOST:PORT"; an IPv4 host (default 127.0.0.1, so nothing
  /// leaves the machine unless the operator says so).
  init(address: String, render: @escaping @Sendable () -> String) throws {
    let parts = address.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let port = UInt16(parts[1]) else {
      throw SystemCallError(call: "parse", detail: "listen address '\(address)' is not HOST:PORT", errno: EINVAL)
    }
    let host = parts[0].isEmpty ? "127.0.0.1" : String(parts[0])
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
      throw SystemCallError(call: "inet_pton", detail: host, errno: EINVAL)
    }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemCallError(call: "socket", detail: address, errno: errno) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    let rc = withUnsafePointer(to: &addr) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0, listen(fd, 16) == 0 else {
      let e = errno
      close(fd)
      throw SystemCallError(call: "bind", detail: address, errno: e)
    }
    var bound = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &bound) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    self.fd = fd
    self.render = render
    self.boundAddress = "\(host):\(UInt16(bigEndian: bound.sin_port))"
    let thread = Thread { [self] in serve() }
    thread.name = "vfshift-metrics"
    thread.start()
  }

  private func serve() {
    while true {
      let client = accept(fd, nil, nil)
      if client < 0 { if errno == EINTR { continue }; return }
      var timeout = timeval(tv_sec: 2, tv_usec: 0)
      setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      var buffer = [UInt8](repeating: 0, count: 4096)
      let n = recv(client, &buffer, buffer.count, 0)
      let request = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
      let line = request.prefix { $0 != "\r" && $0 != "\n" }
      let response: String
      if line.hasPrefix("GET /metrics ") || line == "GET /metrics" {
        let body = render()
        response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
      } else {
        let body = "vfshift serves only /metrics\n"
        response = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
      }
      let bytes = Array(response.utf8)
      var sent = 0
      while sent < bytes.count {
        let k = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if k <= 0 { break }
        sent += k
      }
      close(client)
    }
  }
}

/// Brings a network device's link up (`ip link set DEV up`): libvirt leaves a
/// pool member DOWN when it takes it back from a guest.
func setLinkUp(_ device: String) throws {
  let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { throw SystemCallError(call: "socket", detail: device, errno: errno) }
  defer { close(fd) }
  var request = ifreq()
  let name = Array(device.utf8.prefix(Int(IFNAMSIZ) - 1))
  withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
    for (i, b) in name.enumerated() { raw[i] = b }
  }
  guard ioctl(fd, UInt(SIOCGIFFLAGS), &request) == 0 else { throw SystemCallError(call: "ioctl(SIOCGIFFLAGS)", detail: device, errno: errno) }
  request.ifr_ifru.ifru_flags |= Int16(IFF_UP)
  guard ioctl(fd, UInt(SIOCSIFFLAGS), &request) == 0 else { throw SystemCallError(call: "ioctl(SIOCSIFFLAGS)", detail: device, errno: errno) }
}
