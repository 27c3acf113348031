import VFShiftCore
print("vfshift")
