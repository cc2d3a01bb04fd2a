#!/usr/bin/env bash
# Measure how a local testnet (testnet/up.sh, default config) keeps committing while one
# validator is faulty (issue 6: "one crashed validator must not stall the chain").
#
#   testnet/liveness.sh                 every case, each fault held 60 s (about 9 minutes)
#   HOLD=15 RATES=0 testnet/liveness.sh a quick look
#
# Cases: {kill -9 of a validator that is not the current leader, kill -9 of the current leader,
# 3|1 partition (iptables drops all UDP to and from the current leader's QUIC port on lo)}
# × {idle, `bftnode load` at 1000 tx/s}. For each: the committed-height rate over the HEALTHY
# seconds before the fault, then over the HOLD seconds of the fault, polling /status of every
# node every POLL_MS; the first commit after the fault and the longest gap between commits on
# the surviving nodes; when the faulty validator's election weight became 0 on a survivor
# (GET /validators, as `bftnode validators --output json` shows it); how long the restarted or
# healed validator took to catch up. The killed node is restarted with up.sh's command
# (`bftnode start --home DIR`, log appended to DIR/node.log, new pid written to nodes.txt).
# A summary table is printed at the end and saved with every sample in OUT/results.json.
#
# Uses the running testnet in testnet/data (restarting listed nodes that are down), or starts
# one with testnet/up.sh (and stops it at the end unless KEEP_TESTNET=1). The partition cases
# need root and iptables; they are skipped with a message otherwise. Rules are tagged
# `bftnode-liveness-<pid>` and removed on exit, Ctrl-C included.
#
# Environment (defaults in parentheses):
#   HOLD (60)          seconds each fault is held (the measurement window)
#   HEALTHY (10)       seconds of the healthy window right before each fault
#   WARMUP (3)         seconds of load before the healthy window starts
#   RATES ("0 1000")   load rates, tx/s; 0 = idle (the leader proposes empty blocks)
#   SIZE (100)         bytes per transaction value
#   FAULTS ("nonleader leader partition")
#   POLL_MS (100)      /status polling period per node
#   DRAIN (5)          seconds the load waits for its last commits (the fault is still held)
#   SETTLE_TIMEOUT (120) seconds to wait, before each case, for equal heights and no
#                      validator excluded (weight 0)
#   SETTLE_RATE (1000) tx/s of the 3 s load bursts that advance the chain while settling, so
#                      an excluded validator's failures leave the reputation window sooner
#   OUT (testnet/data/liveness)   results.json and the load logs
#   KEEP_TESTNET (0)   1: leave a testnet this script started running
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v python3 >/dev/null || { echo "liveness.sh: python3 is required" >&2; exit 1; }
case "${1:-}" in
  -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "liveness.sh: no arguments; configure with environment variables (see --help)" >&2; exit 2 ;;
esac

exec python3 - "$@" <<'PY'
import json, os, re, signal, subprocess, sys, threading, time, tomllib
import urllib.request, urllib.error

BIN = "target/release/bftnode"
DATA = "testnet/data"
NODES_FILE = f"{DATA}/nodes.txt"


def env_f(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"liveness.sh: {name} must be a number")


HOLD = env_f("HOLD", 60)
HEALTHY = env_f("HEALTHY", 10)
WARMUP = env_f("WARMUP", 3)
SIZE = int(env_f("SIZE", 100))
POLL = env_f("POLL_MS", 100) / 1000
DRAIN = env_f("DRAIN", 5)
SETTLE_TIMEOUT = env_f("SETTLE_TIMEOUT", 120)
SETTLE_RATE = env_f("SETTLE_RATE", 1000)
RATES = [float(r) for r in os.environ.get("RATES", "0 1000").split()]
FAULTS = os.environ.get("FAULTS", "nonleader leader partition").split()
OUT = os.environ.get("OUT", f"{DATA}/liveness")
KEEP = os.environ.get("KEEP_TESTNET", "0") == "1"
TAG = f"bftnode-liveness-{os.getpid()}"
for f in FAULTS:
    if f not in ("nonleader", "leader", "partition"):
        sys.exit(f"liveness.sh: unknown fault {f!r} in FAULTS (nonleader, leader, partition)")
