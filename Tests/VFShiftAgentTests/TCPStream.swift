import Foundation
import VFShiftTestSupport

/// One long-lived TCP connection from the namespace to a guest's source port
/// (5002, which sends zeros), read at a paced ~100 KB/s through a small
/// receive buffer, so a stall in the path shows as a gap between reads within
/// ~50 ms. It never reconnects: an EOF or a reset ends it and is logged.
final class TCPStream {
  let process = Process()
  let path: String
  let guest: String
  static let script = """
    import socket, sys, time
    ip, port, out = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], 'w', buffering=1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((ip, port))
    out.write('C %.4f\\n' % time.time())
    total, last, tick = 0, time.time(), time.time()
    while True:
        try:
            d = s.recv(1024)
        except socket.timeout:
            continue
        except Exception as e:
            out.write('E %.4f %s\\n' % (time.time(), e)); break
        now = time.time()
        if not d:
            out.write('E %.4f EOF\\n' % now); break
        total += len(d)
        if now - last > 0.03:
            out.write('G %.4f %.4f\\n' % (last, now))
        last = now
        if now - tick >= 0.5:
            out.write('B %.4f %d\\n' % (now, total)); tick = now
        time.sleep(0.01)
    """

  init(guest: String, ip: String, port: Int, scratch: Scratch, namespace: String = "vfs-src") throws {
    self.guest = guest
    path = scratch.file("tcp-\(guest).log")
    FileManager.default.createFile(atPath: path, contents: nil)
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["ip", "netns", "exec", namespace, "python3", "-c", TCPStream.script, ip, String(port), path]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
  }

  private var lines: [[Substring]] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ") }
  }
  var connected: Bool { lines.contains { $0.first == "C" } }
  /// The EOF or error that ended the connection, nil while it lives.
  var ended: String? { lines.first { $0.first == "E" }.map { $0.dropFirst(2).joined(separator: " ") } }
  /// Bytes received by the last progress line at or before `t`.
  func bytes(at t: Double) -> Int {
    lines.filter { $0.first == "B" && (Double($0[1]) ?? .infinity) <= t }.last.flatMap { Int($0[2]) } ?? 0
  }
  /// The gaps between reads (over 30 ms) that overlap `from...to`, as (start, end) Unix times.
  func gaps(from: Double, to: Double) -> [(start: Double, end: Double)] {
    lines.compactMap { l -> (Double, Double)? in
      guard l.first == "G", l.count == 3, let a = Double(l[1]), let b = Double(l[2]), b >= from, a <= to else { return nil }
      return (a, b)
    }
  }
  /// The longest gap between reads that overlaps `from...to`, in seconds.
  func longestGap(from: Double, to: Double) -> Double { gaps(from: from, to: to).map { $0.end - $0.start }.max() ?? 0 }

  func stop() { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
  deinit { stop() }
}
