import Synchronization
import VFShiftCore

/// The engine state, owned by the agent's loop, which decides on it in
/// place; the metrics, status rows and the control socket read it under the
/// same lock. Not a copy handed over each cycle: that made the next `decide`
/// copy all 1,000 tracks (copy-on-write) and free the old ones, a third of
/// the cycle's instructions (bench-agent under callgrind).
public final class EngineCell: Sendable {
  let state = Mutex(EngineState())
  /// Counts the loop's changes: what a rendered exposition is current for.
  let changes = Atomic<UInt64>(0)

  public init() {}

  /// The loop's access: `body` changes the state in place.
  func update<R: Sendable>(_ body: (inout EngineState) -> R) -> R {
    state.withLock { e in
      defer { changes.add(1, ordering: .releasing) }
      return body(&e)
    }
  }

  /// A reader's access; it waits for a cycle holding the state.
  func read<R: Sendable>(_ body: (EngineState) -> R) -> R {
    state.withLock { body($0) }
  }

  /// A reader that never waits: nil while the cycle holds the state.
  func readIfAvailable<R: Sendable>(_ body: (EngineState) -> R) -> R? {
    state.withLockIfAvailable { body($0) }
  }
}
