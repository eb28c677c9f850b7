"""XR data: device/task catalogs, the on-device synthetic federation."""
