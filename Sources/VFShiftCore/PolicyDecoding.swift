/// One problem in a policy file: where (file, line, field path), and why.
public struct PolicyIssue: Error, Sendable, Equatable, CustomStringConvertible {
  public var file: String
  public var line: Int?
  public var path: String
  public var reason: String

  public var description: String {
    let location = line.map { "\(file):\($0)" } ?? file
    return path.isEmpty ? "\(location): \(reason)" : "\(location): \(path): \(reason)"
  }
}

/// Every problem found in one file, not just the first: an operator fixing a
/// policy wants the whole list in one go.
public struct PolicyErrors: Error, Sendable, Equatable, CustomStringConvertible {
  public var issues: [PolicyIssue]
  public var description: String { issues.map(\.description).joined(separator: "\n") }
}

extension Policy {
  /// Parses and validates a policy file's text. `file` names it in errors;
  /// `defaultName` is used when the file sets no `name`.
  public static func parse(_ text: String, file: String, defaultName: String) throws(PolicyErrors) -> Policy {
    let root: JSONNode
    do { root = try parseJSON5(text) } catch {
      throw PolicyErrors(issues: [PolicyIssue(file: file, line: error.line, path: "",
                                              reason: "\(error.reason) (column \(error.column))")])
    }
    var d = PolicyDecoder(file: file)
    let policy = d.policy(root, defaultName: defaultName)
    if let policy, d.issues.isEmpty { return policy }
    throw PolicyErrors(issues: d.issues)
  }
}

struct PolicyDecoder {
  let file: String
  var issues: [PolicyIssue] = []

  mutating func fail(_ node: JSONNode?, _ path: String, _ reason: String) {
    issues.append(PolicyIssue(file: file, line: node?.line, path: path, reason: reason))
  }

  /// The members of an object, after reporting any key it does not know: a
  /// misspelt field silently ignored is a policy that does something else.
  mutating func object(_ node: JSONNode, _ path: String, known: [String]) -> [String: JSONNode]? {
    guard case .object(let members) = node.value else {
      fail(node, path, "must be an object, found \(node.value.typeName)")
      return nil
    }
    var out: [String: JSONNode] = [:]
    for m in members {
      if known.contains(m.key) { out[m.key] = m.value } else {
        let guess = known.min { editDistance($0, m.key) < editDistance($1, m.key) }
        let hint = guess.flatMap { editDistance($0, m.key) <= 3 ? " (did you mean \($0)?)" : nil }
          ?? " (known here: \(known.joined(separator: ", ")))"
        fail(m.value, join(path, m.key), "unknown field\(hint)")
      }
    }
    return out
  }

  func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

  /// `owner` is the object `o` came from: a missing field has no line of
  /// its own, so the message gives the line of the object it is missing from.
  mutating func string(_ o: [String: JSONNode], _ key: String, _ path: String, required: Bool,
                       owner: JSONNode? = nil) -> String? {
    guard let n = o[key] else {
      if required { fail(owner, join(path, key), "is required") }
      return nil
    }
    guard case .string(let s) = n.value else {
      fail(n, join(path, key), "must be a string, found \(n.value.typeName)")
      return nil
    }
    if s.isEmpty { fail(n, join(path, key), "must not be empty") ; return nil }
    return s
  }

  mutating func number(_ o: [String: JSONNode], _ key: String, _ path: String,
                       min: Double = 0, integer: Bool = false, positive: Bool = false) -> Double? {
    guard let n = o[key] else { return nil }
    guard case .number(let d) = n.value else {
      fail(n, join(path, key), "must be a number, found \(n.value.typeName)")
      return nil
    }
    if integer && d != d.rounded() { fail(n, join(path, key), "must be a whole number, got \(d)"); return nil }
    // Whole numbers become Int, and converting a Double beyond Int traps (found
    // by Benchmarks/fuzz-policy); 2^53 is also where Doubles stop being exact.
    if integer && abs(d) > 9_007_199_254_740_992 {
      fail(n, join(path, key), "must be a whole number of at most 2^53, got \(d)"); return nil
    }
    if positive && d <= 0 { fail(n, join(path, key), "must be greater than 0, got \(fmt(d))"); return nil }
    if d < min { fail(n, join(path, key), "must be ≥ \(fmt(min)), got \(fmt(d))"); return nil }
    return d
  }

