"""Issue 12's table of faults, re-measured: for each row, records lost / counted / spooled / replayed.

    python benchmarks/bench_faults.py [--quick] [--rows burst,outage,...]

Every row runs in fresh processes against real services (redis-server killed, restarted, paused;
LMDB on a small tmpfs; a LocalCluster), with the project's default settings unless the row says
otherwise. ``lost`` = records the program produced that are not in the store at the end (for rows
where the broker itself loses data, what ``status`` reports as sequence gaps is shown next to it).
``--quick`` scales the big rows down ten times. Disk-full rows need root (tmpfs); they are skipped
otherwise. Sleeps here shape the faults (an 8 s outage); they never wait for data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, free_port


class Redis:
    def __init__(self, workdir: str, appendonly: bool = False, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir
        self.appendonly = appendonly
        self.proc = None
        self.start()

    def start(self) -> None:
        args = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--dir", self.dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)


def env_for(tmp: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCEPT_")}
    env.update({"HOME": os.path.join(tmp, "home"), "FLOWCEPT_STORE_LMDB_PATH": os.path.join(tmp, "lmdb"),
                "FLOWCEPT_TRANSPORT_STATS_DIR": os.path.join(tmp, "stats"), "PYTHONPATH": ROOT})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def redis_env(tmp: str, r: Redis, **extra) -> dict:
    return env_for(tmp, FLOWCEPT_TRANSPORT_TYPE="redis_streams", FLOWCEPT_REDIS_PORT=r.port, **extra)


def run(code: str, env: dict, timeout: float = 900, args: tuple = ()) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one line ``RESULT {json}``."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res.setdefault("wall_s", round(wall, 1))
            return res
    return {"error": (out.stderr or out.stdout)[-800:], "wall_s": round(wall, 1)}


COUNT = """
import json, sys
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.registry import open_store
s = open_store(load_settings())
flt = json.loads(sys.argv[1])
ids = [d.get("task_id") for d in s.query(flt, projection=["task_id"])]
print("RESULT " + json.dumps({"stored": len(ids), "distinct": len(set(ids))}))
"""

CONSUME = """
import json, sys, time
from flowcept_dist.core.settings import load_settings
from flowcept_dist.transports.registry import create_consumer
c = create_consumer(load_settings()).start()
ok = c.wait_caught_up(float(sys.argv[1]))
c.stop()
st = c.stats
print("RESULT " + json.dumps({"caught_up": ok, "records_in": st.records_in, "dead": st.dead_lettered,
                              "healed": st.healed, "gaps": st.seqs.missing_total()}))
"""


def stored(env: dict, flt: dict | None = None) -> dict:
    return run(COUNT, env, args=(json.dumps(flt or {"type": "task"}),))


def consume(env: dict, wait_s: float = 60) -> dict:
    return run(CONSUME, env, args=(str(wait_s),))


def counters(res: dict) -> dict:
    return {k: res.get(k) for k in ("lost", "counted", "spooled", "replayed")}


# -- rows ----------------------------------------------------------------------------------------------

BURST = """
import json, sys, time
from flowcept_dist import Flowcept, flowcept_task
n, consumer = int(sys.argv[1]), sys.argv[2] == "1"
@flowcept_task
def tiny(x):
    return x + 1
def plain(x):
    return x + 1
t0 = time.perf_counter()
for i in range(n):
    plain(i)
t_plain = time.perf_counter() - t0
with Flowcept(workflow_name="burst", start_consumer=consumer, flush_timeout_s=600) as fc:
    t0 = time.perf_counter()
    for i in range(n):
        tiny(i)
    t_loop = time.perf_counter() - t0
    fc.flush(600)
st = fc.stats
print("RESULT " + json.dumps({"wf": fc.workflow_id, "counted": st.dropped_total, "spooled": st.spooled,
                              "replayed": st.replayed, "loop_s": round(t_loop, 2), "plain_s": round(t_plain, 3),
                              "per_call_us": round(1e6 * t_loop / n, 2)}))
