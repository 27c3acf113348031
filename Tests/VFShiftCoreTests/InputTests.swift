import Foundation
import Testing
import VFShiftCore
import VFShiftFiles

// Input accounting and files as people's tools leave them (issue #15). The
// silent cases here were each found by trying them on the code before: the
// import gave fewer VMs, or other numbers, with exit 0 and no word.

/// A fresh directory under /tmp for one test, removed when it ends.
final class ScratchDirectory {
  let path: String
  init(_ name: String) throws {
    path = NSTemporaryDirectory() + "vfshift-\(name)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  @discardableResult
  func write(_ name: String, _ text: String) -> String { write(name, Data(text.utf8)) }
  @discardableResult
  func write(_ name: String, _ data: Data) -> String {
    let full = "\(path)/\(name)"
    try? FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: full, contents: data)
    return full
  }
}

func crlf(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "\r\n") }
func crOnly(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "\r") }

/// The extract as a directory, with `change` applied to the file named `changed`.
func extractDirectory(_ scratch: ScratchDirectory, changing changed: String? = nil, _ change: (String) -> String = { $0 }) -> String {
  for f in gwaExtract { scratch.write("gwa/\(f.name)", f.name == changed ? change(f.text) : f.text) }
  return "\(scratch.path)/gwa"
}

func withoutSource(_ t: Trace) -> Trace { var t = t; t.source = ""; return t }

@Test("GWA-T-12: a file with CR LF line ends gives its VM, the same samples (it was dropped: fewer VMs, exit 0)")
func gwaCRLFFileIsRead() throws {
  let clean = try ScratchDirectory("clean"), windows = try ScratchDirectory("crlf")
  let a = try loadTrace(extractDirectory(clean))
  let b = try loadTrace(extractDirectory(windows, changing: "95.csv", crlf))
  #expect(b.vms.count == 3)
  #expect(withoutSource(a) == withoutSource(b))
}

@Test("GWA-T-12: CR line ends (Excel for Mac) read as LF (the file was dropped)")
func gwaCROnlyFileIsRead() throws {
  let clean = try ScratchDirectory("clean"), mac = try ScratchDirectory("cr")
  let a = try loadTrace(extractDirectory(clean))
  let b = try loadTrace(extractDirectory(mac, changing: "96.csv", crOnly))
  #expect(withoutSource(a) == withoutSource(b))
}

@Test("GWA-T-12: columns are found by their header names (a reordered file was read from the wrong columns)")
func gwaColumnsByName() throws {
  func swapColumns(_ text: String) -> String {
    // Network received (field 10) ↔ disk read (field 8), header and rows alike.
    text.split(separator: "\n").map { line in
      var f = line.split(separator: ";", omittingEmptySubsequences: false)
      f.swapAt(7, 9)
      return f.joined(separator: ";")
    }.joined(separator: "\n") + "\n"
  }
  let clean = try ScratchDirectory("clean"), moved = try ScratchDirectory("moved")
  let a = try loadTrace(extractDirectory(clean))
  let b = try loadTrace(extractDirectory(moved, changing: "93.csv", swapColumns))
  #expect(withoutSource(a) == withoutSource(b))
}

@Test("GWA-T-12: a file with only its header is named, not dropped in silence")
func gwaHeaderOnlyIsAccounted() throws {
  let s = try ScratchDirectory("empty")
  let dir = extractDirectory(s, changing: "96.csv") { String($0.prefix { $0 != "\n" }) + "\n" }
  #expect { try loadTrace(dir) } throws: { "\($0)" == "\(dir)/96.csv: no rows after the header" }
  let (trace, inputs) = try loadTrace([dir])
  #expect(trace.vms.map(\.name) == ["93", "95"])
  #expect(inputs.files == 3 && inputs.vms == 2)
  #expect(inputs.skipped == [GWAT12.Skipped(file: "\(dir)/96.csv", reason: "no rows after the header", warning: true)])
}

