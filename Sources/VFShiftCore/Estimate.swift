// Estimate: counter readings into rates over the last interval and smoothed
// rates, the first room of a cycle (Engine.swift runs the three in turn).
import Foundation

/// Counter deltas over real elapsed time. A counter that goes backwards, a
/// device that changed, or no reading at all is a gap: the previous rates
/// stand and nothing new is learnt — never a negative or a zero rate.
@inline(__always)
func estimate(_ track: inout VMTrack, _ reading: CounterReading, halfLife: Double) {
  // Only the counters come out of the reading; the source name is compared
  // where it lies and copied only when it changed, so a steady cycle neither
  // retains nor releases it.
  guard let (counters, at) = reading.counters else {
    // No evidence this cycle, and a gap: the next reading starts a fresh
    // baseline, so a rate never spans the gap and no sustain clock runs over it.
    track.intervalBytes = nil; track.intervalPackets = nil
    track.lastCounters = nil; track.lastAt = nil
    // Unknown is not "as before": a rate from another NIC (before the
    // promotion) would rank the VM on traffic nobody measured.
    if reading.isUnknown { track.smoothedBytes = nil; track.smoothedPackets = nil }
    return
  }
  let continuing = track.lastCounters != nil && reading.isFrom(track.lastSource)
  if !continuing { reading.copySource(to: &track.lastSource) }
  estimate(&track, counters, at: at, continuing: continuing, halfLife: halfLife)
}

private func estimate(_ track: inout VMTrack, _ counters: VMCounters, at: Instant, continuing: Bool, halfLife: Double) {
  let last = track.lastCounters, lastAt = track.lastAt
  track.lastCounters = counters; track.lastAt = at
  track.intervalBytes = nil; track.intervalPackets = nil
  guard continuing, let last, let lastAt else { return }
  let dt = at - lastAt
  guard dt > 0, let moved = counters.moved(since: last) else { return }
  let bytes = Double(moved.bytes) / dt
  let packets = moved.packets.map { Double($0) / dt }
  track.intervalBytes = bytes
  track.intervalPackets = packets
  track.intervalStart = lastAt
  // Weight by elapsed time, so an irregular interval does not skew the mean.
  // Intervals repeat: the last one's weight is kept rather than recomputed
  // (exp2 was a tenth of a small cycle's arithmetic).
  let alpha: Double
  if let w = track.smoothing, w.dt == dt, w.halfLife == halfLife {
    alpha = w.alpha
  } else {
    alpha = halfLife <= 0 ? 1 : 1 - exp2(-dt / halfLife)
    track.smoothing = SmoothingWeight(dt: dt, halfLife: halfLife, alpha: alpha)
  }
  track.smoothedBytes = track.smoothedBytes.map { $0 + alpha * (bytes - $0) } ?? bytes
  if let p = packets { track.smoothedPackets = track.smoothedPackets.map { $0 + alpha * (p - $0) } ?? p }
}
