import Foundation
import FoundationXML

/// An element of a document read with `XMLParser`: what the domain, interface
/// and journal readers ask of an element, and no more.
///
/// Not FoundationXML's `XMLDocument`: on Linux each document it parses stays
/// allocated for good (~14 KB for a 770-byte domain, measured), and the agent
/// parses one per domain at start and one per libvirt event after, so its
/// memory grew with every event. `XMLParser` streams and frees what it read.
final class XMLTreeElement {
  /// As written, with its prefix (`vfshift:qos`), as `XMLElement.name` gives it.
  let name: String
  let localName: String
  /// The namespace URI, when the element is in one.
  let uri: String?
  /// Sorted by name: `XMLParser` hands them over unordered, and a fixed order
  /// keeps `xmlString` the same from one read to the next.
  private(set) var attributes: [(name: String, value: String)]
  fileprivate(set) var children: [Child] = []

  enum Child {
    case element(XMLTreeElement)
    case text(String)
  }

  init(name: String, localName: String, uri: String?, attributes: [(name: String, value: String)]) {
    self.name = name; self.localName = localName; self.uri = uri; self.attributes = attributes
  }

  /// Child elements of that (prefixed) name, in document order.
  func elements(forName name: String) -> [XMLTreeElement] {
    children.compactMap { if case .element(let e) = $0, e.name == name { e } else { nil } }
  }

  var childElements: [XMLTreeElement] {
    children.compactMap { if case .element(let e) = $0 { e } else { nil } }
  }

  func attribute(forName name: String) -> String? {
    attributes.first { $0.name == name }?.value
  }

  /// Sets an attribute the element already has; one it lacks stays absent.
  func replaceAttribute(_ name: String, with value: String) {
    if let i = attributes.firstIndex(where: { $0.name == name }) { attributes[i].value = value }
  }

  func removeAttributes(where drop: (String) -> Bool) {
    attributes.removeAll { drop($0.name) }
  }

  func append(_ child: XMLTreeElement) { children.append(.element(child)) }

  func removeChildElements(where drop: (XMLTreeElement) -> Bool) {
    children.removeAll { if case .element(let e) = $0 { drop(e) } else { false } }
  }

  /// The text of the element and everything in it, entities resolved.
  var stringValue: String {
    var out = ""
    func collect(_ e: XMLTreeElement) {
      for child in e.children {
        switch child {
        case .text(let t): out += t
        case .element(let c): collect(c)
        }
      }
    }
    collect(self)
    return out
  }

  /// The element as XML text: attributes in double quotes, empty elements
  /// closed in place, namespace declarations where the document had them.
  var xmlString: String {
    var out = ""
    func escape(_ s: String, attribute: Bool) -> String {
      guard s.utf8.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">")
                                       || (attribute && $0 == UInt8(ascii: "\"")) }) else { return s }
      var r = ""
      for c in s {
        switch c {
        case "&": r += "&amp;"
        case "<": r += "&lt;"
        case ">": r += "&gt;"
        case "\"" where attribute: r += "&quot;"
        default: r.append(c)
        }
      }
      return r
    }
    func write(_ e: XMLTreeElement) {
      out += "<" + e.name
      for (name, value) in e.attributes { out += " \(name)=\"\(escape(value, attribute: true))\"" }
      if e.children.isEmpty { out += "/>"; return }
      out += ">"
      for child in e.children {
        switch child {
        case .text(let t): out += escape(t, attribute: false)
        case .element(let c): write(c)
        }
      }
      out += "</" + e.name + ">"
    }
    write(self)
    return out
  }
}

/// Reads `xml` into a tree and returns its root element, or nil when the
/// text has none. Like libxml2's recovery mode that `XMLDocument` used, a
/// document cut short gives the elements read up to the cut, so what is
/// missing is what gets reported.
func parseXMLTree(_ xml: String) -> XMLTreeElement? {
  let parser = XMLParser(data: Data(xml.utf8))
  let builder = XMLTreeBuilder()
  parser.delegate = builder
  parser.shouldProcessNamespaces = true
  parser.shouldReportNamespacePrefixes = true
  parser.shouldResolveExternalEntities = false
  _ = parser.parse()
  return builder.root
}

private final class XMLTreeBuilder: NSObject, XMLParserDelegate {
  var root: XMLTreeElement?
  var open: [XMLTreeElement] = []
  /// `xmlns` declarations reported just before the element that makes them.
  var declarations: [(name: String, value: String)] = []

  func parser(_ parser: XMLParser, didStartMappingPrefix prefix: String, toURI namespaceURI: String) {
    declarations.append((prefix.isEmpty ? "xmlns" : "xmlns:\(prefix)", namespaceURI))
  }

  func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
              qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
    let attributes = (declarations + attributeDict.map { ($0.key, $0.value) }).sorted { $0.name < $1.name }
    declarations = []
    let e = XMLTreeElement(name: qName ?? elementName, localName: elementName,
                           uri: namespaceURI.flatMap { $0.isEmpty ? nil : $0 }, attributes: attributes)
    if let parent = open.last { parent.children.append(.element(e)) } else if root == nil { root = e }
    open.append(e)
  }

  func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
    _ = open.popLast()
  }

  func parser(_ parser: XMLParser, foundCharacters string: String) {
    guard let e = open.last else { return }
    // The parser may hand one run of text over in pieces: keep it one node.
    if case .text(let t)? = e.children.last {
      e.children[e.children.count - 1] = .text(t + string)
    } else {
      e.children.append(.text(string))
    }
  }

  func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
    self.parser(parser, foundCharacters: String(decoding: CDATABlock, as: UTF8.self))
  }
}
