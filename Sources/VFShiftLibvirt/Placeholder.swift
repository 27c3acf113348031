import VFShiftCore
import CLibvirt
