// The one file of VFShiftHost that touches C: file descriptors, `read`,
// netlink sockets, `setns`, directory listing and raw byte views. Every other
// file works with the typed values defined here (`SystemCallError`,
// `ByteView`, `NetlinkSocket`), in the manner of swift-system's Syscalls.swift.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import VFShiftCore

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
  public let call: String
  public let subject: String
  public let errno: Int32

  public init(call: String, subject: String, errno: Int32) {
    self.call = call; self.subject = subject; self.errno = errno
  }

  /// ENOBUFS on a netlink socket: the kernel dropped messages for it.
  public var isReceiveOverrun: Bool { errno == ENOBUFS }

  public var errnoName: String {
    switch errno {
    case ENOENT: "ENOENT"
    case EACCES: "EACCES"
    case EPERM: "EPERM"
    case EISDIR: "EISDIR"
    case ENOTDIR: "ENOTDIR"
    case ENODEV: "ENODEV"
    case EINVAL: "EINVAL"
    case ENOBUFS: "ENOBUFS"
    case EIO: "EIO"
    case EAGAIN: "EAGAIN"
    case EOPNOTSUPP: "EOPNOTSUPP"
    case EPROTONOSUPPORT: "EPROTONOSUPPORT"
    case EEXIST: "EEXIST"
    default: "errno \(errno)"
    }
  }

  public var description: String {
    let reason = strerror(errno).map { String(cString: $0) } ?? "unknown error"
    return "\(call)(\(subject)) failed: \(errnoName): \(reason)"
  }
}

/// The errnos the kernel's traffic-control answers are told apart by
/// (DHCPRedirect.swift), without Glibc outside this file.
enum KernelErrno {
  static let exists = EEXIST
  static let invalid = EINVAL
  static let notFound = ENOENT
}

/// Runs `body` until it stops failing with EINTR; -1 becomes a typed error.
@inline(__always)
private func retryingEINTR<T: BinaryInteger>(_ call: String, _ subject: @autoclosure () -> String,
                                             _ body: () -> T) throws(SystemCallError) -> T {
  while true {
    let rc = body()
    if rc >= 0 { return rc }
    let e = Glibc.errno
    if e == EINTR { continue }
    throw SystemCallError(call: call, subject: subject(), errno: e)
  }
}

// MARK: - Bytes

/// A bounds-checked, read-only view of bytes in host byte order (netlink's
/// order). Parsers see only this; the pointer never leaves this file.
struct ByteView {
  private let base: UnsafeRawBufferPointer

  fileprivate init(_ base: UnsafeRawBufferPointer) { self.base = base }

  var count: Int { base.count }

  @inline(__always) subscript(i: Int) -> UInt8 {
    precondition(i >= 0 && i < base.count, "ByteView: index \(i) outside 0..<\(base.count)")
    return base[i]
  }

  @inline(__always) func u16(_ offset: Int) -> UInt16 {
    precondition(offset >= 0 && offset + 2 <= base.count, "ByteView: u16 at \(offset) outside \(base.count)")
    return base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
  }

  @inline(__always) func u32(_ offset: Int) -> UInt32 {
    precondition(offset >= 0 && offset + 4 <= base.count, "ByteView: u32 at \(offset) outside \(base.count)")
    return base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
  }

  @inline(__always) func u64(_ offset: Int) -> UInt64 {
    precondition(offset >= 0 && offset + 8 <= base.count, "ByteView: u64 at \(offset) outside \(base.count)")
    return base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
  }

  /// Checks `offset..<offset+length` once for the `u64(inChecked:)` loads
  /// that follow (a link's counters: 4,000 links a cycle, bench-agent).
  @inline(__always) func check(_ offset: Int, length: Int) {
    precondition(offset >= 0 && length >= 0 && offset + length <= base.count, "ByteView: \(length) bytes at \(offset) outside \(base.count)")
  }

  /// A u64 inside a range `check` passed.
  @inline(__always) func u64(inChecked offset: Int) -> UInt64 {
    base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
  }

  /// Bytes `offset..<offset+length` as UTF-8, stopping at the first NUL.
  func string(_ offset: Int, length: Int) -> String {
    precondition(offset >= 0 && length >= 0 && offset + length <= base.count)
    var end = offset
    while end < offset + length && base[end] != 0 { end += 1 }
    return String(decoding: UnsafeRawBufferPointer(rebasing: base[offset..<end]), as: UTF8.self)
  }

  /// Packs up to 16 bytes into two words, so a name can be compared with last
  /// cycle's in two integer compares instead of building a String.
  @inline(__always) func nameKey(_ offset: Int, length: Int) -> NameKey {
    precondition(offset >= 0 && length >= 0 && length <= 16 && offset + length <= base.count)
    var lo: UInt64 = 0, hi: UInt64 = 0
    var i = 0
    while i < length {
      let b = UInt64(base[offset + i])
      if i < 8 { lo |= b << (8 * UInt64(i)) } else { hi |= b << (8 * UInt64(i - 8)) }
      i += 1
    }
    return NameKey(lo: lo, hi: hi)
  }
}