@Test("GWA-T-12: two VMs' rows in one file (headers stripped) are refused at the line, not merged into one VM")
func gwaJoinedRowsRefused() throws {
  let rows95 = gwaExtract[1].text.split(separator: "\n").dropFirst().joined(separator: "\n") + "\n"
  let s = try ScratchDirectory("joined")
  let dir = extractDirectory(s, changing: "93.csv") { $0 + rows95 }
  #expect { try loadTrace(dir) } throws: {
    "\($0)" == "\(dir)/93.csv:26: timestamp 1372629804 is before line 25's (1372636703): rows out of time order (two files joined, or sorted by another column?)"
  }
}

@Test("GWA-T-12: a link out of the directory is not followed, and says so")
func gwaLinkOutOfDirectory() throws {
  let s = try ScratchDirectory("link"), outside = try ScratchDirectory("outside")
  let dir = extractDirectory(s)
  let target = outside.write("7.csv", gwaExtract[0].text)
  try FileManager.default.createSymbolicLink(atPath: "\(dir)/7.csv", withDestinationPath: target)
  try FileManager.default.createSymbolicLink(atPath: "\(dir)/8.csv", withDestinationPath: "8.csv")
  try FileManager.default.createSymbolicLink(atPath: "\(dir)/link.csv", withDestinationPath: "93.csv")
  let (trace, inputs) = try loadTrace([dir])
  #expect(trace.vms.map(\.name) == ["93", "95", "96"])
  let real = URL(fileURLWithPath: target).resolvingSymlinksInPath().path
  #expect(inputs.skipped == [
    .init(file: "\(dir)/7.csv", reason: "symbolic link to \(real), outside \(dir): not followed", warning: true),
    .init(file: "\(dir)/8.csv", reason: "symbolic link not followed: a loop of symbolic links", warning: true),
    .init(file: "\(dir)/link.csv", reason: "the same file as \(dir)/93.csv", warning: false),
  ])
  #expect(throws: FileError.self) { try loadTrace(dir) }
}

@Test("GWA-T-12: a link out of the directory alone is an error for the strict load (it was read as one more VM)")
func gwaLinkOutStrict() throws {
  let s = try ScratchDirectory("link"), outside = try ScratchDirectory("outside")
  let dir = extractDirectory(s)
  try FileManager.default.createSymbolicLink(atPath: "\(dir)/7.csv", withDestinationPath: outside.write("7.csv", gwaExtract[0].text))
  #expect { try loadTrace(dir) } throws: { "\($0)".hasPrefix("\(dir)/7.csv: symbolic link to ") && "\($0)".hasSuffix(", outside \(dir): not followed") }
}

@Test("a FIFO, a device or a directory where a file is expected is refused unread", .timeLimit(.minutes(1)))
func nonRegularFilesRefused() throws {
  let s = try ScratchDirectory("fifo")
  let fifo = "\(s.path)/t.trace"
  #expect(mkfifo(fifo, 0o600) == 0)
  // Before, reading the FIFO waited for a writer for ever.
  #expect { try loadTrace(fifo) } throws: { "\($0)" == "\(fifo): is a FIFO (named pipe), not a regular file: not read" }
  #expect { try loadPolicy(fifo) } throws: { "\($0)" == "\(fifo): is a FIFO (named pipe), not a regular file: not read" }
  #expect { try loadPolicy("/dev/zero") } throws: { "\($0)" == "/dev/zero: is a character device, not a regular file: not read" }
  #expect { try loadPolicy(s.path) } throws: { "\($0)" == "\(s.path): is a directory where a file is expected" }
  let dir = extractDirectory(s)
  #expect(mkfifo("\(dir)/5.csv", 0o600) == 0)
  let (_, inputs) = try loadTrace([dir])
  #expect(inputs.skipped == [.init(file: "\(dir)/5.csv", reason: "is a FIFO (named pipe), not a regular file: not read", warning: true)])
}

@Test("a file over the size limit is refused with the limit named, before it is read")
func sizeLimit() throws {
  let s = try ScratchDirectory("big")
  let path = "\(s.path)/big.trace"
  _ = FileManager.default.createFile(atPath: path, contents: nil)
  // Sparse: 2 GiB long, no disk used, and nothing read.
  let h = try #require(FileHandle(forWritingAtPath: path))
  try h.truncate(atOffset: 2 << 30)
  try h.close()
  #expect { try loadTrace(path) } throws: {
    "\($0)" == "\(path): is 2147483648 bytes, over the limit of 1073741824 bytes for a trace"
  }
}

