// The only file of VFShiftFiles that calls stat/open on input files: what
// kind of file a path is, reading one without ever blocking (a FIFO opened
// for reading waits for a writer) or reading more than a limit, and where a
// link leads. Loading.swift decides what to do with the answers.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum FileKind: Equatable {
  case regular(size: Int)
  case directory
  case symbolicLink
  case fifo, characterDevice, blockDevice, socket, other

  init(_ st: stat) {
    switch st.st_mode & S_IFMT {
    case S_IFREG: self = .regular(size: Int(st.st_size))
    case S_IFDIR: self = .directory
    case S_IFLNK: self = .symbolicLink
    case S_IFIFO: self = .fifo
    case S_IFCHR: self = .characterDevice
    case S_IFBLK: self = .blockDevice
    case S_IFSOCK: self = .socket
    default: self = .other
    }
  }

  /// Why a file of this kind is not read as a file.
  var notAFile: String? {
    switch self {
    case .regular: nil
    case .directory: "is a directory where a file is expected"
    case .symbolicLink: "is a symbolic link"
    case .fifo: "is a FIFO (named pipe), not a regular file: not read"
    case .characterDevice: "is a character device, not a regular file: not read"
    case .blockDevice: "is a block device, not a regular file: not read"
    case .socket: "is a socket, not a regular file: not read"
    case .other: "is not a regular file: not read"
    }
  }
}

func systemReason(_ e: Int32) -> String {
  switch e {
  case ENOENT: "no such file or directory"
  case EACCES: "cannot be read: permission denied"
  case ELOOP: "a loop of symbolic links"
  default: "cannot be read: \(String(cString: strerror(e)))"
  }
}

/// The kind of `path` itself (`follow: false`: a link is a link) and its identity.
func fileKind(_ path: String, follow: Bool) throws(FileError) -> (kind: FileKind, id: FileID) {
  var st = stat()
  guard (follow ? stat(path, &st) : lstat(path, &st)) == 0 else { throw FileError(path: path, reason: systemReason(errno)) }
  return (FileKind(st), FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
}

struct FileID: Hashable { var device: UInt64; var inode: UInt64 }

/// The whole of a regular file, at most `limit` bytes: the kind is checked
/// before the file is opened (a device is never opened), and again on the
/// opened descriptor, which is non-blocking in case the path changed between.
func readRegularFile(_ path: String, limit: Int, what: String) throws(FileError) -> [UInt8] {
  let (kind, _) = try fileKind(path, follow: true)
  if let why = kind.notAFile { throw FileError(path: path, reason: why) }
  func tooBig(_ n: Int) -> FileError {
    FileError(path: path, reason: "is \(n) bytes, over the limit of \(limit) bytes for \(what)")
  }
  if case .regular(let size) = kind, size > limit { throw tooBig(size) }
  let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
  guard fd >= 0 else { throw FileError(path: path, reason: systemReason(errno)) }
  let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
  var st = stat()
  guard fstat(fd, &st) == 0 else { throw FileError(path: path, reason: systemReason(errno)) }
  if let why = FileKind(st).notAFile { throw FileError(path: path, reason: why) }
  // The size stat gave may be wrong (a file still growing, /proc): read one
  // byte past the limit to know.
  let data: Data
  do { data = try handle.read(upToCount: limit + 1) ?? Data() } catch {
    throw FileError(path: path, reason: "cannot be read: \(error.localizedDescription)")
  }
  if data.count > limit { throw tooBig(data.count) }
  return [UInt8](data)
}

/// Where `path` leads once every link is followed, or why it leads nowhere.
func resolvedPath(_ path: String) throws(FileError) -> String {
  guard let p = realpath(path, nil) else { throw FileError(path: path, reason: systemReason(errno)) }
  defer { free(p) }
  return String(cString: p)
}
