"""The device runtime on CPUs this machine is not (``edgemed cpu-check``, ``make cpu-check``).

A bundle is validated on the machine that built it; a device may have another CPU (SSE4.2-only or AVX2 x86, Arm
cores with or without the dot product), where numpy and ONNX Runtime run other kernels. This package runs the device
command on real recordings under QEMU's user mode for each such CPU and compares every event with this machine's.

| module | what |
|---|---|
| ``targets`` | the emulated CPUs (typed), and the Arm ``/proc/cpuinfo`` each shows |
| ``environment`` | QEMU, a Python of the target architecture, the device packages, a copy of ``runtime/`` |
| ``cases`` | the real inputs of each bundle's scenario, written as the device reads them |
| ``compare`` | event-by-event comparison and EC57 counts per target |
| ``check`` | the whole run and its report document |
| ``report`` | the report as markdown |
"""