if sys.argv[1:]:
    sys.exit("liveness.sh: no arguments; configure with environment variables (see the header)")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def get_json(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def pid_alive(pid):
    try:
        out = subprocess.run(["ps", "-p", str(pid), "-o", "stat=,args="],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        return False
    return bool(out) and not out.startswith("Z") and "bftnode" in out


class Node:
    def __init__(self, name, pid, rpc, home):
        self.name, self.pid, self.rpc, self.home = name, pid, rpc, home
        cfg = tomllib.load(open(os.path.join(home, "config.toml"), "rb"))
        self.p2p_port = int(cfg["p2p_listen"].rsplit(":", 1)[1])
        cons = cfg.get("consensus", {})
        self.tau_base_ms = cons.get("timeout_base_ms", 1000)
        self.delta_ms = cons.get("delta_ms", 100)
        self.index = None  # validator index, from /status

    def status(self, timeout=2.0):
        return get_json(self.rpc + "/status", timeout)

    def height(self):
        s = self.status()
        return None if s is None else s["committed_height"]


def read_nodes():
    nodes = []
    for line in open(NODES_FILE):
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        nodes.append(Node(line.split()[0], int(f["pid"]), f["rpc"], f["home"]))
    return nodes


def write_nodes(nodes):
    tmp = NODES_FILE + ".tmp"
    with open(tmp, "w") as f:
        for n in nodes:
            f.write(f"{n.name} pid={n.pid} rpc={n.rpc} home={n.home}\n")
    os.replace(tmp, NODES_FILE)


def start_node(n):
    """up.sh's command; the log is appended so the crash stays visible."""
    logf = open(os.path.join(n.home, "node.log"), "ab")
    p = subprocess.Popen([BIN, "start", "--home", n.home], stdout=logf, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, NO_COLOR="1"),
                         start_new_session=True)
    n.pid = p.pid


# ---- iptables ------------------------------------------------------------------------------

def iptables(*args):
    try:
        return subprocess.run(["iptables", "-w", *args], capture_output=True).returncode == 0
    except OSError:
        return False


class Partition:
    def __init__(self):
        self.rules = []

    def cut(self, port):
        for d in ("--dport", "--sport"):
            spec = ["INPUT", "-i", "lo", "-p", "udp", d, str(port),
                    "-m", "comment", "--comment", TAG, "-j", "DROP"]
            if not iptables("-I", *spec):
                raise RuntimeError("iptables -I " + " ".join(spec) + " failed")
            self.rules.append(spec)

    def heal(self):
        while self.rules:
            spec = self.rules.pop()
            if not iptables("-D", *spec):
                print(f"WARNING: could not remove: iptables -w -D {' '.join(spec)}", flush=True)


PARTITION = Partition()


def remove_stale_rules():
    """Rules of an earlier run that was killed (its pid is gone)."""
    try:
        out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True,
                             text=True).stdout
    except OSError:
        return
    for line in out.splitlines():
        m = re.search(r"bftnode-liveness-(\d+)", line)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            ok = iptables(*line.replace("-A ", "-D ", 1).split())
            log(f"removed a stale rule ({line}): {ok}")


# ---- sampling ------------------------------------------------------------------------------