"""


def row_burst(tmp: str, n: int, transport: str) -> dict:
    if transport == "direct":
        env = env_for(tmp)
        res = run(BURST, env, args=(str(n), "0"))
    else:
        r = Redis(tmp)
        try:
            env = redis_env(tmp, r)
            res = run(BURST, env, args=(str(n), "1"))
        finally:
            r.stop()
    if "error" in res:
        return res
    got = stored(env, {"type": "task", "workflow_id": res["wf"]})
    res["lost"] = n - got["stored"]
    res["duplicates"] = got["stored"] - got["distinct"]
    return res


OUTAGE = """
import json, sys, threading, time
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
n, rate = int(sys.argv[1]), float(sys.argv[2])
p = runtime.get_pipeline(load_settings())
t0 = time.monotonic()
for i in range(n):
    p.emit({"type": "task", "task_id": f"o-{i}", "status": "FINISHED", "used": {"i": i}})
    if i % 100 == 0:
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
print("PRODUCED", flush=True)
ok = p.flush(300)
st = p.stats
print("RESULT " + json.dumps({"flushed": ok, "counted": st.dropped_total, "spooled": st.spooled,
                              "replayed": st.replayed}))
runtime.shutdown_pipeline()
"""


def row_outage(tmp: str, n: int) -> dict:
    r = Redis(tmp, appendonly=True)
    env = redis_env(tmp, r)
    consumer = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume", "--name", "c"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        import redis

        while not redis.Redis(port=r.port).exists("flowcept") and time.monotonic() < deadline:
            time.sleep(0.1)  # the consumer is up (it created the stream and its group)
        duration = 10.0
        prod = subprocess.Popen([sys.executable, "-c", OUTAGE, str(n), str(n / duration)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        r.stop()  # Redis down for 8 s
        time.sleep(8.0)
        r.start()
        out, err = prod.communicate(timeout=600)
        res = next((json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT ")), {"error": err[-800:]})
        time.sleep(0.5)
        deadline = time.monotonic() + 120
        while stored(env)["stored"] < n and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, cerr = consumer.communicate(timeout=60)
        r.stop()
    got = stored(env)
    res.update(lost=n - got["stored"], duplicates=got["stored"] - got["distinct"])
    if got["stored"] < n:
        res["consumer_stderr"] = cerr.decode(errors="replace")[-600:]
    return res


DISKFULL = """
import json, sys, time
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
n = int(sys.argv[1])
p = runtime.get_pipeline(load_settings())
for i in range(n):
    p.emit({"type": "task", "task_id": f"d-{i}", "status": "FINISHED", "used": {"pad": "x" * 400, "i": i}})
p.flush(30)
st = p.stats
print("FULL " + json.dumps({"spooled": st.spooled, "counted": st.dropped_total, "error": st.last_error}), flush=True)
sys.stdin.readline()  # the parent makes room
ok = p.flush(600)
st = p.stats
print("RESULT " + json.dumps({"flushed": ok, "counted": st.dropped_total, "dropped": st.dropped,
                              "spooled": st.spooled, "replayed": st.replayed, "error": st.last_error}))
runtime.shutdown_pipeline()
"""


def row_disk_full(tmp: str, n: int, spool_on_same_disk: bool) -> dict:
    disk = os.path.join(tmp, "disk")
    os.makedirs(disk)
    size_mb = max(2, n * 160 // 1_000_000)  # ~16 MB for 100,000 records of ~500 bytes: the disk fills early
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", disk], capture_output=True).returncode:
        return {"skipped": "cannot mount a tmpfs (not root)"}
    try:
        extra = {"FLOWCEPT_STORE_LMDB_PATH": os.path.join(disk, "lmdb")}
        if spool_on_same_disk:
            extra["FLOWCEPT_SPOOL_DIR"] = os.path.join(disk, "spool")
        env = env_for(tmp, **extra)
        proc = subprocess.Popen([sys.executable, "-c", DISKFULL, str(n)], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        full = json.loads(proc.stdout.readline()[5:])
        subprocess.run(["mount", "-o", "remount,size=512m", disk], check=True)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=600)
        res = next((json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT ")), {"error": err[-800:]})
        got = stored(env)
        res.update(lost=n - got["stored"], duplicates=got["stored"] - got["distinct"],
                   message_while_full=(full.get("error") or "")[:90])
        return res
    finally:
        subprocess.run(["umount", "-l", disk], capture_output=True)


EXIT_ONLY = """
from flowcept_dist import flowcept_task
@flowcept_task
def f(x):
    return x + 1