struct NameKey: Equatable, Hashable {
  var lo: UInt64
  var hi: UInt64
}

/// Lends `bytes[0..<count]` to `body` as a `ByteView`.
@inline(__always)
func withByteView<R, E: Error>(_ bytes: [UInt8], count: Int? = nil,
                               _ body: (ByteView) throws(E) -> R) throws(E) -> R {
  let n = min(count ?? bytes.count, bytes.count)
  let result: Result<R, E> = bytes.withUnsafeBytes { raw in
    do throws(E) { return .success(try body(ByteView(UnsafeRawBufferPointer(rebasing: raw[0..<n])))) }
    catch { return .failure(error) }
  }
  return try result.get()
}

/// Appends `value` in host byte order (netlink's wire order).
@inline(__always)
func appendHostOrder<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
  withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
}

// MARK: - Files

/// Reads the whole file at `path` into `buffer` (grown, never shrunk) with
/// open + read until EOF + close. Returns the number of bytes read. Seq files
/// such as /proc/net/dev hand out at most one page batch per `read`, so the
/// loop is the minimum; with a buffer larger than the file the last `read`
/// only confirms EOF.
func readWholeFile(_ path: String, into buffer: inout [UInt8]) throws(SystemCallError) -> Int {
  let fd = try retryingEINTR("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
  defer { _ = close(fd) }
  if buffer.count < 4096 { buffer = [UInt8](repeating: 0, count: 4096) }
  var filled = 0
  while true {
    if filled == buffer.count {
      buffer.append(contentsOf: repeatElement(0, count: buffer.count))
    }
    let n = try retryingEINTR("read", path) {
      buffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress! + filled, raw.count - filled) }
    }
    if n == 0 { return filled }
    filled += n
  }
}

/// The target of the symbolic link at `path`, as stored in the link.
func readSymbolicLink(_ path: String) throws(SystemCallError) -> String {
  var buffer = [CChar](repeating: 0, count: 4096)
  let n = try retryingEINTR("readlink", path) { readlink(path, &buffer, buffer.count - 1) }
  return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

enum FileKind: Equatable { case missing, directory, symbolicLink, regular, other }

/// What is at `path` without following a final symbolic link.
func fileKind(_ path: String) throws(SystemCallError) -> FileKind {
  var st = stat()
  if lstat(path, &st) != 0 {
    let e = Glibc.errno
    if e == ENOENT || e == ENOTDIR { return .missing }
    throw SystemCallError(call: "lstat", subject: path, errno: e)
  }
  switch st.st_mode & S_IFMT {
  case S_IFDIR: return .directory
  case S_IFLNK: return .symbolicLink
  case S_IFREG: return .regular
  default: return .other
  }
}

/// True when `path` resolves (following links) to something that exists.
func resolves(_ path: String) -> Bool {
  var st = stat()
  return stat(path, &st) == 0
}

/// The entry names of a directory, without "." and "..".
func directoryEntries(_ path: String) throws(SystemCallError) -> [String] {
  guard let dir = opendir(path) else {
    throw SystemCallError(call: "opendir", subject: path, errno: Glibc.errno)
  }
  defer { closedir(dir) }
  var names: [String] = []
  while let entry = readdir(dir) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    if name != "." && name != ".." { names.append(name) }
  }
  return names
}

// MARK: - Network namespaces

/// Glibc's module map leaves out setns (it is behind _GNU_SOURCE), so it is
/// looked up once in the C library already loaded.
private let setnsFunction: (@convention(c) (CInt, CInt) -> CInt)? = {
  guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "setns") else { return nil }
  return unsafeBitCast(symbol, to: (@convention(c) (CInt, CInt) -> CInt).self)
}()

/// CLONE_NEWNET from linux/sched.h (also behind _GNU_SOURCE).
private let CLONE_NEWNET_FLAG: CInt = 0x4000_0000