class Sampler:
    """One thread per node polls /status every POLL s: (monotonic time, committed height)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.samples = {n.name: [] for n in nodes}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in nodes]
        for t in self.threads:
            t.start()

    def run(self, n):
        while not self.stop.is_set():
            t0 = time.monotonic()
            s = n.status(timeout=1.0)
            if s is not None:
                self.samples[n.name].append((time.monotonic(), s["committed_height"]))
            self.stop.wait(max(0.0, POLL - (time.monotonic() - t0)))

    def halt(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def timeline(self, names):
        """Instants at which the highest committed height over `names` rose, with it."""
        allp = sorted(p for nm in names for p in self.samples[nm])
        ev = []
        for t, h in allp:
            if not ev or h > ev[-1][1]:
                ev.append((t, h))
        return ev


def height_at(ev, t):
    h = 0
    for e, eh in ev:
        if e > t:
            break
        h = eh
    return h


def window(ev, a, b):
    inside = [t for t, _ in ev if a < t <= b]
    gap, gap_at, prev = 0.0, 0.0, a
    for t in inside + [b]:
        if t - prev > gap:
            gap, gap_at = t - prev, prev - a
        prev = t
    heights = height_at(ev, b) - height_at(ev, a)
    return {"heights": heights, "rate": heights / (b - a) if b > a else 0.0,
            "first_commit_s": (inside[0] - a) if inside else None, "longest_gap_s": gap,
            "longest_gap_from_s": gap_at}


class ExclusionWatch:
    """Polls /validators on `observer` every 0.5 s: when did `index` first have weight 0."""

    def __init__(self, observer, index, t0):
        self.observer, self.index, self.t0 = observer, index, t0
        self.excluded_s, self.last = None, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            vs = get_json(self.observer.rpc + "/validators")
            for v in vs or []:
                if v.get("index") == self.index:
                    self.last = v
                    if self.excluded_s is None and v.get("weight") == 0:
                        self.excluded_s = time.monotonic() - self.t0
            self.stop.wait(0.5)

    def halt(self):
        self.stop.set()
        self.thread.join()


# ---- load ----------------------------------------------------------------------------------

LOADS = []


def start_load(nodes, rate, duration, drain, logname):
    if rate <= 0:
        return None
    os.makedirs(OUT, exist_ok=True)
    err = open(os.path.join(OUT, logname), "w")
    p = subprocess.Popen([BIN, "load", "--rpc", ",".join(n.rpc for n in nodes),
                          "--rate", f"{rate:g}", "--size", str(SIZE),
                          "--duration", f"{duration:g}", "--drain", f"{drain:g}",
                          "--output", "json"],
                         stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)
    LOADS.append(p)
    return p


def finish_load(p):
    if p is None:
        return None
    out, _ = p.communicate()
    LOADS.remove(p)
    try:
        return json.loads(out)
    except ValueError:
        return None


# ---- the cases -----------------------------------------------------------------------------

def wait_alive(n, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = n.status()
        if s is not None:
            n.index = s["validator_index"]
            return True
        time.sleep(0.2)
    return False


def settle(nodes):
    """Every node answers, heights within 3 of each other and rising, nobody excluded. An
    excluded validator gets its weight back only once its failures leave the reputation window
    (hundreds of blocks: minutes of empty blocks), so while one is excluded the chain is
    advanced with short bursts of SETTLE_RATE tx/s."""
    t0 = time.monotonic()
    hs, vs = [], []
    while time.monotonic() - t0 < SETTLE_TIMEOUT:
        hs = [n.height() for n in nodes]
        vs = get_json(nodes[0].rpc + "/validators") or []
        level = None not in hs and max(hs) - min(hs) <= 3
        excluded = [v["index"] for v in vs if v["weight"] == 0]
        if level and vs and not excluded:
            time.sleep(1.0)
            if all((n.height() or 0) > h for n, h in zip(nodes, hs)):
                return time.monotonic() - t0
        elif level and excluded and SETTLE_RATE > 0:
            finish_load(start_load(nodes, SETTLE_RATE, 3, 0, "load-settle.log"))
            continue
        time.sleep(0.5)
    log(f"WARNING: not settled after {SETTLE_TIMEOUT:.0f} s (heights {hs}, weights "
        f"{[v.get('weight') for v in vs]}); measuring anyway")
    return None


def current_leader(nodes):
    best = None
    for n in nodes:
        s = n.status(timeout=1.0)
        if s is not None and (best is None or s["view"] > best[0]):
            best = (s["view"], s["leader"])
    if best is None:
        raise RuntimeError("no node answers /status")
    view, leader = best
    return next(n for n in nodes if n.index == leader), view


KILLED = []  # nodes this script killed and has not restarted yet
LAST_VICTIM = [None]


def run_case(nodes, fault, rate, tau_ms):
    name = {"nonleader": "kill -9 non-leader", "leader": "kill -9 leader",
            "partition": "3|1 partition"}[fault]
    label = f"{name} @ {rate:g} tx/s"
    log(f"=== {label}: settling")
    settle_s = settle(nodes)
    sampler = Sampler(nodes)
    time.sleep(1.0)  # a sample of every node before the healthy window starts
    seg1 = start_load(nodes, rate, WARMUP + HEALTHY, 0, f"load-{fault}-{rate:g}-healthy.log")
    t_start = time.monotonic()
    log(f"{label}: healthy window ({WARMUP:g} s warm-up + {HEALTHY:g} s)")
    time.sleep(max(0.0, t_start + WARMUP + HEALTHY - time.monotonic()))
    if seg1 is not None:
        finish_load(seg1)

    leader, view = current_leader(nodes)
    if fault == "nonleader":
        others = [n for n in nodes if n is not leader]
        victim = next((n for n in others if n is not LAST_VICTIM[0]), others[0])
    else:
        victim = leader
    LAST_VICTIM[0] = victim
    survivors = [n for n in nodes if n is not victim]
    t_fault = time.monotonic()
    if fault == "partition":
        PARTITION.cut(victim.p2p_port)
        what = f"cut off {victim.name} (UDP port {victim.p2p_port})"
    else:
        if not pid_alive(victim.pid):
            raise RuntimeError(f"{victim.name} (pid {victim.pid}) is not running")
        os.kill(victim.pid, signal.SIGKILL)
        KILLED.append(victim)
        what = f"kill -9 {victim.name} (pid {victim.pid})"
    watch = ExclusionWatch(survivors[0], victim.index, t_fault)
    log(f"{label}: {what}, validator {victim.index}; leader of view {view} was validator "
        f"{leader.index} ({leader.name}); holding {HOLD:g} s")
    seg2 = start_load(survivors, rate, HOLD, DRAIN, f"load-{fault}-{rate:g}-fault.log")
    time.sleep(max(0.0, t_fault + HOLD - time.monotonic()))
    t_end = time.monotonic()
    report = finish_load(seg2)  # may run DRAIN s longer; the fault is still in place
    minority = None
    if fault == "partition":
        s = victim.status()
        if s is not None:
            h = s["committed_height"]
            b = get_json(f"{survivors[0].rpc}/blocks/{h}") if h > 0 else {"id": s["last_commit_id"]}
            minority = {"height": h, "view": s["view"], "health": s["health"],
                        "on_majority_chain": b is not None and b.get("id") == s["last_commit_id"]}

    # Recover: restart or heal, and time the catch-up.
    target = max(n.height() or 0 for n in survivors)
    t_rec = time.monotonic()
    if fault == "partition":
        PARTITION.heal()
    else:
        start_node(victim)
        KILLED.remove(victim)
        write_nodes(nodes)
    catch_up = None
    while time.monotonic() - t_rec < 120:
        h = victim.height()
        if h is not None and h >= target:
            catch_up = time.monotonic() - t_rec
            break
        time.sleep(0.1)
    watch.halt()
    sampler.halt()

    names = [n.name for n in survivors]
    ev = sampler.timeline(names)
    healthy = window(ev, t_fault - HEALTHY, t_fault)
    during = window(ev, t_fault, t_end)
    h_fault, h_end = height_at(ev, t_fault), height_at(ev, t_end)
    txs = txs_in(survivors[0], h_fault, h_end)
    worst_node_gap = max(window(sampler.timeline([nm]), t_fault, t_end)["longest_gap_s"]
                         for nm in names)
    r = {
        "case": name, "fault": fault, "rate_txps": rate, "victim": victim.name,
        "victim_index": victim.index, "victim_was_leader": victim is leader,
        "healthy": healthy, "fault_window": during,
        "txs_committed_in_window": txs,
        "txps_in_window": None if txs is None else txs / (t_end - t_fault),
        "ratio": during["rate"] / healthy["rate"] if healthy["rate"] > 0 else None,
        "worst_survivor_gap_s": worst_node_gap,
        "excluded_after_s": watch.excluded_s, "victim_entry_last": watch.last,
        "catch_up_s": catch_up, "catch_up_target_height": target, "settle_s": settle_s,
        "load_report": report, "minority": minority, "hold_s": HOLD,
        "samples": {nm: [(round(t - t_fault, 3), h) for t, h in sampler.samples[nm]]
                    for nm in sampler.samples},
    }
    fc = during["first_commit_s"]
    log(f"{label}: healthy {healthy['rate']:.2f} heights/s; during the fault "
        f"{during['rate']:.2f} heights/s ({fmt_pct(r['ratio'])} of healthy), first commit after "
        f"{fmt_s(fc)}, longest gap {during['longest_gap_s']:.2f} s from +"
        f"{during['longest_gap_from_s']:.2f} s (worst single survivor "
        f"{worst_node_gap:.2f} s); issue target: first commit and every gap ≤ 2·τ_base = "
        f"{2 * tau_ms / 1000:.1f} s")
    last = {k: (watch.last or {}).get(k) for k in ("state", "weight", "failed", "proposed")}
    log(f"{label}: validator {victim.index} weight 0 (excluded from leadership) after "
        f"{fmt_s(watch.excluded_s)} on {survivors[0].name}; last seen {json.dumps(last)}")
    if report:
        log(f"{label}: {txs} txs committed in the {HOLD:g} s window; `bftnode load` during the "
            f"fault (its drain included): {json.dumps(report)}")
    if minority:
        log(f"{label}: minority at the end of the partition: {json.dumps(minority)}")
    log(f"{label}: {victim.name} back at height ≥ {target} after {fmt_s(catch_up)}")
    return r


def txs_in(node, lo, hi, cap=20000):
    """Transactions in node's committed blocks (lo, hi], or None past `cap` blocks."""
    if hi - lo > cap:
        return None
    total = 0
    for h in range(lo + 1, hi + 1):
        b = get_json(f"{node.rpc}/blocks/{h}")
        if b is None:
            return None
        total += b.get("tx_count", 0)
    return total