for i in range(50):
    f(i)
"""


def row_exit_only(tmp: str) -> dict:
    r = Redis(tmp)
    try:
        env = redis_env(tmp, r, FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S=60)
        out = subprocess.run([sys.executable, "-c", EXIT_ONLY], env=env, capture_output=True, text=True, timeout=120)
        c = consume(env, 30)
    finally:
        r.stop()
    got = stored(env, {"type": "task", "activity_id": "f"})
    return {"lost": 50 - got["stored"], "counted": 0, "spooled": 0, "replayed": 0,
            "stderr": out.stderr.strip()[:120], "consumer": c}


POISON = """
import json, orjson, sys, redis
from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core.settings import load_settings
mode = sys.argv[1]
@flowcept_task
def work(x, extra=None):
    return x
if mode == "longkey":
    with Flowcept(workflow_id="w" * 600, workflow_name="long") as fc:
        for i in range(1000):
            work(i)
    st = fc.stats
    print("RESULT " + json.dumps({"produced": 1000, "counted": st.dropped_total, "dead": st.dead_lettered,
                                  "spooled": st.spooled, "replayed": st.replayed, "wf": fc.workflow_id}))
elif mode == "hostile":
    with Flowcept(workflow_name="hostile") as fc:
        for i in range(998):
            work(i)
        work(1, extra=2 ** 64)
        work(2, extra="lone \\udc80")
    st = fc.stats
    print("RESULT " + json.dumps({"produced": 1000, "counted": st.dropped_total, "dead": st.dead_lettered,
                                  "spooled": st.spooled, "replayed": st.replayed, "wf": fc.workflow_id}))
else:  # raw entries from another producer: one poison in each batch of 1000
    s = load_settings()
    r = redis.Redis(port=s.redis.port)
    bad = {"status": {"type": "task", "task_id": "p1", "status": ["X"]},
           "attempt": {"type": "task", "task_id": "p2", "attempt": "2"},
           "typelist": {"type": ["task"], "task_id": "p3"}}[mode]
    r.xadd(s.redis.stream, {b"d": orjson.dumps([{"type": "task", "task_id": "p2", "attempt": 1}])})
    r.xadd(s.redis.stream, {b"d": orjson.dumps([bad] + [{"type": "task", "task_id": f"g-{i}"} for i in range(999)])})
    r.xadd(s.redis.stream, {b"d": orjson.dumps([{"type": "task", "task_id": f"after-{i}"} for i in range(1000)])})
    print("RESULT " + json.dumps({"produced": 2001}))
"""


def row_poison(tmp: str, mode: str) -> dict:
    r = Redis(tmp)
    try:
        env = redis_env(tmp, r, FLOWCEPT_TELEMETRY_ENABLED="false") if mode not in ("longkey", "hostile") \
            else env_for(tmp, FLOWCEPT_TELEMETRY_ENABLED="false")
        res = run(POISON, env, args=(mode,))
        if mode in ("longkey", "hostile"):
            got = stored(env, {"type": "task", "workflow_id": res.get("wf")})
            res["lost"] = res["produced"] - got["stored"]
            return res
        c = consume(env, 60)
        import redis

        cli = redis.Redis(port=r.port)
        pending = sum(g["pending"] for g in cli.xinfo_groups("flowcept"))
        dead = cli.xlen("flowcept:dead")
        again = consume(env, 10)
    finally:
        r.stop()
    got = stored(env)
    # 2,000 good records around one poison record (p2 with attempt 1 is good; in "attempt" mode the
    # poison shares its id)
    return {"lost": 2000 - got["stored"], "counted": dead, "spooled": 0, "replayed": 0, "pending_after": pending,
            "consumer_caught_up": c.get("caught_up"), "restarted_consumer_ok": "error" not in again}


RESTART = """
import json, sys
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
phase, n = sys.argv[1], int(sys.argv[2])
p = runtime.get_pipeline(load_settings())
for i in range(n):
    p.emit({"type": "task", "task_id": f"{phase}-{i}", "status": "FINISHED"})