  mutating func stringList(_ o: [String: JSONNode], _ key: String, _ path: String) -> [String] {
    guard let n = o[key] else { return [] }
    if case .string(let s) = n.value {
      if s.isEmpty { fail(n, join(path, key), "must not be empty") ; return [] }
      return [s]
    }
    guard case .array(let items) = n.value else {
      fail(n, join(path, key), "must be a string or an array of strings, found \(n.value.typeName)")
      return []
    }
    var out: [String] = []
    for (i, item) in items.enumerated() {
      if case .string(let s) = item.value, !s.isEmpty { out.append(s) } else {
        fail(item, "\(join(path, key))[\(i)]", "must be a non-empty string, found \(item.value.typeName)")
      }
    }
    return out
  }

  mutating func policy(_ root: JSONNode, defaultName: String) -> Policy? {
    guard let o = object(root, "", known: ["name", "description", "intervalSeconds", "smoothing", "pools",
                                           "classes", "antiFlap"]) else { return nil }
    _ = string(o, "description", "", required: false)
    let name = string(o, "name", "", required: false) ?? defaultName
    let interval = number(o, "intervalSeconds", "", positive: true) ?? 1
    var halfLife = 10.0
    if let s = o["smoothing"], let so = object(s, "smoothing", known: ["halfLifeSeconds"]) {
      halfLife = number(so, "halfLifeSeconds", "smoothing") ?? halfLife
    }
    // Entries that failed are left out of these lists, so each kept one
    // carries its position in the file: messages name the entry as written.
    var pools: [VFPool] = []
    var poolPositions: [Int] = []
    if let p = o["pools"] {
      if case .array(let items) = p.value {
        for (i, item) in items.enumerated() {
          if let pool = self.pool(item, "pools[\(i)]") { pools.append(pool); poolPositions.append(i) }
        }
      } else { fail(p, "pools", "must be an array of pools, found \(p.value.typeName)") }
    }
    for (i, pool) in pools.enumerated() where pools[..<i].contains(where: { $0.name == pool.name }) {
      fail(poolNode(o, poolPositions[i]), "pools[\(poolPositions[i])].name", "pool '\(pool.name)' is defined twice")
    }
    var classes: [QoSClass] = []
    var classNodes: [JSONNode] = []
    var classPositions: [Int] = []
    if let c = o["classes"] {
      if case .array(let items) = c.value {
        if items.isEmpty { fail(c, "classes", "must list at least one class") }
        for (i, item) in items.enumerated() {
          if let qc = qosClass(item, "classes[\(i)]", pools: pools) {
            classes.append(qc); classNodes.append(item); classPositions.append(i)
          }
        }
      } else { fail(c, "classes", "must be an array of classes, found \(c.value.typeName)") }
    } else { fail(root, "classes", "is required") }
    checkOverlaps(classes, classNodes, classPositions)
    var antiFlap = AntiFlap()
    if let a = o["antiFlap"], let ao = object(a, "antiFlap", known: ["minDwellSeconds", "cooldownSeconds",
        "challengerMargin", "maxSwapsPerCycle", "maxSwapsPerVMPerHour"]) {
      antiFlap.minDwellSeconds = number(ao, "minDwellSeconds", "antiFlap") ?? antiFlap.minDwellSeconds
      antiFlap.cooldownSeconds = number(ao, "cooldownSeconds", "antiFlap") ?? antiFlap.cooldownSeconds
      antiFlap.challengerMargin = number(ao, "challengerMargin", "antiFlap") ?? antiFlap.challengerMargin
      antiFlap.maxSwapsPerCycle = number(ao, "maxSwapsPerCycle", "antiFlap", integer: true, positive: true)
        .map { Int($0) } ?? antiFlap.maxSwapsPerCycle
      antiFlap.maxSwapsPerVMPerHour = number(ao, "maxSwapsPerVMPerHour", "antiFlap", integer: true, positive: true)
        .map { Int($0) } ?? antiFlap.maxSwapsPerVMPerHour
    }
    return Policy(name: name, intervalSeconds: interval, smoothingHalfLifeSeconds: halfLife,
                  pools: pools, classes: classes, antiFlap: antiFlap)
  }

  func poolNode(_ o: [String: JSONNode], _ i: Int) -> JSONNode? {
    guard case .array(let items)? = o["pools"]?.value, i < items.count else { return nil }
    return items[i]
  }