def fmt_s(x):
    return "never" if x is None else f"{x:.2f} s"


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:.0f} %"


def main():
    if not os.access(BIN, os.X_OK):
        log(f"{BIN} missing: building it (cargo build --release -p cli)")
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True)
    started_here = False
    nodes = read_nodes() if os.path.exists(NODES_FILE) else []
    if not nodes:
        log("no testnet running: starting one with testnet/up.sh")
        subprocess.run(["testnet/up.sh"], check=True)
        started_here = True
        nodes = read_nodes()
    restarted = [n for n in nodes if not pid_alive(n.pid)]
    for n in restarted:
        log(f"{n.name} is not running: restarting it")
        start_node(n)
    if restarted:
        write_nodes(nodes)
    for n in nodes:
        if not wait_alive(n):
            sys.exit(f"liveness.sh: {n.name} ({n.rpc}) does not answer")
    tau_ms, delta_ms = nodes[0].tau_base_ms, nodes[0].delta_ms
    faults = list(FAULTS)
    if "partition" in faults:
        if os.geteuid() != 0 or not iptables("-L", "-n"):
            log("=" * 70)
            log("SKIPPING the partition cases: iptables unavailable or not permitted (needs root)")
            log("=" * 70)
            faults.remove("partition")
        else:
            remove_stale_rules()
    log(f"{len(nodes)} validators, τ_base {tau_ms} ms, Δ {delta_ms} ms; HOLD {HOLD:g} s, "
        f"HEALTHY {HEALTHY:g} s, rates {RATES}, faults {faults}, poll {POLL * 1000:.0f} ms")
    results = []
    try:
        for fault in faults:
            for rate in RATES:
                results.append(run_case(nodes, fault, rate, tau_ms))
    finally:
        for p in list(LOADS):
            p.kill()
        PARTITION.heal()
        for n in list(KILLED):
            log(f"restarting {n.name}")
            start_node(n)
            KILLED.remove(n)
        write_nodes(nodes)
        if results:
            os.makedirs(OUT, exist_ok=True)
            with open(os.path.join(OUT, "results.json"), "w") as f:
                json.dump({"tau_base_ms": tau_ms, "delta_ms": delta_ms, "results": results}, f,
                          indent=1)
            summary(results, tau_ms)
        if started_here and not KEEP:
            subprocess.run(["testnet/down.sh"])