/// Moves the calling thread into the network namespace at `path`
/// (/run/netns/NAME as `ip netns add` makes it). setns(2) with CLONE_NEWNET.
func enterNetworkNamespace(_ path: String) throws(SystemCallError) {
  let fd = try retryingEINTR("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
  defer { _ = close(fd) }
  guard let setns = setnsFunction else {
    throw SystemCallError(call: "dlsym", subject: "setns", errno: ENOSYS)
  }
  _ = try retryingEINTR("setns", path) { setns(fd, CLONE_NEWNET_FLAG) }
}

// MARK: - Netlink

// linux/netlink.h is not part of Glibc's module map: the few names needed are
// declared here with the header's values and layout.
private let NETLINK_ROUTE: CInt = 0
private let SOL_NETLINK_LEVEL: CInt = 270
private let NETLINK_EXT_ACK: CInt = 11

/// struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; }
private struct sockaddr_nl {
  var nl_family: sa_family_t = 0
  var nl_pad: UInt16 = 0
  var nl_pid: UInt32 = 0
  var nl_groups: UInt32 = 0
}

/// A NETLINK_ROUTE socket, owned: closed in deinit. The socket belongs to the
/// network namespace of the thread that created it, whatever thread uses it.
package final class NetlinkSocket {
  private let fd: CInt
  let portID: UInt32

  /// - groups: multicast group bits to join (RTMGRP_*), 0 for request/reply.
  /// - nonBlocking: for the notification socket drained once per cycle.
  /// - receiveBufferBytes: SO_RCVBUF(FORCE); a dump of 4,000 links must not
  ///   overrun it while the reader decodes.
  package init(groups: UInt32 = 0, nonBlocking: Bool = false, receiveBufferBytes: Int32 = 4 << 20) throws(SystemCallError) {
    let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
    let fd = try retryingEINTR("socket", "AF_NETLINK, NETLINK_ROUTE") { socket(AF_NETLINK, type, NETLINK_ROUTE) }
    do {
      var size = receiveBufferBytes
      let sizeLen = socklen_t(MemoryLayout<Int32>.size)
      // SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it the capped SO_RCVBUF still works.
      if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeLen) != 0 {
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeLen)
      }
      var one: Int32 = 1
      // Extended ACKs make the kernel say which attribute it rejected; optional.
      _ = setsockopt(fd, SOL_NETLINK_LEVEL, NETLINK_EXT_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
      var address = sockaddr_nl()
      address.nl_family = sa_family_t(AF_NETLINK)
      address.nl_groups = groups
      _ = try retryingEINTR("bind", "AF_NETLINK groups=\(groups)") {
        withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
          }
        }
      }
      var bound = sockaddr_nl()
      var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
      _ = try retryingEINTR("getsockname", "AF_NETLINK") {
        withUnsafeMutablePointer(to: &bound) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
      }
      self.fd = fd
      self.portID = bound.nl_pid
    } catch {
      _ = close(fd)
      throw error
    }
  }

  deinit { _ = close(fd) }

  /// Sends one request to the kernel (port 0).
  package func send(_ request: [UInt8]) throws(SystemCallError) {
    var kernel = sockaddr_nl()
    kernel.nl_family = sa_family_t(AF_NETLINK)
    let sent = try retryingEINTR("sendto", "netlink request of \(request.count) bytes") {
      request.withUnsafeBytes { raw in
        withUnsafePointer(to: &kernel) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
          }
        }
      }
    }
    if sent != request.count {
      throw SystemCallError(call: "sendto", subject: "netlink request sent \(sent) of \(request.count) bytes", errno: EIO)
    }
  }

  package enum Received: Equatable {
    case bytes(Int)
    /// The datagram was longer than the buffer (MSG_TRUNC): `needed` bytes.
    case truncated(needed: Int)
    /// Non-blocking socket with nothing queued.
    case nothing
  }

  /// Receives one datagram (which holds one or more netlink messages).
  package func receive(into buffer: inout [UInt8]) throws(SystemCallError) -> Received {
    let capacity = buffer.count
    let n: Int
    do {
      n = try retryingEINTR("recv", "netlink") {
        buffer.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress, raw.count, Int32(MSG_TRUNC)) }
      }
    } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
      return .nothing
    }
    return n > capacity ? .truncated(needed: n) : .bytes(n)
  }
}

/// A receive buffer of `count` bytes that only the kernel writes into, left
/// uninitialised: its pages become resident only as far as datagrams reach
/// (~32 KB for a dump's, of the 1 MiB kept for a rare larger one), where a
/// zero-filled one was resident whole (bench-agent: RSS). Nothing reads past
/// the bytes `recv` reports.
package func receiveBuffer(count: Int) -> [UInt8] {
  [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
}

// MARK: - Interface flags

/// Brings a network device's link up (`ip link set DEV up`): libvirt leaves a
/// pool member DOWN when it takes it back from a guest.
public func setLinkUp(_ device: String) throws(SystemCallError) {
  let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
  guard fd >= 0 else { throw SystemCallError(call: "socket", subject: device, errno: errno) }
  defer { close(fd) }
  var request = ifreq()
  let name = Array(device.utf8.prefix(Int(IFNAMSIZ) - 1))
  withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
    for (i, b) in name.enumerated() { raw[i] = b }
  }
  guard ioctl(fd, UInt(SIOCGIFFLAGS), &request) == 0 else { throw SystemCallError(call: "ioctl(SIOCGIFFLAGS)", subject: device, errno: errno) }
  request.ifr_ifru.ifru_flags |= Int16(IFF_UP)
  guard ioctl(fd, UInt(SIOCSIFFLAGS), &request) == 0 else { throw SystemCallError(call: "ioctl(SIOCSIFFLAGS)", subject: device, errno: errno) }
}
