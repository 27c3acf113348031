// Live domain XML as libvirt 9.0 + QEMU 7.2 print it for a running guest
// (`virsh dumpxml`), trimmed to what the inventory reads plus some neighbours
// it must skip. Kept in Swift so the test target needs no resources.

enum Fixture {
  static let savedBridgeNIC = """
    <interface type='bridge'>
      <mac address='52:54:00:12:00:11'/>
      <source bridge='vfsbr0'/>
      <target dev='vnet4'/>
      <model type='virtio'/>
      <alias name='ua-net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    """

  static let guest = """
    <domain type='qemu' id='7'>
      <name>vfs-g3</name>
      <uuid>5a1f3e0c-8d2b-4c55-9e0f-0123456789ab</uuid>
      <metadata>
        <vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/>
        <other:thing xmlns:other="https://example.org/other/1" class="ignored"/>
        <vfshift-journal:journal xmlns:vfshift-journal="https://vfshift.dev/ns/journal/1" op="promote" pool="vfs-pool" oldAlias="ua-net0" newAlias="ua-vfshift-net0" step="detaching" startedAtMs="1718000000123"><vfshift-journal:saved>&lt;interface type='bridge'&gt;&lt;mac address='52:54:00:12:00:11'/&gt;&lt;source bridge='vfsbr0'/&gt;&lt;model type='virtio'/&gt;&lt;alias name='ua-net0'/&gt;&lt;/interface&gt;</vfshift-journal:saved></vfshift-journal:journal>
      </metadata>
      <memory unit='KiB'>131072</memory>
      <vcpu placement='static'>1</vcpu>
      <os>
        <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
        <kernel>/var/lib/vfshift-testbed/vmlinuz</kernel>
      </os>
      <devices>
        <emulator>/usr/bin/qemu-system-x86_64</emulator>
        <controller type='pci' index='0' model='pci-root'>
          <alias name='pci.0'/>
        </controller>
        <interface type='bridge'>
          <mac address='52:54:00:12:00:11'/>
          <source bridge='vfsbr0'/>
          <target dev='vnet4'/>
          <model type='virtio'/>
          <alias name='ua-net0'/>
          <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
        </interface>
        <interface type='direct'>
          <mac address='52:54:00:AB:CD:EF'/>
          <source network='vfs-pool' portid='0b6e1c1c-7d5e-4a39-8a8c-9a3f0cbd1a11' dev='vfsvf1' mode='passthrough'/>
          <target dev='macvtap2'/>
          <model type='virtio'/>
          <alias name='ua-vfshift-net0'/>
          <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
        </interface>
        <interface type='network'>
          <mac address='52:54:00:00:00:99'/>
          <source network='default' portid='1d1e1f20-0000-4000-8000-000000000001' bridge='virbr0'/>
          <target dev='vnet5'/>
          <model type='e1000'/>
          <alias name='net2'/>
        </interface>
        <interface type='hostdev' managed='yes'>
          <mac address='52:54:00:12:00:11'/>
          <source network='vf-pool'>
            <address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x5'/>
          </source>
          <teaming type='transient' persistent='ua-net0'/>
          <alias name='ua-vf0'/>
          <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
        </interface>
        <serial type='file'>
          <source path='/var/log/vfshift-testbed/vfs-g3.serial'/>
          <alias name='serial0'/>
        </serial>
      </devices>
    </domain>
    """
}
