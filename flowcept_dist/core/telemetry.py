"""Per-process telemetry sampler: one daemon thread keeps the latest sample.

A task's ``telemetry_at_start`` / ``telemetry_at_end`` is a reference to the
latest sample (no syscalls on the task's thread). Sources (cpu, memory, disk,
network, gpu) are switched in ``telemetry.*`` settings. GPUs: NVIDIA through
nvidia-ml-py, AMD through amdsmi; when neither library or driver is usable the
sampler logs one line and goes on without GPU data.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


class _NvidiaGPUs:
    def __init__(self) -> None:
        import pynvml  # provided by nvidia-ml-py

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def sample(self) -> list[dict]:
        nv = self._nvml
        out = []
        for i, h in enumerate(self._handles):
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            util = nv.nvmlDeviceGetUtilizationRates(h)
            entry = {"index": i, "vendor": "nvidia", "used_bytes": int(mem.used), "total_bytes": int(mem.total),
                     "gpu_percent": float(util.gpu), "memory_percent": float(util.memory)}
            try:
                entry["temperature_c"] = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
                entry["power_w"] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            except Exception:
                pass
            out.append(entry)
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


class _AmdGPUs:
    def __init__(self) -> None:
        import amdsmi

        amdsmi.amdsmi_init()
        self._smi = amdsmi
        self._handles = amdsmi.amdsmi_get_processor_handles()
        if not self._handles:
            raise RuntimeError("no AMD GPU found")

    def sample(self) -> list[dict]:
        smi = self._smi
        out = []
        for i, h in enumerate(self._handles):
            entry = {"index": i, "vendor": "amd"}
            try:
                act = smi.amdsmi_get_gpu_activity(h)
                entry["gpu_percent"] = float(act.get("gfx_activity", 0))
                entry["memory_percent"] = float(act.get("umc_activity", 0))
                entry["used_bytes"] = int(smi.amdsmi_get_gpu_memory_usage(h, smi.AmdSmiMemoryType.VRAM))
                entry["total_bytes"] = int(smi.amdsmi_get_gpu_memory_total(h, smi.AmdSmiMemoryType.VRAM))
            except Exception:
                pass
            out.append(entry)
        return out

    def close(self) -> None:
        try:
            self._smi.amdsmi_shut_down()
        except Exception:
            pass


def open_gpus():
    """First usable GPU backend, or (None, reason). Never raises."""
    reasons = []
    for backend in (_NvidiaGPUs, _AmdGPUs):
        try:
            return backend(), None
        except Exception as exc:  # ImportError, NVMLError (no driver), ...
            reasons.append(f"{backend.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    return None, "; ".join(reasons)


class TelemetrySampler:
    """Samples resources every ``interval_s`` in a daemon thread.

    ``latest_full`` is the most recent sample; ``latest`` is what tasks embed as
    ``telemetry_at_start`` / ``telemetry_at_end``: the same sample with
    ``telemetry.per_task: full``, or (default ``compact``) CPU and memory only
    (plus GPUs), because a task record carries two of them and the full disk
    and network counters would triple its size. Full samples go to the
    periodic telemetry records. Both are dicts replaced, never mutated, so
    readers on any thread take them without locking. ``on_sample`` (optional)
    is called on the sampler thread with each new full sample; it must not block.
    """

    def __init__(self, settings, on_sample=None) -> None:
        self.t = settings.telemetry
        self.on_sample = on_sample
        self.latest: dict | None = None
        self.latest_full: dict | None = None
        self.gpu_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpus = None
        self._pid = os.getpid()
        self.failures = 0

    def start(self) -> "TelemetrySampler":
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process()
        psutil.cpu_percent(None)  # prime the counters: the first call always says 0.0
        self._proc.cpu_percent(None)
        if self.t.gpu:
            self._gpus, reason = open_gpus()
            if self._gpus is None:
                self.gpu_error = reason
                log.info("flowcept_dist: no GPU telemetry on %s (%s)", socket.gethostname(), reason)
        self._publish(self.sample())
        self._thread = threading.Thread(target=self._run, name="flowcept-telemetry", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> dict:
        ps = self._psutil
        t = self.t
        out: dict = {"timestamp": time.time()}
        if t.cpu:
            out["cpu"] = {"percent_all": ps.cpu_percent(None), "process_percent": self._proc.cpu_percent(None)}
            try:
                out["cpu"]["load_avg_1m"] = os.getloadavg()[0]
            except OSError:
                pass
        if t.memory:
            vm = ps.virtual_memory()
            out["memory"] = {"percent": vm.percent, "used": vm.used, "available": vm.available,
                             "process_rss": self._proc.memory_info().rss}
        if t.disk:
            try:
                d = ps.disk_io_counters()
                if d is not None:
                    out["disk"] = {"read_bytes": d.read_bytes, "write_bytes": d.write_bytes,
                                   "read_count": d.read_count, "write_count": d.write_count}
            except Exception:
                pass
        if t.network:
            try:
                n = ps.net_io_counters()
                out["network"] = {"bytes_sent": n.bytes_sent, "bytes_recv": n.bytes_recv,
                                  "packets_sent": n.packets_sent, "packets_recv": n.packets_recv}
            except Exception:
                pass
        if self._gpus is not None:
            try:
                out["gpu"] = self._gpus.sample()
            except Exception as exc:
                self.failures += 1
                if self.failures == 1:
                    log.warning("flowcept_dist: GPU telemetry failed (%s); continuing without it", exc)
        return out

    def _publish(self, sample: dict) -> None:
        self.latest_full = sample
        if self.t.per_task == "full":
            self.latest = sample
        else:
            compact = {k: sample[k] for k in ("timestamp", "cpu", "gpu") if k in sample}
            mem = sample.get("memory")
            if mem is not None:
                compact["memory"] = {"percent": mem["percent"], "process_rss": mem["process_rss"]}
            self.latest = compact

    def _run(self) -> None:
        while not self._stop.wait(self.t.interval_s):
            try:
                s = self.sample()
                self._publish(s)
                if self.on_sample is not None:
                    self.on_sample(s)
            except Exception as exc:  # never kill the thread
                self.failures += 1
                if self.failures == 1:
                    log.warning("flowcept_dist: telemetry sample failed (%s); will keep trying", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and os.getpid() == self._pid:
            self._thread.join(2.0)
        if self._gpus is not None:
            self._gpus.close()
            self._gpus = None
