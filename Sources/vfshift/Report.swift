import Foundation
import VFShiftCore

/// Time columns the report draws at most: a month of 5-minute cycles and an
/// hour of seconds draw at the same size.
let reportColumns = 600
/// VMs drawn one row each, busiest first; the rest fold into one row.
let reportTopVMs = 20

/// The what-if report: one self-contained HTML page (inline CSS and SVG, no
/// script, nothing fetched), from the replays' timelines. Pure: results in,
/// page out; `whatif` writes it.
func whatifHTML(trace: Trace, path: String, reports: [ReplayReport]) -> String {
  let span = (trace.cycles.last?.at.seconds ?? 0) - (trace.cycles.first?.at.seconds ?? 0)
  let columns = reports.first?.timeline?.columns ?? TimeColumns(trace: trace, maxColumns: reportColumns)
  var out = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>vfshift what-if: \(xmlEscape(path))</title>
    <style>\(reportCSS)</style></head><body>
    <h1>vfshift what-if</h1>
    <p class="trace">Trace <code>\(xmlEscape(path))</code>: \(trace.vms.count) VMs, \(trace.cycles.count) cycles of \
    \(fmtSeconds(trace.intervalSeconds)), \(fmtSeconds(span)) of traffic, \(trace.samples.count) VM-samples.\
    \(trace.source.isEmpty || trace.source == path ? "" : " Source: \(xmlEscape(trace.source)).")</p>
    <p class="note" id="downsampling">Time is drawn in \(columns.count) columns of \(fmtSeconds(columns.secondsPerColumn)) \
    each (at most \(reportColumns), whatever the trace's length); a column shows who held a VF for most of it. \
    A lane is one of a pool's usable VFs: the replay knows how many VFs are in use, not which one libvirt hands out, \
    so a VM takes the lowest free lane. Traffic is drawn for the \(reportTopVMs) busiest VMs of each policy; the rest \
    are folded into one row. Only managed VMs' traffic is measured.</p>
    <h2>Summary</h2>

    """
  let rows = whatifRows(reports)
  out += "<table id=\"summary\"><thead><tr>" + rows[0].map { "<th>\(xmlEscape($0))</th>" }.joined() + "</tr></thead><tbody>\n"
  for row in rows.dropFirst() {
    let label = row[0]
    let indent = label.hasPrefix(" ") ? " class=\"sub\"" : ""
    out += "<tr><th\(indent)>\(xmlEscape(label.trimmingCharacters(in: .whitespaces)))</th>"
      + row.dropFirst().map { "<td>\(xmlEscape($0))</td>" }.joined() + "</tr>\n"
  }
  out += "</tbody></table>\n<p class=\"note\">\(xmlEscape(oracleNote))</p>\n"
  for report in reports { out += policySection(trace: trace, report: report) }
  out += "</body></html>\n"
  return out
}

private let reportCSS = """
  body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
  h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
  h3{font-size:15px;margin:16px 0 4px}.note,.trace{color:#555;max-width:1100px}
  table{border-collapse:collapse;font-variant-numeric:tabular-nums}
  th,td{padding:2px 10px;border-bottom:1px solid #eee}td{text-align:right}th{text-align:left;font-weight:normal}
  thead th{font-weight:bold;text-align:right}th.sub{padding-left:26px;color:#555}
  svg text{font:11px system-ui,sans-serif;fill:#333}svg .muted{fill:#888}
  details{margin:8px 0}summary{cursor:pointer}
  """

/// Which VM held each lane in each column: for `lanes × columns`, a VM index or -1.
private func laneColumns(_ t: ReplayTimeline, trace: Trace, holder: ReplayTimeline.Holder, pool: Int) -> [[Int]] {
  let changes = t.changes.filter { $0.holder == holder && $0.pool == pool }  // in cycle order already
  var lanes = [Int](repeating: -1, count: t.usable[pool])
  var laneOf: [Int: Int] = [:]
  // A VM back after a gap takes its old lane when it is free, so a pause
  // (a cycle without samples) does not reshuffle the picture.
  var lastLane: [Int: Int] = [:]
  var result = [[Int]](repeating: [Int](repeating: -1, count: t.columns.count), count: lanes.count)
  var tally = [[Int: Int]](repeating: [:], count: lanes.count)
  var column = -1
  func flush() {
    guard column >= 0 else { return }
    for l in tally.indices {
      // Most cycles wins; a tie goes to a VM over nobody, then to the lower index.
      let best = tally[l].max { a, b in a.value != b.value ? a.value < b.value : (a.key == -1 || (b.key != -1 && a.key > b.key)) }
      result[l][column] = best?.key ?? -1
      tally[l] = [:]
    }
  }
  var next = 0
  for k in trace.cycles.indices {
    while next < changes.count && changes[next].cycle <= k {
      let c = changes[next]
      next += 1
      if c.holds {
        guard laneOf[c.vm] == nil else { continue }
        let free = lastLane[c.vm].flatMap { lanes[$0] == -1 ? $0 : nil } ?? lanes.firstIndex(of: -1) ?? {
          // More holders than the cap allows: drawn, not hidden.
          lanes.append(-1); tally.append([:])
          result.append([Int](repeating: -1, count: t.columns.count))
          return lanes.count - 1
        }()
        lanes[free] = c.vm
        laneOf[c.vm] = free
        lastLane[c.vm] = free
      } else if let l = laneOf.removeValue(forKey: c.vm) {
        lanes[l] = -1
      }
    }
    let col = t.columns.column(trace.cycles[k].at)
    if col != column { flush(); column = col }
    for l in lanes.indices { tally[l][lanes[l], default: 0] += 1 }
  }
  flush()
  return result
}

private func policySection(trace: Trace, report: ReplayReport) -> String {
  let name = xmlEscape(report.policy)
  var out = "<section class=\"policy\" id=\"policy-\(name)\" data-policy=\"\(name)\">\n<h2>Policy \(name)</h2>\n"
  out += "<p>\(report.managedVMs) managed VMs, \(report.usableVFs) usable VFs, \(report.swapCount) swaps "
    + "(▲ promote, ▼ demote, drawn where decided), \(report.flaps) flaps; eligible VMs' bytes on a VF "
    + "\(percent(report.eligibleVFByteShare)), the oracle's \(percent(report.oracleEligibleVFByteShare))"
    + (report.contentionWeightedEligibleVFByteShare.map { "; weighted by CPU contention \(percent($0))" } ?? "") + ".</p>\n"
  guard let t = report.timeline else { return out + "<p>No timeline recorded.</p></section>\n" }
  let plotX = 140.0, plotW = 960.0
  let colW = plotW / Double(t.columns.count)
  func x(_ col: Int) -> String { fmt(plotX + Double(col) * colW) }
  func at(_ col: Int) -> String { "+" + fmtSeconds(Double(col) * t.columns.secondsPerColumn) }
  let vmIndex = Dictionary(trace.vms.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })

  // The busiest VMs get rows and colours; the others are drawn grey.
  let totals = trace.vms.indices.map { v in t.bytes(ofVM: v).reduce(0, +) }
  let ranked = trace.vms.indices.sorted { totals[$0] != totals[$1] ? totals[$0] > totals[$1] : $0 < $1 }
  // A VM that moved nothing (or was not measured) gets no row of its own.
  let top = Array(ranked.prefix(reportTopVMs).prefix { totals[$0] > 0 })
  let others = Array(ranked.dropFirst(top.count))
  let shown = Set(top)
  func colour(_ vm: Int) -> String {
    shown.contains(vm) ? "hsl(\(Int((Double(vm) * 137.508).truncatingRemainder(dividingBy: 360))),65%,48%)" : "#b8b8b8"
  }

  // Columns each VM held a VF in, under the policy and under the oracle.
  var held: [ReplayTimeline.Holder: [Int: Set<Int>]] = [.policy: [:], .oracle: [:]]
  for (p, pool) in t.pools.enumerated() {
    let lanes = [ReplayTimeline.Holder.policy, .oracle].map { h in (h, laneColumns(t, trace: trace, holder: h, pool: p)) }
    let laneH = 14.0, gap = 3.0
    let height = 16.0 + Double(lanes.map { $0.1.count }.reduce(0, +)) * (laneH + gap) + 2 * (18 + 12) + 8
    out += "<h3>Pool \(xmlEscape(pool)): \(t.usable[p]) usable VFs — the policy's lanes, then the oracle's</h3>\n"
    out += "<svg class=\"lanes\" data-pool=\"\(xmlEscape(pool))\" width=\"\(fmt(plotX + plotW + 20))\" height=\"\(fmt(height))\" "
      + "role=\"img\" aria-label=\"which VM held each VF of pool \(xmlEscape(pool)) over time\">\n"
    for q in 0...4 {
      let col = min(t.columns.count, q * t.columns.count / 4)
      out += "<text x=\"\(x(col))\" y=\"11\" text-anchor=\"\(q == 0 ? "start" : q == 4 ? "end" : "middle")\" class=\"muted\">\(at(col))</text>"
    }
    out += "\n"
    var y = 16.0
    for (h, laneCols) in lanes {
      out += "<g class=\"holder\" data-holder=\"\(h == .policy ? "policy" : "oracle")\">\n"
      out += "<text x=\"0\" y=\"\(fmt(y + 12))\" font-weight=\"bold\">\(h == .policy ? "policy" : "oracle (knows the future, swaps free)")</text>\n"
      y += 18
      if h == .policy {
        // One marker per column and direction, however many swaps it holds.
        var promotes: [Int: [String]] = [:], demotes: [Int: [String]] = [:]
        for s in report.swaps where s.pool == pool {
          let col = t.columns.column(s.at)
          if s.verb == .promote { promotes[col, default: []].append(s.vm) } else { demotes[col, default: []].append(s.vm) }
        }
        out += "<g class=\"swaps\">"
        for (marks, up) in [(promotes, true), (demotes, false)] {
          for (col, vms) in marks.sorted(by: { $0.key < $1.key }) {
            let cx = plotX + (Double(col) + 0.5) * colW
            let points = up ? "\(fmt(cx - 4)),\(fmt(y + 10)) \(fmt(cx + 4)),\(fmt(y + 10)) \(fmt(cx)),\(fmt(y + 2))"
              : "\(fmt(cx - 4)),\(fmt(y + 2)) \(fmt(cx + 4)),\(fmt(y + 2)) \(fmt(cx)),\(fmt(y + 10))"
            let list = vms.prefix(6).joined(separator: ", ") + (vms.count > 6 ? ", …" : "")
            out += "<polygon class=\"swap\" data-verb=\"\(up ? "promote" : "demote")\" data-swaps=\"\(vms.count)\" "
              + "points=\"\(points)\" fill=\"\(up ? "#2a8a3a" : "#c0392b")\"><title>\(vms.count) \(up ? "promote" : "demote")"
              + "\(vms.count == 1 ? "" : "s") at \(at(col)): \(xmlEscape(list))</title></polygon>"
          }
        }
        out += "</g>\n"
      }
      y += 12
      for (l, cols) in laneCols.enumerated() {
        out += "<g class=\"lane\" data-holder=\"\(h == .policy ? "policy" : "oracle")\" data-lane=\"\(l)\">"
        out += "<text x=\"\(fmt(plotX - 6))\" y=\"\(fmt(y + 11))\" text-anchor=\"end\">VF \(l + 1)\(l >= t.usable[p] ? " (over cap)" : "")</text>"
        out += "<rect x=\"\(fmt(plotX))\" y=\"\(fmt(y))\" width=\"\(fmt(plotW))\" height=\"\(fmt(laneH))\" fill=\"#f3f3f3\"/>"
        var c = 0
        while c < cols.count {
          var e = c + 1
          while e < cols.count && cols[e] == cols[c] { e += 1 }
          if cols[c] >= 0 {
            let vm = cols[c]
            for col in c..<e { held[h]![vm, default: []].insert(col) }
            out += "<rect class=\"hold\" x=\"\(x(c))\" y=\"\(fmt(y))\" width=\"\(fmt(Double(e - c) * colW))\" height=\"\(fmt(laneH))\" "
              + "fill=\"\(colour(vm))\"><title>\(xmlEscape(trace.vms[vm].name)) on VF \(l + 1), \(at(c)) to \(at(e))</title></rect>"
          }
          c = e
        }
        out += "</g>\n"
        y += laneH + gap
      }
      out += "</g>\n"
    }
    out += "</svg>\n"
  }

  // Traffic, busiest first: a heat strip per VM (colour by log bytes over
  // three decades below the busiest column of any VM drawn: bursty traffic
  // would leave a linear scale blank), and under it when it held a VF.
  let stripH = 12.0, barH = 3.0, rowH = 12.0 + 2 * 3.0 + 6
  let height = 16.0 + Double(top.count + (others.isEmpty ? 0 : 1)) * rowH + 4
  let peak = top.map { t.bytes(ofVM: $0).max() ?? 0 }.max() ?? 0
  out += "<h3>Traffic per VM, busiest first</h3>\n<p class=\"note\">Colour by bytes in the column on a log scale, three decades: darkest = "
    + "\(fmtBytes(peak)) in one column; under each strip, when the VM held a VF: <span style=\"color:#1f4e9c\">■ policy</span>, "
    + "<span style=\"color:#e08a00\">■ oracle</span>.\(others.isEmpty ? "" : " The last row sums the \(others.count) other VMs, on its own scale.")</p>\n"
  out += "<svg class=\"traffic\" width=\"\(fmt(plotX + plotW + 20))\" height=\"\(fmt(height))\" role=\"img\" aria-label=\"traffic per VM over time\">\n"
  func strip(_ values: ArraySlice<Double>, y: Double, scale: Double) -> String {
    var s = "<rect x=\"\(fmt(plotX))\" y=\"\(fmt(y))\" width=\"\(fmt(plotW))\" height=\"\(fmt(stripH))\" fill=\"#f3f3f3\"/>"
    let levels = values.map { v -> Int in v <= 0 || scale <= 0 ? 0 : max(1, min(8, Int(((1 + log10(v / scale) / 3) * 8).rounded(.up)))) }
    var c = 0
    while c < levels.count {
      var e = c + 1
      while e < levels.count && levels[e] == levels[c] { e += 1 }
      if levels[c] > 0 {
        s += "<rect class=\"heat\" x=\"\(x(c))\" y=\"\(fmt(y))\" width=\"\(fmt(Double(e - c) * colW))\" height=\"\(fmt(stripH))\" "
          + "fill=\"hsl(210,70%,\(92 - levels[c] * 8)%)\"/>"
      }
      c = e
    }
    return s
  }
  func bar(_ cols: Set<Int>?, y: Double, fill: String) -> String {
    guard let cols, !cols.isEmpty else { return "" }
    var s = "", sorted = cols.sorted(), i = 0
    while i < sorted.count {
      var e = i + 1
      while e < sorted.count && sorted[e] == sorted[e - 1] + 1 { e += 1 }
      s += "<rect x=\"\(x(sorted[i]))\" y=\"\(fmt(y))\" width=\"\(fmt(Double(sorted[e - 1] - sorted[i] + 1) * colW))\" height=\"\(fmt(barH))\" fill=\"\(fill)\"/>"
      i = e
    }
    return s
  }
  var y = 4.0
  for vm in top {
    let label = trace.vms[vm].name
    out += "<g class=\"vm\" data-vm=\"\(xmlEscape(label))\"><title>\(xmlEscape(label)) (\(xmlEscape(t.vmClass[vm] ?? "unmanaged"))): \(fmtBytes(totals[vm]))</title>"
    out += "<rect x=\"0\" y=\"\(fmt(y + 2))\" width=\"8\" height=\"8\" fill=\"\(colour(vm))\"/>"
    out += "<text x=\"12\" y=\"\(fmt(y + 10))\">\(xmlEscape(label.count > 14 ? String(label.prefix(13)) + "…" : label))</text>"
    out += "<text x=\"\(fmt(plotX - 6))\" y=\"\(fmt(y + 10))\" text-anchor=\"end\" class=\"muted\">\(fmtBytes(totals[vm]))</text>"
    out += strip(t.bytes(ofVM: vm), y: y, scale: peak)
    out += bar(held[.policy]![vm], y: y + stripH + 1, fill: "#1f4e9c")
    out += bar(held[.oracle]![vm], y: y + stripH + 1 + barH, fill: "#e08a00")
    out += "</g>\n"
    y += rowH
  }
  if !others.isEmpty {
    var sum = [Double](repeating: 0, count: t.columns.count)
    for vm in others { for (c, b) in t.bytes(ofVM: vm).enumerated() { sum[c] += b } }
    let total = sum.reduce(0, +)
    out += "<g class=\"vm others\"><title>\(others.count) other VMs: \(fmtBytes(total))</title>"
    out += "<text x=\"12\" y=\"\(fmt(y + 10))\">\(others.count) others</text>"
    out += "<text x=\"\(fmt(plotX - 6))\" y=\"\(fmt(y + 10))\" text-anchor=\"end\" class=\"muted\">\(fmtBytes(total))</text>"
    out += strip(sum[...], y: y, scale: sum.max() ?? 0) + "</g>\n"
  }
  out += "</svg>\n"
  if !others.isEmpty {
    var swapsOf: [Int: Int] = [:]
    for s in report.swaps { if let v = vmIndex[s.vm] { swapsOf[v, default: 0] += 1 } }
    out += "<details class=\"others\"><summary>\(others.count) other VMs (\(fmtBytes(others.map { totals[$0] }.reduce(0, +))))</summary>\n"
    out += "<table><thead><tr><th>VM</th><th>class</th><th>bytes</th><th>swaps</th></tr></thead><tbody>\n"
    for vm in others {
      out += "<tr><th>\(xmlEscape(trace.vms[vm].name))</th><td>\(xmlEscape(t.vmClass[vm] ?? "unmanaged"))</td>"
        + "<td>\(fmtBytes(totals[vm]))</td><td>\(swapsOf[vm] ?? 0)</td></tr>\n"
    }
    out += "</tbody></table></details>\n"
  }
  return out + "</section>\n"
}

private func fmt(_ x: Double) -> String { String(format: "%.1f", x) }

private func fmtBytes(_ b: Double) -> String {
  let units = ["B", "kB", "MB", "GB", "TB", "PB"]
  var v = b, u = 0
  while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
  return u == 0 ? String(format: "%.0f B", v) : String(format: "%.1f ", v) + units[u]
}