def summary(results, tau_ms):
    print()
    print(f"Summary (τ_base {tau_ms} ms; issue 6 target: commits resume within 2·τ_base = "
          f"{2 * tau_ms / 1000:.1f} s of the fault and continue, i.e. no gap > "
          f"{2 * tau_ms / 1000:.1f} s)")
    cols = [("case", 19), ("load", 5), ("healthy", 7), ("fault", 7), ("ratio", 5),
            ("first", 7), ("gap", 7), ("node gap", 8), ("excluded", 8), ("tx/s", 6),
            ("latency ms", 11), ("catch-up", 8)]
    sub = ["", "tx/s", "h/s", "h/s", "", "commit", "max", "max", "after", "fault",
           "p50/p99", ""]
    line = lambda vals: " ".join(f"{v:<{w}}" if k == 0 else f"{v:>{w}}"
                                 for k, (v, (_, w)) in enumerate(zip(vals, cols)))
    print(line([c for c, _ in cols]))
    print(line(sub))
    print("-" * len(line(sub)))
    for r in results:
        f, lr = r["fault_window"], r["load_report"] or {}
        tps = r["txps_in_window"]
        lat = (f"{lr['latency_ms_p50']:.0f}/{lr['latency_ms_p99']:.0f}"
               if "latency_ms_p50" in lr else "-")
        print(line([r["case"], f"{r['rate_txps']:g}", f"{r['healthy']['rate']:.2f}",
                    f"{f['rate']:.2f}", fmt_pct(r["ratio"]), fmt_s(f["first_commit_s"]),
                    fmt_s(f["longest_gap_s"]), fmt_s(r["worst_survivor_gap_s"]),
                    fmt_s(r["excluded_after_s"]), "-" if tps is None else f"{tps:.0f}", lat,
                    fmt_s(r["catch_up_s"])]))
    print(f"(heights/s over the {HEALTHY:g} s before and the {HOLD:g} s of each fault, on the "
          f"surviving nodes; 'gap max': longest time without a commit on any of them, 'node gap "
          f"max': on the worst single one; 'excluded after': the faulty validator's election "
          f"weight 0 on a survivor; 'tx/s fault': transactions in the blocks committed during "
          f"the fault; latency: `bftnode load` submit-to-commit during the fault; 'catch-up': "
          f"restarted/healed validator back at the others' height; samples in "
          f"{OUT}/results.json)")


def on_term(_sig, _frame):
    raise SystemExit(130)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGHUP, on_term)
try:
    main()
except KeyboardInterrupt:
    sys.exit(130)
PY
