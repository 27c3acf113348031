import Foundation

/// HTTP/1.1 as a Prometheus exporter speaks it (RFC 9110/9112): GET and HEAD
/// of `/metrics` and `/`, everything else answered with the status that says
/// why. Pure: bytes in, bytes out; the poll loop (`PollServer`) does the I/O.
enum MetricsHTTP {
  static let limits = ListenerLimits(maxRequestBytes: 8192, requestDeadline: 5, idleTimeout: 60, maxConnections: 128)
  static let index = Array("""
    <!doctype html><html><head><title>vfshift</title></head><body><h1>vfshift</h1>\
    <p><a href="/metrics">Metrics</a></p></body></html>\n
    """.utf8)

  static func header(_ status: String, _ type: String, length: Int, keepAlive: Bool, extra: String = "") -> [UInt8] {
    Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(length)\r\n\(extra)Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n".utf8)
  }
  static func response(_ status: String, _ type: String, _ body: [UInt8], keepAlive: Bool, head: Bool = false,
                       extra: String = "") -> [UInt8] {
    header(status, type, length: body.count, keepAlive: keepAlive, extra: extra) + (head ? [] : body)
  }
  static func error(_ status: String, _ text: String, extra: String = "") -> [UInt8] {
    response(status, "text/plain; charset=utf-8", Array("\(text)\n".utf8), keepAlive: false, extra: extra)
  }
  static let tooLarge = error("431 Request Header Fields Too Large", "request header over \(limits.maxRequestBytes) bytes")
  static let timedOut = error("408 Request Timeout", "request not complete within \(Int(limits.requestDeadline)) s")

  /// The answer to the request at the start of `input`, if it is all there.
  static func parse(_ input: [UInt8], exposition: () -> [UInt8]) -> Parsed {
    guard let end = headerEnd(input) else { return .incomplete }
    let head = String(decoding: input[..<end], as: UTF8.self)
    // "\r\n" is one Character in Swift: split on either line end.
    var lines = head.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\r\n" || $0 == "\n" })
    while lines.last?.isEmpty == true { lines.removeLast() }
    let bad: Parsed = .answer(consumed: input.count, response: error("400 Bad Request", "malformed request"), close: true)
    guard let requestLine = lines.first else { return bad }
    let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0", !parts[0].isEmpty, parts[1].first == "/" || parts[1] == "*" else {
      return bad
    }
    var connection = "", host = false, body = false
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: ":"), colon != line.startIndex, !line.first!.isWhitespace else { return bad }
      let name = line[..<colon].lowercased()
      let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
      switch name {
      case "connection": connection += "," + value
      case "host": host = true
      case "content-length": body = body || value != "0"
      case "transfer-encoding": body = true
      default: break
      }
    }
    // RFC 9112 §3.2: a 1.1 request without Host is a 400.
    if parts[2] == "HTTP/1.1" && !host { return bad }
    let tokens = connection.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    // A body is not read: the connection closes after the answer rather
    // than reading the body as the next request.
    let keepAlive = !body && (parts[2] == "HTTP/1.1" ? !tokens.contains("close") : tokens.contains("keep-alive"))
    let method = parts[0]
    let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
    let consumed = end
    guard method == "GET" || method == "HEAD" else {
      return .answer(consumed: consumed, response: response("405 Method Not Allowed", "text/plain; charset=utf-8",
                                                            Array("only GET and HEAD\n".utf8), keepAlive: keepAlive,
                                                            extra: "Allow: GET, HEAD\r\n"), close: !keepAlive)
    }
    let isHead = method == "HEAD"
    if path == "/metrics" {
      let body = exposition()
      return .answer(consumed: consumed, response: header("200 OK", "text/plain; version=0.0.4; charset=utf-8", length: body.count,
                                                         keepAlive: keepAlive),
                     body: isHead ? [] : body, close: !keepAlive)
    }
    let answer: [UInt8] = switch path {
    case "/": response("200 OK", "text/html; charset=utf-8", index, keepAlive: keepAlive, head: isHead)
    default: response("404 Not Found", "text/plain; charset=utf-8", Array("vfshift serves /metrics\n".utf8), keepAlive: keepAlive, head: isHead)
    }
    return .answer(consumed: consumed, response: answer, close: !keepAlive)
  }

  /// Index just past the blank line ending the header (CRLF CRLF, or bare LF LF).
  static func headerEnd(_ b: [UInt8]) -> Int? {
    var i = 0
    while i < b.count {
      if b[i] == 10 {
        if i + 1 < b.count && b[i + 1] == 10 { return i + 2 }
        if i + 2 < b.count && b[i + 1] == 13 && b[i + 2] == 10 { return i + 3 }
      }
      i += 1
    }
    return nil
  }
}

/// `/metrics` over HTTP, from `Metrics.exposition()` (a snapshot: it never
/// waits for the agent's cycle).
final class MetricsListener: Sendable {
  let server: PollServer
  let boundAddress: String

  init(address: String, limits: ListenerLimits = MetricsHTTP.limits, exposition: @escaping @Sendable () -> [UInt8]) throws {
    let (fd, bound) = try listenTCP(address)
    boundAddress = bound
    server = try PollServer(listening: fd, name: "vfshift-metrics", limits: limits, tooLarge: MetricsHTTP.tooLarge,
                            timedOut: MetricsHTTP.timedOut) { MetricsHTTP.parse($0, exposition: exposition) }
  }

  func stop() { server.stop() }
}

/// The control socket `vfshift status` asks: one line in ("status", or
/// "vm NAME"), one JSON document out, then the agent closes. Root only: the
/// socket is 0600, and a peer whose SO_PEERCRED is neither root nor the
/// agent's own user is refused.
final class ControlListener: Sendable {
  static let limits = ListenerLimits(maxRequestBytes: 1024, requestDeadline: 2, idleTimeout: 5, maxConnections: 32)
  let server: PollServer
  let path: String

  init(path: String, limits: ListenerLimits = ControlListener.limits, answer: @escaping @Sendable (String) -> [UInt8]) throws {
    let fd = try listenUnix(path)
    self.path = path
    let me = effectiveUserID
    server = try PollServer(
      listening: fd, name: "vfshift-control", limits: limits,
      tooLarge: Array("{\"error\":\"request over \(limits.maxRequestBytes) bytes\"}\n".utf8),
      timedOut: Array("{\"error\":\"request not complete within \(Int(limits.requestDeadline)) s\"}\n".utf8),
      admit: { fd in
        let uid = peerUID(fd)
        if uid == 0 || uid == me { return nil }
        return Array("{\"error\":\"refused: peer uid \(uid.map(String.init) ?? "unknown") is not root\"}\n".utf8)
      },
      parse: { input in
        guard let nl = input.firstIndex(of: 10) else { return .incomplete }
        let line = String(decoding: input[..<nl], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return .answer(consumed: input.count, response: answer(line), close: true)
      })
  }

  func stop() {
    server.stop()
    removeFile(path)
  }
}
