#ifndef VFSHIFT_CLIBVIRT_SHIM_H
#define VFSHIFT_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif
