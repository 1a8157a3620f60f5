#!/usr/bin/env python3
"""Minimal `vulkaninfo --summary` stand-in (python3 stdlib only, via ctypes): loads
libvulkan.so.1, creates an instance and lists the physical devices. Exit 0 if at least
one device is found."""
import ctypes
import ctypes.util
import sys


def main():
    try:
        vk = ctypes.CDLL("libvulkan.so.1")
    except OSError as e:
        print("vkprobe: cannot load libvulkan.so.1:", e)
        return 2
    ver = ctypes.c_uint32(0)
    try:
        vk.vkEnumerateInstanceVersion(ctypes.byref(ver))
        v = ver.value
        print(f"vkprobe: loader instance version {v >> 22 & 0x7f}.{v >> 12 & 0x3ff}.{v & 0xfff}")
    except AttributeError:
        pass

    class AppInfo(ctypes.Structure):
        _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p),
                    ("pApplicationName", ctypes.c_char_p), ("applicationVersion", ctypes.c_uint32),
                    ("pEngineName", ctypes.c_char_p), ("engineVersion", ctypes.c_uint32),
                    ("apiVersion", ctypes.c_uint32)]

    class InstInfo(ctypes.Structure):
        _fields_ = [("sType", ctypes.c_int32), ("pNext", ctypes.c_void_p),
                    ("flags", ctypes.c_uint32), ("pApplicationInfo", ctypes.POINTER(AppInfo)),
                    ("enabledLayerCount", ctypes.c_uint32), ("ppEnabledLayerNames", ctypes.c_void_p),
                    ("enabledExtensionCount", ctypes.c_uint32), ("ppEnabledExtensionNames", ctypes.c_void_p)]

    app = AppInfo(0, None, b"vkprobe", 1, b"none", 1, (1 << 22) | (1 << 12))  # Vulkan 1.1
    ci = InstInfo(1, None, 0, ctypes.pointer(app), 0, None, 0, None)
    inst = ctypes.c_void_p()
    rc = vk.vkCreateInstance(ctypes.byref(ci), None, ctypes.byref(inst))
    if rc != 0:
        print(f"vkprobe: vkCreateInstance failed: VkResult {rc}")
        return 3
    n = ctypes.c_uint32(0)
    vk.vkEnumeratePhysicalDevices(inst, ctypes.byref(n), None)
    devs = (ctypes.c_void_p * max(1, n.value))()
    vk.vkEnumeratePhysicalDevices(inst, ctypes.byref(n), devs)
    print(f"vkprobe: {n.value} physical device(s)")
    types = {0: "OTHER", 1: "INTEGRATED_GPU", 2: "DISCRETE_GPU", 3: "VIRTUAL_GPU", 4: "CPU"}
    for i in range(n.value):
        buf = ctypes.create_string_buffer(8192)  # VkPhysicalDeviceProperties (< 1 KiB)
        vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(devs[i]), buf)
        raw = buf.raw
        api, drv, vendor, dev, dtype = (int.from_bytes(raw[o:o + 4], "little") for o in range(0, 20, 4))
        name = raw[20:276].split(b"\0", 1)[0].decode(errors="replace")
        print(f"  GPU{i}: {name}  type={types.get(dtype, dtype)}  vendor=0x{vendor:04x} device=0x{dev:04x}"
              f"  apiVersion={api >> 22 & 0x7f}.{api >> 12 & 0x3ff}.{api & 0xfff}  driverVersion=0x{drv:08x}")
    vk.vkDestroyInstance(inst, None)
    return 0 if n.value else 1


if __name__ == "__main__":
    sys.exit(main())