ok = p.flush(60)
print("RESULT " + json.dumps({"flushed": ok, "counted": p.stats.dropped_total}))
runtime.shutdown_pipeline()
"""

GAPS = """
import json, time
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
from flowcept_dist.transports.registry import create_consumer
import subprocess, sys, os, signal
s = load_settings(overrides={"transport.batch_size": 100})
p = runtime.Pipeline(s)
c = create_consumer(s).start()
for i in range(1000):
    p.emit({"type": "task", "task_id": f"first-{i}"})
p.flush(30); c.wait_caught_up(30); c.stop()
for i in range(9000):
    p.emit({"type": "task", "task_id": f"lost-{i}"})
p.flush(30)
print("KILL", flush=True)
sys.stdin.readline()
for i in range(1000):
    p.emit({"type": "task", "task_id": f"later-{i}"})
p.flush(60)
c = create_consumer(s).start(); c.wait_caught_up(60); c.stop()
p.shutdown(10)
print("RESULT " + json.dumps({"counted": p.stats.dropped_total}))
"""


def row_restart_no_aof(tmp: str) -> dict:
    r = Redis(tmp)
    env = redis_env(tmp, r, FLOWCEPT_TELEMETRY_ENABLED="false")
    consumer = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume", "--name", "c"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run(RESTART, env, args=("before", "1000"))
        time.sleep(1.0)
        r.kill()
        r.start()
        res = run(RESTART, env, args=("later", "1000"))
        deadline = time.monotonic() + 60
        while stored(env, {"type": "task", "task_id": {"$regex": "^later-"}})["stored"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, err = consumer.communicate(timeout=60)
        r.stop()
    got = stored(env, {"type": "task", "task_id": {"$regex": "^later-"}})
    res.update(lost=1000 - got["stored"], spooled=0, replayed=0, healed_message="recreated" in err)
    return res


def row_broker_loss_seen(tmp: str) -> dict:
    r = Redis(tmp)
    env = redis_env(tmp, r, FLOWCEPT_TELEMETRY_ENABLED="false")
    try:
        proc = subprocess.Popen([sys.executable, "-c", GAPS], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("KILL")
        r.kill()
        r.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=300)
    finally:
        r.stop()
    st = json.loads(subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", "status", "--json"], env=env,
                                   capture_output=True, text=True).stdout)
    got = stored(env)
    return {"lost": 11000 - got["stored"], "counted": sum(st["dropped"].values()), "spooled": 0, "replayed": 0,
            "status_sequence_gaps": st.get("sequence", {}).get("unexplained")}


WRITER = """
import json, sys, time
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
name, n = sys.argv[1], int(sys.argv[2])
store = LMDBStore(load_settings())
pad = "y" * 1000
t0 = time.perf_counter(); failed = 0
for b in range(0, n, 100):
    try:
        store.write_batch([{"type": "task", "task_id": f"{name}-{i}", "used": {"pad": pad}} for i in range(b, b + 100)])
    except Exception as exc:
        failed += 100
store.close()
print("RESULT " + json.dumps({"failed": failed, "s": time.perf_counter() - t0}))
"""

READER = """
import json, sys, time
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
store = LMDBStore(load_settings())
errors = reads = 0
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    try:
        store.count({"type": "task"}); reads += 1
    except Exception:
        errors += 1
