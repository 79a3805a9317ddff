"""``flowcept-dist check``: try every configured service and say what works."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("check", help="try the configured transport and store",
                       description="Load the settings, reach the transport and the store, and report. "
                                   "Exits non-zero naming what does not work and how to fix it.")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.core.settings import load_settings, settings_file_path
    from flowcept_dist.stores.registry import open_store
    from flowcept_dist.transports.registry import create_emitter

    settings = load_settings()
    failures = 0
    print(f"settings: {settings_file_path() or 'built-in defaults (no settings file)'}")
    print(f"capture: {'on' if settings.capture.enabled else 'OFF (capture.enabled: false)'}")
    checks = []
    if settings.transport.type != "direct":
        checks.append((f"transport {settings.transport.type}", lambda: create_emitter(settings).check()))
    checks.append((f"store {settings.store.type}", lambda: _check_store(open_store, settings)))
    if settings.telemetry.enabled:
        checks.append(("telemetry", lambda: _check_telemetry(settings)))
    for name, fn in checks:
        try:
            detail = fn()
            print(f"  ok    {name}: {detail}")
        except Exception as exc:
            failures += 1
            print(f"  FAIL  {name}: {exc}")
    if failures:
        print(f"{failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


def _check_store(open_store, settings) -> str:
    store = open_store(settings)
    try:
        return f"{store.describe()} ({store.count()} records)"
    finally:
        store.close()


def _check_telemetry(settings) -> str:
    from flowcept_dist.core.telemetry import TelemetrySampler

    s = TelemetrySampler(settings)
    try:
        s.start()
        parts = [k for k in ("cpu", "memory", "disk", "network", "gpu") if k in (s.latest_full or {})]
        gpu = "" if "gpu" in parts or not settings.telemetry.gpu else f"; no GPU ({s.gpu_error})"
        return ", ".join(parts) + gpu
    finally:
        s.stop()