  mutating func pool(_ node: JSONNode, _ path: String) -> VFPool? {
    guard let o = object(node, path, known: ["name", "network", "pf", "maxInUse", "mode", "mac", "confirmSeconds", "counters", "dataNIC"]) else { return nil }
    let name = string(o, "name", path, required: true, owner: node)
    let network = string(o, "network", path, required: true, owner: node)
    let pf = string(o, "pf", path, required: false)
    let cap = number(o, "maxInUse", path, integer: true).map { Int($0) }
    let mode = choice(o, "mode", path, default: SwapMode.replace)
    let mac = choice(o, "mac", path, default: MACChoice.same)
    let confirm = number(o, "confirmSeconds", path, positive: true) ?? 10
    let counters = choice(o, "counters", path, default: PoolCounters.auto)
    let data = dataNIC(o, path)
    guard let name, let network else { return nil }
    return VFPool(name: name, network: network, pf: pf, maxInUse: cap, mode: mode, mac: mac, confirmSeconds: confirm,
                  counters: counters, dataNIC: data)
  }

  /// One of an enumeration's spellings, or its default (an error names the field and the choices).
  mutating func choice<E: RawRepresentable & CaseIterable>(_ o: [String: JSONNode], _ key: String, _ path: String,
                                                           default value: E) -> E where E.RawValue == String {
    guard let text = string(o, key, path, required: false) else { return value }
    guard let parsed = E(rawValue: text) else {
      fail(o[key], join(path, key), "must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
      return value
    }
    return parsed
  }

  mutating func threshold(_ node: JSONNode, _ path: String) -> RateThreshold? {
    guard let o = object(node, path, known: ["bytesPerSecond", "packetsPerSecond", "sustainSeconds"]) else { return nil }
    let t = RateThreshold(bytesPerSecond: number(o, "bytesPerSecond", path),
                          packetsPerSecond: number(o, "packetsPerSecond", path),
                          sustainSeconds: number(o, "sustainSeconds", path) ?? 0)
    if o["bytesPerSecond"] == nil && o["packetsPerSecond"] == nil {
      fail(node, path, "needs bytesPerSecond and/or packetsPerSecond")
    }
    return t
  }

  mutating func qosClass(_ node: JSONNode, _ path: String, pools: [VFPool]) -> QoSClass? {
    guard let o = object(node, path, known: ["name", "priority", "match", "vf", "pool", "promote", "demote",
                                             "contentionWeight", "promoteUnderContention", "description"]) else { return nil }
    _ = string(o, "description", path, required: false)
    let name = string(o, "name", path, required: true, owner: node)
    let priority = number(o, "priority", path, min: -1_000_000, integer: true).map { Int($0) } ?? 0
    var vf = VFEligibility.eligible
    // What depends on vf (pool, promote, demote) is not judged when vf
    // itself is wrong: one mistake, one message.
    var vfKnown = true
    if let v = string(o, "vf", path, required: true, owner: node) {
      if let parsed = VFEligibility(rawValue: v) { vf = parsed } else {
        fail(o["vf"], join(path, "vf"), "must be one of never, eligible, always, got '\(v)'")
        vfKnown = false
      }
    }
    var match = ClassMatch()
    if let m = o["match"] {
      if let mo = object(m, join(path, "match"), known: ["metadata", "names", "uuids"]) {
        match = ClassMatch(metadata: stringList(mo, "metadata", join(path, "match")),
                           names: stringList(mo, "names", join(path, "match")),
                           uuids: stringList(mo, "uuids", join(path, "match")))
        if match.metadata.isEmpty && match.names.isEmpty && match.uuids.isEmpty {
          fail(m, join(path, "match"), "matches nothing: give metadata, names and/or uuids")
        }
      }
    } else { fail(node, join(path, "match"), "is required") }
    var pool = string(o, "pool", path, required: false)
    if let p = pool, !pools.contains(where: { $0.name == p }) {
      fail(o["pool"], join(path, "pool"), "no pool named '\(p)' (pools: \(pools.map(\.name).joined(separator: ", ")))")
    }
    if pool == nil && vf != .never && vfKnown {
      if pools.count == 1 { pool = pools[0].name } else {
        fail(node, join(path, "pool"), "is required when vf is '\(vf.rawValue)' and the policy has \(pools.count) pools")
      }
    }
    var promote = RateThreshold(), demote = RateThreshold()
    var weight = 0.0
    var relief: ContentionRelief?
    if !vfKnown {
      // Skipped: see above.
    } else if vf == .eligible {
      if let p = o["promote"] { promote = threshold(p, join(path, "promote")) ?? promote } else {
        fail(node, join(path, "promote"), "is required when vf is 'eligible'")
      }
      if let d = o["demote"] { demote = threshold(d, join(path, "demote")) ?? demote } else {
        fail(node, join(path, "demote"), "is required when vf is 'eligible'")
      }
      checkHysteresis(promote, demote, o["demote"], join(path, "demote"))
      weight = number(o, "contentionWeight", path) ?? 0
      relief = o["promoteUnderContention"].flatMap { self.relief($0, join(path, "promoteUnderContention"), promote, demote) }
    } else {
      for key in ["promote", "demote", "contentionWeight", "promoteUnderContention"] where o[key] != nil {
        fail(o[key], join(path, key), "has no effect when vf is '\(vf.rawValue)'")
      }
    }
    guard let name else { return nil }
    return QoSClass(name: name, priority: priority, match: match, vf: vf, pool: pool, promote: promote, demote: demote,
                    contentionWeight: weight, promoteUnderContention: relief)
  }

  /// Lowered, the promote rates must still sit above the release ones
  /// (hysteresis), or a contended VM would flap at the rates between.
  mutating func relief(_ node: JSONNode, _ path: String, _ up: RateThreshold, _ down: RateThreshold) -> ContentionRelief? {
    guard let o = object(node, path, known: ["above", "promoteScale"]) else { return nil }
    let above = number(o, "above", path), scale = number(o, "promoteScale", path, positive: true)
    for (key, v) in [("above", above), ("promoteScale", scale)] {
      if o[key] == nil { fail(node, join(path, key), "is required") }
      if let v, v > 1 { fail(o[key], join(path, key), "must be ≤ 1, got \(fmt(v))") }
    }
    guard let above, let scale, above <= 1, scale <= 1 else { return nil }
    let r = ContentionRelief(above: above, promoteScale: scale), low = r.lowered(up)
    for (rate, u, d) in [("bytesPerSecond", low.bytesPerSecond, down.bytesPerSecond),
                         ("packetsPerSecond", low.packetsPerSecond, down.packetsPerSecond)] {
      if let u, let d, d >= u {
        fail(o["promoteScale"], join(path, "promoteScale"), "lowers promote.\(rate) to \(fmt(u)), not above demote.\(rate) (\(fmt(d))): no hysteresis")
      }
    }
    return r
  }

  /// The release threshold must sit below the promote threshold, or the VM
  /// would be released the moment it was promoted.
  mutating func checkHysteresis(_ up: RateThreshold, _ down: RateThreshold, _ node: JSONNode?, _ path: String) {
    if let u = up.bytesPerSecond, let d = down.bytesPerSecond, d >= u {
      fail(node, "\(path).bytesPerSecond", "must be below promote.bytesPerSecond (\(fmt(u))) for hysteresis, got \(fmt(d))")
    }
    if let u = up.packetsPerSecond, let d = down.packetsPerSecond, d >= u {
      fail(node, "\(path).packetsPerSecond", "must be below promote.packetsPerSecond (\(fmt(u))) for hysteresis, got \(fmt(d))")
    }
    if up.bytesPerSecond != nil && down.bytesPerSecond == nil || up.packetsPerSecond != nil && down.packetsPerSecond == nil {
      fail(node, path, "must give a release threshold for every rate that promote uses")
    }
  }

  /// Literal overlaps are caught here; glob overlaps show when a VM is
  /// classified (it is then left alone, and the report names both classes).
  /// `positions[i]` is where `classes[i]` stands in the file.
  mutating func checkOverlaps(_ classes: [QoSClass], _ nodes: [JSONNode], _ positions: [Int]) {
    for (i, c) in classes.enumerated() {
      let at = "classes[\(positions[i])]"
      if classes[..<i].contains(where: { $0.name == c.name }) {
        fail(nodes[i], "\(at).name", "class '\(c.name)' is defined twice")
      }
      for (j, other) in classes[..<i].enumerated() {
        for m in c.match.metadata where other.match.metadata.contains(m) {
          fail(nodes[i], "\(at).match.metadata", "label '\(m)' is also matched by class '\(other.name)' (classes[\(positions[j])]): a VM would be matched by two classes")
        }
        for u in c.match.uuids where other.match.uuids.contains(u) {
          fail(nodes[i], "\(at).match.uuids", "UUID \(u) is also matched by class '\(other.name)' (classes[\(positions[j])]): a VM would be matched by two classes")
        }
        // A literal name matched by the other class's glob, either way round.
        for n in c.match.names where other.match.names.contains(n) || (!isGlob(n) && other.match.names.contains { globMatch($0, n) })
          || other.match.names.contains(where: { !isGlob($0) && globMatch(n, $0) }) {
          fail(nodes[i], "\(at).match.names", "'\(n)' is also matched by class '\(other.name)' (classes[\(positions[j])]): a VM would be matched by two classes")
        }
      }
    }
  }

  func isGlob(_ s: String) -> Bool { s.contains { $0 == "*" || $0 == "?" || $0 == "[" } }
}
