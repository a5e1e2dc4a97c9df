#!/usr/bin/env python3
"""Helpers of bench/compare.sh (standard library only).

  compare.py record RESULTS.jsonl [--fio FIO.json] [--iolog LOG --cap-blocks N
                    --block-size B] KEY=VALUE...
        append one run to RESULTS.jsonl: the KEY=VALUE pairs, the summary of
        fio's JSON output and, with --iolog, the hit ratio an exact LRU of N
        blocks gets on the trace fio recorded with write_iolog
  compare.py lru LOG CAP_BLOCKS BLOCK_SIZE
        print that LRU hit ratio and the number of block accesses
  compare.py tree DIR NFILES SEED
        write NFILES small files of random bytes (256 B - 24 KiB) under DIR,
        print their total size
  compare.py report RESULTS.jsonl OUT.md [KEY=VALUE...]
        the markdown table (medians over rounds), the targets as PASS/MISS
        lines; KEY=VALUE pairs are printed in the header
"""

import collections
import json
import os
import random
import statistics
import sys

# The order of the table, and what each system is compared with.
SYSTEMS = ["raw", "ceiling", "bufiofs-hot", "bufiofs-cold", "qsd-direct", "qsd-buffered", "nbd"]
PEERS_ALL = ["qsd-direct", "qsd-buffered", "nbd"]
# bufiofs-hot against every peer and the FUSE ceiling; bufiofs-cold against
# the peer without a cache and the device limit.
COMPARE = {
    "bufiofs-hot": (PEERS_ALL, "ceiling"),
    "bufiofs-cold": (["qsd-direct"], "raw"),
}
JOBS = ["randread-qd1", "randread-qd32", "randwrite-qd1", "randwrite-qd32",
        "seqread-1m", "seqwrite-1m", "zipf-read", "fs-untar"]
MIB = 1 << 20
GIB = 1 << 30