@Test("the trace format: CR LF line ends and a byte-order mark read as the clean file (CR LF was 'not a vfshift trace')")
func traceCRLFAndBOM() throws {
  let clean = PaperScenario.trace(seconds: 20).render()
  let a = try Trace.parse(clean, file: "t")
  #expect(try Trace.parse(crlf(clean), file: "t") == a)
  #expect(try Trace.parse("\u{FEFF}" + clean, file: "t") == a)
  #expect(traceError(crOnly(clean), file: "t") == "t:1: CR line end without LF (classic Mac OS line ends): save the file with LF or CR LF line ends")
}

@Test("policies: CR line ends read as LF — a // comment ended at the CR (it swallowed the rest of the file), errors name the line")
func policyCROnly() throws {
  let text = """
    {
      pools: [ { name: "p", network: "n", maxInUse: 1 } ], // one VF
      classes: [ { name: "c", match: { names: ["*"] }, vf: "never" } ],
      antiFlap: { minDwellSeconds: 30, // short
        cooldownSeconds: 600 },
    }
    """
  let a = try Policy.parse(text, file: "p.json", defaultName: "p")
  #expect(try Policy.parse(crOnly(text), file: "p.json", defaultName: "p") == a)
  #expect(try Policy.parse(crlf(text), file: "p.json", defaultName: "p") == a)
  #expect(try Policy.parse("\u{FEFF}" + text, file: "p.json", defaultName: "p") == a)
  #expect(policyError(crOnly("{\n  pools: [],\n  colour: 1,\n}")) == "p.json:3: colour: unknown field (known here: name, description, intervalSeconds, smoothing, pools, classes, antiFlap)\np.json:1: classes: is required")
}

@Test("UTF-16 text (Excel's 'Unicode text') is refused naming its byte-order mark")
func utf16Refused() throws {
  let s = try ScratchDirectory("utf16")
  var data = Data([0xFF, 0xFE])
  data.append("{ }".data(using: .utf16LittleEndian)!)
  let path = s.write("p.json", data)
  #expect { try loadPolicy(path) } throws: { "\($0)" == "\(path): is UTF-16 text (byte-order mark FF FE), not UTF-8: save it as UTF-8" }
  let latin = s.write("q.json", Data("{\n name: 'caf".utf8) + Data([0xE9]) + Data("' }".utf8))
  #expect { try loadPolicy(latin) } throws: { "\($0)" == "\(latin): line 2: not UTF-8 text (Latin-1 or Windows-1252? save it as UTF-8)" }
}

@Test("GWA-T-12 split by time into two directories is one VM per name, the same trace; overlapping parts are refused")
func gwaSplitByTime() throws {
  let whole = try ScratchDirectory("whole"), parts = try ScratchDirectory("parts")
  let a = try loadTrace(extractDirectory(whole))
  for f in gwaExtract {
    let lines = f.text.split(separator: "\n")
    parts.write("2013-7a/\(f.name)", lines[0...12].joined(separator: "\n") + "\n")
    parts.write("2013-7b/\(f.name)", ([lines[0]] + lines[13...]).joined(separator: "\n") + "\n")
  }
  let (b, inputs) = try loadTrace(["\(parts.path)/2013-7a", "\(parts.path)/2013-7b"])
  #expect(withoutSource(a) == withoutSource(b))
  #expect(inputs.files == 6 && inputs.vms == 3 && inputs.skipped.isEmpty)
  parts.write("2013-7b/93.csv", gwaExtract[0].text)
  #expect { try loadTrace(["\(parts.path)/2013-7a", "\(parts.path)/2013-7b"]) } throws: {
    "\($0)".hasPrefix("\(parts.path)/2013-7b/93.csv:2: rows overlap in time with \(parts.path)/2013-7a/93.csv")
  }
}