print("RESULT " + json.dumps({"reads": reads, "errors": errors}))
"""


def row_lmdb_writers(tmp: str, per: int) -> dict:
    out = {}
    for label, size in (("small_map", "0.01"), ("big_map", "64")):
        sub = os.path.join(tmp, label)
        env = env_for(sub, FLOWCEPT_STORE_LMDB_MAP_SIZE_GB=size, FLOWCEPT_STORE_LMDB_SYNC="false")
        run("from flowcept_dist.stores.lmdb import LMDBStore; LMDBStore().close(); print('RESULT {}')", env)
        reader = subprocess.Popen([sys.executable, "-c", READER, "8"], env=env, stdout=subprocess.PIPE, text=True)
        ws = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{k}", str(per)], env=env, stdout=subprocess.PIPE,
                               text=True) for k in range(8)]
        res = [json.loads(w.communicate(timeout=600)[0].split("RESULT ")[1]) for w in ws]
        rres = json.loads(reader.communicate(timeout=60)[0].split("RESULT ")[1])
        got = stored(env)
        out[label] = {"lost": 8 * per - got["stored"], "failed_writes": sum(x["failed"] for x in res),
                      "writer_s": round(max(x["s"] for x in res), 2), "reader_errors": rres["errors"]}
    s = out["small_map"]
    return {"lost": s["lost"], "counted": s["failed_writes"], "spooled": 0, "replayed": 0,
            "reader_errors": s["reader_errors"],
            "slowdown_vs_big_map": round(s["writer_s"] / max(out["big_map"]["writer_s"], 1e-9), 2)}


HUNG = """
import json, time
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
p = runtime.get_pipeline(load_settings())
for i in range(3000):
    p.emit({"type": "task", "task_id": f"h-{i}", "status": "FINISHED"})
t0 = time.monotonic()
runtime.shutdown_pipeline()
st = p.stats
print("RESULT " + json.dumps({"exit_s": round(time.monotonic() - t0, 2), "counted": st.dropped_total,
                              "spooled": st.spooled, "exported": st.exported, "emitted": st.emitted}))
"""


def row_hung(tmp: str) -> dict:
    r = Redis(tmp)
    env = redis_env(tmp, r, FLOWCEPT_TELEMETRY_ENABLED="false")
    try:
        r.proc.send_signal(signal.SIGSTOP)
        res = run(HUNG, env, timeout=300)
        r.proc.send_signal(signal.SIGCONT)
        rep = subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", "replay"], env=env, capture_output=True,
                             text=True, timeout=300)
        c = consume(env, 60)
    finally:
        r.stop()
    got = stored(env)
    res.update(lost=3000 - got["stored"], duplicates=got["stored"] - got["distinct"], replayed=res.get("spooled"),
               replay_cmd=rep.stdout.strip()[:80], consumer_ok=c.get("caught_up"))
    return res


REPR = """
import json, threading, time
from flowcept_dist import Flowcept, flowcept_task
gate = threading.Event()
class Hang:
    def __repr__(self):
        gate.wait(3600)
        return "Hang()"
@flowcept_task
def takes(obj, i):
    return i
t0 = time.monotonic()
with Flowcept(workflow_name="repr", flush_timeout_s=float(__import__("sys").argv[1])) as fc:
    for i in range(3):
        takes(Hang(), i)
left = time.monotonic() - t0
print("RESULT " + json.dumps({"leave_s": round(left, 2), "counted": fc.stats.dropped_total}), flush=True)
gate.set()
"""

STRERR = """
import json
from flowcept_dist import Flowcept, flowcept_task
class Bad(Exception):
    def __str__(self):
        raise RuntimeError("no str")
@flowcept_task
def fails():
    raise Bad()
got = None
try:
    with Flowcept(workflow_name="strerr") as fc:
        fails()
except BaseException as exc:
    got = type(exc).__name__
t = fc.db.query({"type": "task", "workflow_id": fc.workflow_id})
print("RESULT " + json.dumps({"user_got": got, "recorded": [x.get("status") for x in t]}))
"""

DASK_RETRY = """
import json, os, sys, tempfile
import distributed
from flowcept_dist import Flowcept
marker = tempfile.mkdtemp()
def flaky(x):
    p = os.path.join(marker, str(x))
    if not os.path.exists(p):
        open(p, "w").close()
        raise RuntimeError("first attempt fails")
    return x