def number(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


# ---- fio -------------------------------------------------------------------

def fio_summary(path):
    """IOPS, bytes/s, completion latency p50/p99 (us) and bytes moved of one
    fio run (every job of it, read and write together)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # fio may print warnings before the JSON object.
    data = json.loads(text[text.index("{"):])
    iops = bw = moved = 0.0
    lat = None
    most = -1
    for job in data["jobs"]:
        for ddir in ("read", "write"):
            d = job[ddir]
            iops += d["iops"]
            bw += d["bw_bytes"]
            moved += d["io_bytes"]
            pct = d.get("clat_ns", {}).get("percentile") or {}
            if d["total_ios"] > most and pct:
                most = d["total_ios"]
                lat = (pct.get("50.000000", 0) / 1e3, pct.get("99.000000", 0) / 1e3)
        if job.get("error"):
            sys.exit("fio job %s failed: error %s" % (job["jobname"], job["error"]))
    out = {"iops": iops, "bw": bw, "bytes": moved}
    if lat:
        out["p50_us"], out["p99_us"] = lat
    return out


# ---- exact LRU over a write_iolog trace -----------------------------------

def iolog_blocks(path, block_size):
    """Block numbers of every read and write in a fio iolog (v2 or v3), in order."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or parts[-3] not in ("read", "write"):
                continue
            off, length = int(parts[-2]), int(parts[-1])
            for b in range(off // block_size, (off + length - 1) // block_size + 1):
                yield b


def lru_hit_ratio(path, cap_blocks, block_size):
    cache = collections.OrderedDict()
    hits = total = 0
    for b in iolog_blocks(path, block_size):
        total += 1
        if b in cache:
            hits += 1
            cache.move_to_end(b)
        else:
            cache[b] = None
            if len(cache) > cap_blocks:
                cache.popitem(last=False)
    return (hits / total if total else 0.0), total


# ---- commands --------------------------------------------------------------

def cmd_record(args):
    out = args.pop(0)
    rec = {}
    show = False
    iolog = None
    while args:
        a = args.pop(0)
        if a == "--print":
            show = True
        elif a == "--fio":
            rec.update(fio_summary(args.pop(0)))
        elif a == "--iolog":
            iolog = args.pop(0)
        elif a == "--block-size":
            rec["block_size"] = int(args.pop(0))
        elif a == "--cap-blocks":
            rec["cap_blocks"] = int(args.pop(0))
        elif a == "--resident-blocks":
            rec["resident_blocks"] = int(args.pop(0))
        else:
            k, _, v = a.partition("=")
            rec[k] = number(v)
    if iolog:
        bs = rec["block_size"]
        rec["lru"], rec["trace_blocks"] = lru_hit_ratio(iolog, rec["cap_blocks"], bs)
        if rec.get("resident_blocks"):
            rec["lru_resident"] = lru_hit_ratio(iolog, rec["resident_blocks"], bs)[0]
    if rec.get("hits") is not None and rec.get("misses") is not None:
        n = rec["hits"] + rec["misses"]
        rec["hit_ratio"] = rec["hits"] / n if n else None
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if show:
        sys.stderr.write(one_line(rec) + "\n")


def one_line(r):
    """Progress line of one run."""
    what = {"job": "%s %s" % (r.get("job"), r.get("system")),
            "scale": "scale %s cache" % human(r.get("budget", 0)),
            "sparse": "sparse %s" % human(r.get("device", 0))}.get(r["kind"], r["kind"])
    parts = ["round %s  %-32s" % (r.get("round"), what)]
    if r.get("iops") is not None:
        parts.append("%8s IOPS %8.1f MB/s" % (fmt_iops(r["iops"]), r.get("bw", 0) / 1e6))
    if r.get("p50_us") is not None and r.get("job") != "fs-untar":
        parts.append("p50 %s us p99 %s us" % (fmt(r["p50_us"]), fmt(r["p99_us"])))
    if r.get("elapsed") is not None:
        parts.append("%.2f s" % r["elapsed"])
    if r.get("mount_s") is not None:
        parts.append("mounted in %.3f s" % r["mount_s"])
    if r.get("hit_ratio") is not None:
        parts.append("hit %.1f%%" % (100 * r["hit_ratio"]))
    if r.get("lru") is not None:
        parts.append("LRU %.1f%%" % (100 * r["lru"]))
    if r.get("rss_kb") is not None:
        parts.append("RSS %.0f MiB" % (r["rss_kb"] / 1024))
    if r.get("cpu_s") is not None:
        parts.append("CPU %.2f s" % r["cpu_s"])
    return "  ".join(parts)


def cmd_lru(args):
    ratio, total = lru_hit_ratio(args[0], int(args[1]), int(args[2]))
    print("%.4f %d" % (ratio, total))


def cmd_tree(args):
    top, nfiles, seed = args[0], int(args[1]), int(args[2])
    rng = random.Random(seed)
    total = 0
    for i in range(nfiles):
        d = os.path.join(top, "d%03d" % (i // 64 // 64), "d%02d" % (i // 64 % 64))
        if i % 64 == 0:
            os.makedirs(d, exist_ok=True)
        size = int(2 ** rng.uniform(8, 14.6))
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    print(total)


# ---- report ----------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_iops(v):
    if v is None:
        return "-"
    return "%.1fk" % (v / 1e3) if v >= 1e4 else "%.0f" % v


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def primary(job):
    """The figure a job is judged by (higher is better)."""
    return "bw" if job.startswith("seq") else "iops"


class Results:
    def __init__(self, path):
        self.runs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    self.runs.append(json.loads(line))

    def of(self, kind, **match):
        return [r for r in self.runs if r.get("kind") == kind and r.get("ok") == 1
                and all(r.get(k) == v for k, v in match.items())]

    def failed(self):
        return [r for r in self.runs if r.get("ok") != 1]

    def median(self, job, system, key):
        return med([r.get(key) for r in self.of("job", job=job, system=system)])

    def cpu_per_gib(self, job, system):
        vals = []
        for r in self.of("job", job=job, system=system):
            if r.get("cpu_s") is not None and r.get("bytes"):
                vals.append(r["cpu_s"] / (r["bytes"] / GIB))
        return med(vals)

    def peak_rss(self, job, system):
        vals = [r.get("rss_kb") for r in self.of("job", job=job, system=system)]
        vals = [v for v in vals if v is not None]
        return max(vals) / 1024 if vals else None

    def best_peer(self, job, peers):
        best = None
        key = primary(job)
        for p in peers:
            v = self.median(job, p, key)
            if v is not None and (best is None or v > best[1]):
                best = (p, v)
        return best


def ratio(a, b):
    return a / b if a is not None and b else None


def table(res):
    head = ["job", "system", "IOPS", "MB/s", "p50 us", "p99 us", "hit %",
            "x best peer", "x limit", "peak RSS MiB", "CPU s/GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for job in JOBS:
        for system in SYSTEMS:
            runs = res.of("job", job=job, system=system)
            if not runs:
                continue
            m = lambda k: res.median(job, system, k)  # noqa: E731
            label = system
            if runs[0].get("budget") and system.startswith(("bufiofs", "nbd")):
                label += " (%s)" % human(runs[0]["budget"])
            if any(r.get("loop_dio") == 0 for r in runs):
                label += " (buffered loop)"
            hit = "-"
            if m("hit_ratio") is not None:
                hit = "%.1f" % (100 * m("hit_ratio"))
                if m("lru") is not None:
                    hit += " (LRU %.1f)" % (100 * m("lru"))
            vs_peer = vs_limit = "-"
            if system in COMPARE:
                peers, limit = COMPARE[system]
                key = primary(job)
                best = res.best_peer(job, peers)
                if best:
                    vs_peer = "%.2f (%s)" % (m(key) / best[1], best[0])
                lim = res.median(job, limit, key)
                if lim:
                    vs_limit = "%.2f (%s)" % (m(key) / lim, limit)
            p50, p99 = m("p50_us"), m("p99_us")
            if job == "fs-untar":
                p50 = p99 = None
            lines.append("| " + " | ".join([
                job, label, fmt_iops(m("iops")), fmt((m("bw") or 0) / 1e6),
                fmt(p50), fmt(p99), hit, vs_peer, vs_limit,
                fmt(res.peak_rss(job, system), "%.0f"),
                fmt(res.cpu_per_gib(job, system), "%.2f")]) + " |")
    return lines


def human(n):
    for unit, size in (("T", 1 << 40), ("G", GIB), ("M", MIB), ("K", 1024)):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, unit)
    for unit, size in (("G", GIB), ("M", MIB)):
        if n >= size:
            return "%.1f%s" % (n / size, unit)
    return str(n)


class Targets:
    def __init__(self):
        self.lines = []
        self.counts = collections.Counter()

    def add(self, ok, text):
        word = "SKIP" if ok is None else "PASS" if ok else "MISS"
        self.counts[word] += 1
        self.lines.append("%s %s" % (word, text))


def targets(res):
    t = Targets()

    def vs_peers(job, what, need_peer, need_ceiling=None):
        key = primary(job)
        me = res.median(job, "bufiofs-hot", key)
        best = res.best_peer(job, PEERS_ALL)
        ceil = res.median(job, "ceiling", key)
        if me is None or best is None or (need_ceiling and ceil is None):
            t.add(None, "%s: needs bufiofs-hot, a peer%s in %s" %
                  (what, " and ceiling" if need_ceiling else "", job))
            return
        r_peer = me / best[1]
        ok = r_peer >= need_peer
        text = "%s: bufiofs-hot %s IOPS = %.2fx best peer (%s %s) [need >= %.1fx]" % (
            what, fmt_iops(me), r_peer, best[0], fmt_iops(best[1]), need_peer)
        if need_ceiling:
            r_ceil = me / ceil
            ok = ok and r_ceil >= need_ceiling
            text += ", %.2fx FUSE ceiling (%s) [need >= %.2fx]" % (
                r_ceil, fmt_iops(ceil), need_ceiling)
        t.add(ok, text)

    vs_peers("randread-qd1", "hot 4K random read QD1", 1.8, 0.95)
    vs_peers("randread-qd32", "hot 4K random read QD32x2", 2.0, 0.95)
    vs_peers("randwrite-qd1", "4K random write QD1", 2.0)

    for job, what in (("seqread-1m", "cold 1M sequential read"),
                      ("seqwrite-1m", "cold 1M sequential write+fsync")):
        me, raw = res.median(job, "bufiofs-cold", "bw"), res.median(job, "raw", "bw")
        if me is None or raw is None:
            t.add(None, "%s: needs bufiofs-cold and raw" % what)
        else:
            t.add(me >= 0.9 * raw, "%s: bufiofs-cold %.0f MB/s = %.2fx raw O_DIRECT (%.0f MB/s)"
                  " [need >= 0.90x]" % (what, me / 1e6, me / raw, raw / 1e6))

    zipf = [r for r in res.of("job", job="zipf-read")
            if r["system"].startswith("bufiofs") and r.get("lru") is not None]
    if zipf and all(r.get("hit_ratio") is not None for r in zipf):
        hit, lru = med([r["hit_ratio"] for r in zipf]), med([r["lru"] for r in zipf])
        resident = med([r.get("resident_blocks") for r in zipf])
        lru_res = med([r.get("lru_resident") for r in zipf])
        t.add(hit >= lru - 0.02,
              "zipf(1.2) read, cache %s = 10%% of the device: bufiofs hit ratio %.2f%%, exact LRU "
              "of %d blocks on the same trace %.2f%% (%+.2f points) [need >= LRU - 2 points]; "
              "bufiofs held %s blocks at the end (LRU of that many: %s%%)"
              % (human(zipf[0]["budget"]), 100 * hit, zipf[0]["cap_blocks"], 100 * lru,
                 100 * (hit - lru), fmt(resident, "%d"),
                 fmt(None if lru_res is None else 100 * lru_res, "%.2f")))
    else:
        t.add(None, "zipf hit ratio vs LRU: needs the zipf-read job on bufiofs")

    scale = {}
    for r in res.of("scale"):
        scale.setdefault(r["budget"], []).append(r["iops"])
    if len(scale) == 2:
        (small, s_iops), (big, b_iops) = sorted(scale.items())
        s, b = med(s_iops), med(b_iops)
        t.add(b >= 0.9 * s, "cost does not grow with size: hot 4K random read QD1 with a %s cache "
              "%s IOPS, with a %s cache %s IOPS (%.2fx; medians of %d and %d runs) "
              "[need >= 0.90x]"
              % (human(small), fmt_iops(s), human(big), fmt_iops(b), b / s, len(s_iops),
                 len(b_iops)))
    else:
        t.add(None, "cost vs cache size: needs the scale runs")

    sparse = {}
    for r in res.of("sparse"):
        sparse.setdefault(r["device"], []).append(r)
    if len(sparse) == 2:
        (small, rs), (big, rb) = sorted(sparse.items())
        mt = med([r["mount_s"] for r in rb])
        rss_s, rss_b = med([r["rss_kb"] for r in rs]), med([r["rss_kb"] for r in rb])
        same = abs(rss_b - rss_s) <= max(0.10 * rss_s, 2048)
        t.add(mt < 1.0 and same,
              "a %s sparse backing mounts in %.3f s [need < 1 s] with RSS %.1f MiB vs %.1f MiB "
              "for %s (%.1f MiB apart) [need within 10%% or 2 MiB]"
              % (human(big), mt, rss_b / 1024, rss_s / 1024, human(small),
                 (rss_b - rss_s) / 1024))
    else:
        t.add(None, "sparse 16 TiB mount: needs the sparse runs")

    # Memory: every bufiofs daemon, each configuration's worst run.
    worst = {}
    for r in res.runs:
        if r.get("ok") != 1 or not r.get("budget") or r.get("rss_kb") is None:
            continue
        if not (r.get("system", "").startswith(("bufiofs", "ceiling")) or r["kind"] != "job"):
            continue
        name = "%s %s" % (r.get("system") or r["kind"], human(r["budget"]))
        bound = r["budget"] * 1.03 + 32 * MIB
        over = r["rss_kb"] * 1024 - bound
        if name not in worst or over > worst[name][0]:
            worst[name] = (over, r)
    for name, (over, r) in sorted(worst.items()):
        bound = r["budget"] * 1.03 + 32 * MIB
        t.add(over <= 0, "memory, bufiofs %s (worst run: %s round %s): peak RSS %.1f MiB "
              "[need <= budget x 1.03 + 32 MiB = %.1f MiB]"
              % (name, r.get("job", r["kind"]), r.get("round"), r["rss_kb"] / 1024,
                 bound / MIB))
    if not worst:
        t.add(None, "memory: no bufiofs run")
    return t


def cmd_report(args):
    res = Results(args[0])
    out = args[1]
    meta = [a.partition("=") for a in args[2:]]
    md = ["# bufiofs against its peers", ""]
    md += ["- %s: %s" % (k, v) for k, _, v in meta]
    md += ["", "Median of the rounds; peak RSS is the highest VmHWM of the system's daemons over",
           "the rounds (nbd: nbdkit + nbdfuse); CPU is their utime+stime during the fio run per",
           "GiB fio moved (fs-untar: per GiB of tar payload). IOPS of fs-untar are files/s.",
           "bufiofs-hot is compared with every peer and the FUSE ceiling, bufiofs-cold with",
           "qsd-direct and the raw device.", ""]
    md += table(res)
    t = targets(res)
    md += ["", "## Targets", "", "```"] + t.lines + [
        "%d PASS, %d MISS, %d SKIP" % (t.counts["PASS"], t.counts["MISS"], t.counts["SKIP"]),
        "```"]
    bad = res.failed()
    if bad:
        md += ["", "## Failed runs", ""]
        md += ["- round %s, %s %s: %s" % (
            r.get("round"), r.get("job") or r.get("kind"), r.get("system") or r.get("what", ""),
            r.get("err", "?")) for r in bad]
    text = "\n".join(md) + "\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmds = {"record": cmd_record, "lru": cmd_lru, "tree": cmd_tree, "report": cmd_report}
    if sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
