import Foundation

/// A named network namespace as `ip netns add NAME` makes it (/run/netns/NAME).
///
/// Entering it is per thread (setns(2)), so `run` gives the work its own
/// thread: sockets created there belong to the namespace, and
/// /proc/thread-self/net/dev shows its interfaces (/proc/net/dev follows the
/// process's main thread and would not).
public struct NetworkNamespace: Sendable, Equatable {
  public let path: String

  public init(name: String) { self.path = "/run/netns/\(name)" }
  public init(path: String) { self.path = path }

  /// What a ProcNetDevReader on a thread inside the namespace must open.
  public static let threadProcNetDev = "/proc/thread-self/net/dev"

  /// Moves the calling thread into this namespace for good. For a
  /// single-threaded tool on its main thread (the benchmark): afterwards
  /// /proc/net/dev and every child process see the namespace too.
  public func enterForCurrentThread() throws {
    try enterNetworkNamespace(path)
  }

  /// Runs `body` on a new thread inside this namespace and waits for it.
  public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
    let outcome = Outcome<T>()
    let done = DispatchSemaphore(value: 0)
    let path = self.path
    let thread = Thread {
      do {
        try enterNetworkNamespace(path)
        outcome.result = .success(try body())
      } catch {
        outcome.result = .failure(error)
      }
      done.signal()
    }
    thread.start()
    done.wait()
    return try outcome.result!.get()
  }
}

/// Written once by the namespace thread before it signals, read after the
/// wait: the semaphore orders the two.
private final class Outcome<T>: @unchecked Sendable {
  var result: Result<T, any Error>?
}