def double(x):
    return 2 * x
if __name__ == "__main__":
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cl, \\
            distributed.Client(cl) as client:
        with Flowcept(workflow_name="retry", dask_client=client) as fc:
            a = client.submit(flaky, 1, retries=2, pure=False); a.result()
            b = client.submit(flaky, 2, pure=False)
            try:
                b.result()
            except RuntimeError:
                pass
            client.retry([b]); b.result()
    recs = {r["task_id"]: r for r in fc.db.query({"type": "task", "workflow_id": fc.workflow_id})}
    out = {"retries=": recs[a.key]["status"], "client.retry": recs[b.key]["status"],
           "attempts_kept": [len(recs[k].get("attempts", {})) for k in (a.key, b.key)]}
    wfs = []
    for _ in range(2):
        with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cl, \\
                distributed.Client(cl) as client:
            with Flowcept(workflow_name="pure", dask_client=client) as fc2:
                client.gather(client.map(double, range(5)))
            wfs.append(fc2.workflow_id)
    out["pure_rerun_tasks_per_workflow"] = [len(fc2.db.query({"type": "task", "workflow_id": w})) for w in wfs]
    print("RESULT " + json.dumps(out))
"""

SHORT_LIVED = """
import json, sys, threading
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.registry import open_store
n = int(sys.argv[1])
s = load_settings(overrides={"telemetry.enabled": False, "transport.flush_interval_s": 0.01})
emitted = exported = late = timeouts = 0
for k in range(n):
    p = runtime.Pipeline(s)
    stop = threading.Event(); sent = [0]
    def produce():
        while not stop.is_set() and sent[0] < 2000:
            p.emit({"type": "task", "task_id": f"r{k}-{sent[0]}"}); sent[0] += 1
    t = threading.Thread(target=produce); t.start()
    while sent[0] < 20:
        pass
    p.shutdown(10); stop.set(); t.join()
    emitted += sent[0]; exported += p.stats.exported
    late += p.stats.dropped.get("after_shutdown", 0); timeouts += p.stats.dropped.get("shutdown_timeout", 0)
st = open_store(s)
print("RESULT " + json.dumps({"emitted": emitted, "exported": exported, "after_shutdown": late,
                              "shutdown_timeout": timeouts, "stored": st.count({"type": "task"})}))
"""


def row_short_lived(tmp: str, n: int) -> dict:
    res = run(SHORT_LIVED, env_for(tmp), args=(str(n),))
    if "error" in res:
        return res
    # records emitted after shutdown returned are refused and counted (after_shutdown); the row is about
    # records accepted before it: lost = accepted - stored, counted = shutdown_timeout
    res.update(lost=res["emitted"] - res["after_shutdown"] - res["stored"], counted=res["shutdown_timeout"],
               spooled=0, replayed=0)
    return res


BUDGET = """
import json, sys, time
from flowcept_dist import Flowcept, flowcept_task
n = int(sys.argv[1])
@flowcept_task
def tiny(x):
    return x + 1
with Flowcept(workflow_name="budget", flush_timeout_s=5) as fc:
    tiny(0)
    lat = []
    for i in range(n):
        t0 = time.perf_counter(); tiny(i); lat.append(time.perf_counter() - t0)
