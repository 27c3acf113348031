// swift-tools-version: 6.0
import PackageDescription

/// Release builds of the two binaries whose memory is measured (vfshift,
/// bench-agent: RSS) link the Swift runtime and Foundation statically, as
/// `swift build --static-swift-stdlib` would, without compiling every module
/// for it; debug builds and the tests use the toolchain's defaults. Linking
/// alone leaves out what the static archives need of each other, hence the
/// list, and lld, which does not care about archive order. Relative
/// relocations packed (DT_RELR, glibc 2.36): the loader then reads ~14 KB of
/// them instead of 1.7 MB. glibc stays shared; libvirt is not linked at all
/// (dlopen).
///
/// The functions `vfshift run` executes are placed together at the start of
/// .text: the kernel maps text 64 KB around each page fault, so scattered over
/// 15 MB they kept 7.8 MB of it resident, together ~4 MB. The order file is
/// `Sources/vfshift/hot-functions.order`; regenerate it with
/// `Benchmarks/hot-functions/update` (callgrind over `vfshift run`) after a
/// change to the agent's hot path or a toolchain upgrade. A stale one costs
/// resident pages, never behaviour: a name not found is skipped. SwiftPM does
/// not track the file, so the script removes the binaries to relink them.
let staticSwift: [LinkerSetting] = [
  .unsafeFlags([
    "-static-stdlib", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    "-lCoreFoundation", "-lFoundation", "-lFoundationEssentials", "-lFoundationInternationalization", "-lFoundationXML",
    "-l_CFXMLInterface", "-l_FoundationCShims", "-l_FoundationCollections", "-l_FoundationICU", "-lswiftDispatch",
    "-lswiftGlibc", "-lswiftSynchronization", "-lswift_Concurrency", "-lswift_RegexParser", "-lswift_StringProcessing",
    "-lxml2", "-lutil",
    "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/vfshift/hot-functions.order",
    "-Xlinker", "--no-warn-symbol-ordering",
  ], .when(platforms: [.linux], configuration: .release)),
]

// Modules are split by effect (README: Layout): VFShiftCore is pure,
// the adapters hold all I/O, and only VFShiftLibvirt binds the C library
// (at run time, in its Internals/Calls.swift).
let package = Package(
  name: "vfshift",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "vfshift", targets: ["vfshift"]),
  ],
  targets: [
    // glibc's mallopt and malloc_trim, for the agent's memory (bench-agent: RSS).
    .systemLibrary(name: "CMalloc"),
    .target(name: "VFShiftCore"),
    .target(name: "VFShiftHost", dependencies: ["VFShiftCore"]),
    // libvirt is loaded at run time (dlopen): nothing of it is needed to build.
    .target(name: "VFShiftLibvirt", dependencies: ["VFShiftCore"]),
    // Policy and trace files from disk (stat/open in its Internals): what the
    // agent, whatif, the core tests and bench-engine load, without the agent.
    .target(name: "VFShiftFiles", dependencies: ["VFShiftCore"]),
    .target(name: "VFShiftAgent", dependencies: ["VFShiftCore", "VFShiftFiles", "VFShiftHost", "VFShiftLibvirt", "CMalloc"]),
    .executableTarget(name: "vfshift", dependencies: ["VFShiftCore", "VFShiftFiles", "VFShiftHost", "VFShiftLibvirt", "VFShiftAgent",
                                                      "CMalloc"],
                      exclude: ["hot-functions.order"], linkerSettings: staticSwift),
    // Shared by the test targets: brings up the real test bed and decides,
    // loudly, whether a test that needs it runs, fails (CI) or skips (locally).
    .target(name: "VFShiftTestSupport", path: "Tests/Support"),

    .testTarget(name: "VFShiftCoreTests", dependencies: ["VFShiftCore", "VFShiftFiles"], exclude: ["Fixtures"]),
    .testTarget(name: "VFShiftHostTests", dependencies: ["VFShiftHost", "VFShiftTestSupport"]),
    .testTarget(name: "VFShiftLibvirtTests", dependencies: ["VFShiftLibvirt", "VFShiftTestSupport"]),
    .testTarget(name: "VFShiftAgentTests", dependencies: ["VFShiftAgent", "VFShiftFiles", "VFShiftTestSupport"]),

    .executableTarget(name: "bench-engine", dependencies: ["VFShiftCore", "VFShiftFiles"], path: "Benchmarks/bench-engine"),
    // What the benchmarks share: the kernel's floors, the naive alternatives, helpers.
    .target(name: "BenchSupport", dependencies: ["VFShiftCore", "VFShiftHost"], path: "Benchmarks/BenchSupport"),
    .executableTarget(name: "bench-counters", dependencies: ["VFShiftHost", "BenchSupport"], path: "Benchmarks/bench-counters"),
    .executableTarget(name: "bench-libvirt", dependencies: ["VFShiftLibvirt", "VFShiftHost"], path: "Benchmarks/bench-libvirt"),
    .executableTarget(name: "bench-agent", dependencies: ["VFShiftAgent", "VFShiftFiles", "BenchSupport"], path: "Benchmarks/bench-agent",
                      linkerSettings: staticSwift),
    // libFuzzer targets, one per parser; Benchmarks/fuzz/run builds them with the sanitizers.
    .target(name: "FuzzSupport", path: "Benchmarks/FuzzSupport"),
    .executableTarget(name: "fuzz-policy", dependencies: ["FuzzSupport", "VFShiftCore"], path: "Benchmarks/fuzz-policy"),
    .executableTarget(name: "fuzz-trace", dependencies: ["FuzzSupport", "VFShiftCore"], path: "Benchmarks/fuzz-trace"),
    .executableTarget(name: "fuzz-gwa", dependencies: ["FuzzSupport", "VFShiftCore"], path: "Benchmarks/fuzz-gwa"),
    .executableTarget(name: "fuzz-procnetdev", dependencies: ["FuzzSupport", "VFShiftHost"], path: "Benchmarks/fuzz-procnetdev"),
    .executableTarget(name: "fuzz-netlink", dependencies: ["FuzzSupport", "VFShiftHost"], path: "Benchmarks/fuzz-netlink"),
    .executableTarget(name: "fuzz-domainxml", dependencies: ["FuzzSupport", "VFShiftLibvirt"], path: "Benchmarks/fuzz-domainxml"),
  ],
  swiftLanguageModes: [.v6]
)
