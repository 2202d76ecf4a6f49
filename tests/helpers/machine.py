"""What tests read about the machine they run on."""

from __future__ import annotations


def cpu_vendor() -> str | None:
    """/proc/cpuinfo's vendor_id (``AuthenticAMD``, ``GenuineIntel``), or None where there is
    none to read."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