lat.sort()
st = fc.stats
print("RESULT " + json.dumps({"p50_us": round(1e6 * lat[n // 2], 2), "p99_us": round(1e6 * lat[int(n * .99)], 2),
                              "p999_us": round(1e6 * lat[int(n * .999)], 1), "max_ms": round(1e3 * lat[-1], 2),
                              "spooled": st.spooled, "counted": st.dropped_total}))
"""


def row_budget(tmp: str, n: int) -> dict:
    """Per-call latency of a decorated function: healthy destination vs broker down (spooling)."""
    out = {}
    out["healthy_direct"] = run(BUDGET, env_for(os.path.join(tmp, "a")), args=(str(n),))
    out["broker_down_spooling"] = run(BUDGET, env_for(os.path.join(tmp, "b"), FLOWCEPT_TRANSPORT_TYPE="redis_streams",
                                                      FLOWCEPT_REDIS_PORT=free_port()), args=(str(n),))
    out["queue_full_spooling"] = run(BUDGET, env_for(os.path.join(tmp, "c"), FLOWCEPT_TRANSPORT_TYPE="redis_streams",
                                                     FLOWCEPT_REDIS_PORT=free_port(), FLOWCEPT_TRANSPORT_MAX_QUEUE=2000),
                                     args=(str(n),))
    return out


# -- driver ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="scale the big rows down ten times")
    ap.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    args = ap.parse_args()
    k = 10 if args.quick else 1
    rows = [
        ("burst_direct", "burst of 200,000 @flowcept_task calls, default queue (direct)", lambda t: row_burst(t, 200_000 // k, "direct")),
        ("burst_redis", "burst of 200,000 @flowcept_task calls, default queue (Redis)", lambda t: row_burst(t, 200_000 // k, "redis")),
        ("outage", "Redis down 8 s during a run (60,002 records)", lambda t: row_outage(t, 60_002 // k)),
        ("disk_full", "disk full under LMDB (direct), spool on another disk", lambda t: row_disk_full(t, 100_002 // k, False)),
        ("disk_full_same", "disk full under LMDB, spool on the same full disk", lambda t: row_disk_full(t, 100_002 // k, True)),
        ("exit_only", "decorators only on redis_streams, first export at exit", row_exit_only),
        ("poison_longkey", "Flowcept(workflow_id=600 chars), 1,000 tasks (direct)", lambda t: row_poison(t, "longkey")),
        ("poison_status", "list status in a batch (Redis consumer)", lambda t: row_poison(t, "status")),
        ("poison_attempt", "string attempt in a batch (Redis consumer)", lambda t: row_poison(t, "attempt")),
        ("poison_typelist", "stream entry whose type is a list", lambda t: row_poison(t, "typelist")),
        ("hostile_values", "int >= 2**64 and a lone surrogate in a batch of 1,000", lambda t: row_poison(t, "hostile")),
        ("restart_no_aof", "Redis restarted without AOF while the consumer runs", row_restart_no_aof),
        ("broker_loss_seen", "records lost by a Redis restart without persistence", row_broker_loss_seen),
        ("lmdb_writers", "8 writers growing a small LMDB map", lambda t: row_lmdb_writers(t, 3000 // max(1, k // 2))),
        ("hung_broker", "hung broker (SIGSTOPped Redis), 3,000 records at exit", row_hung),
        ("hanging_repr", "an argument whose __repr__ hangs (flush_timeout_s=5)", lambda t: run(REPR, env_for(t), args=("5",))),
        ("str_raises", "an exception whose __str__ raises", lambda t: run(STRERR, env_for(t))),
        ("dask_retry", "Dask retries / client.retry / pure graph in a new workflow",
         lambda t: run(DASK_RETRY, env_for(t, FLOWCEPT_TELEMETRY_ENABLED="false"))),
        ("short_lived", "1,985 short-lived pipelines closed while a thread emits", lambda t: row_short_lived(t, 1985 // k)),
        ("budget", "per-call latency while spooling (the budget)", lambda t: row_budget(t, 200_000 // k)),
    ]
    wanted = set(args.rows.split(",")) if args.rows else None
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)", flush=True)
    for name, label, fn in rows:
        if wanted and name not in wanted:
            continue
        tmp = tempfile.mkdtemp(prefix=f"bench-faults-{name}-")
        t0 = time.monotonic()
        try:
            res = fn(tmp)
        except Exception as exc:
            res = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        res["row_s"] = round(time.monotonic() - t0, 1)
        head = "  ".join(f"{k}={res.get(k)}" for k in ("lost", "counted", "spooled", "replayed") if k in res)
        rest = {k: v for k, v in res.items() if k not in ("lost", "counted", "spooled", "replayed")}
        print(f"{label}\n    {head}  {json.dumps(rest)}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
