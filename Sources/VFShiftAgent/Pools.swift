import Foundation
import VFShiftCore
import VFShiftFiles
import VFShiftHost
import VFShiftLibvirt

// Pool sizes and the policy behind them: checked against libvirt at start
// and on reload, and the inventory with each VF's pool network filled in.
extension Agent {
  /// The inventory snapshot with each VF's pool network filled in
  /// (`VFCounterSources.attributingPools`), kept while its generation stands.
  func withPools(_ inventory: Inventory) -> [DomainInventory] {
    let generation = inventory.generation
    if let a = attributed, a.generation == generation { return a.domains }
    let domains = vfSources?.attributingPools(inventory.snapshot(), pools: hostdevPools) ?? inventory.snapshot()
    attributed = (generation, domains)
    return domains
  }

  /// Each pool must exist in libvirt as a pool network; its size comes from
  /// there (or from sysfs for real SR-IOV), else from the configuration.
  func checkPools(_ connection: LibvirtConnection) throws -> [String: Int] {
    var totals: [String: Int] = [:]
    var hostdev: [HostdevPool] = []
    // New pools attribute VFs anew under the same inventory generation: the
    // observation kept under that generation is of the old attribution.
    defer { hostdevPools = hostdev; attributed = nil; devicePositions = DevicePositions() }
    for pool in policy.pools {
      if let n = config.poolSizes[pool.name] { totals[pool.name] = n; continue }
      let network: PoolNetwork
      do { network = try connection.poolNetwork(name: pool.network) } catch {
        throw PoolMismatch(pool: pool.name, network: pool.network, reason: "\(error)")
      }
      var total = network.members.count
      if network.mode == "hostdev" {
        hostdev.append(HostdevPool(network: pool.network, pf: network.pf ?? pool.pf,
                                   members: Set(network.members.compactMap(pciAddress(poolMember:)))))
      }
      // A real SR-IOV pool (`<pf dev>`) lists no members: its VFs are in sysfs.
      if let pf = network.pf ?? pool.pf, network.mode == "hostdev" {
        do { total = try physicalFunction(netdev: pf).enabledVFs } catch {
          throw PoolMismatch(pool: pool.name, network: pool.network, reason: "PF \(pf): \(error)")
        }
      }
      guard total > 0 else { throw PoolMismatch(pool: pool.name, network: pool.network, reason: "it has no members") }
      totals[pool.name] = total
    }
    return totals
  }

  func reloadPolicy() {
    do {
      let fresh = try loadPolicy(config.policyPath)
      log.emit("reload", ["policy": .string(fresh.name), "outcome": "applied"])
      policy = fresh
    } catch {
      metrics.error("reload")
      log.emit("reload", ["outcome": "refused", "errors": .string("\(error)"), "kept": .string(policy.name)])
    }
  }
}

public struct PoolMismatch: Error, CustomStringConvertible {
  public var pool: String
  public var network: String
  public var reason: String
  public var description: String {
    "policy pool '\(pool)': libvirt network '\(network)' is not a usable VF pool: \(reason)"
  }
}
