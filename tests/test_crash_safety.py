"""SIGKILL at random moments, then --resume, gives the files of an uninterrupted run
(CTest: crash_safety, a few trials; bench/crash_safety.sh: 20+ trials per command).

    test_crash_safety.py PATH/TO/d2c WORK_DIR [--trials N] [--seed S] [--report FILE.json]

For each of `d2c train` (24 steps of batch 4, C=8, a checkpoint every 3 steps, on a
60-image Fashion-MNIST subset) and `d2c condense --method d2c` (ipc 2, 8 iterations, a
state checkpoint every 2, the held-out matching loss on), one uninterrupted reference run,
then N trials. A trial runs the command and kills it with SIGKILL 1 to 3 times, each time
resuming (--resume when a checkpoint exists, else starting over, as a user would), then
lets the last run finish. Each kill lands at one of
  - a random moment, uniform over the reference run's duration, or
  - the moment a temporary file of an atomic write ("<file>.tmp.<pid>") is seen, for a
    random one of the writes the run makes: a checkpoint, or (condense) the pool or its
    figure at the end; the kill follows the sighting after 0 to 2 ms, so it falls inside
    the write, its fsync or the rename (the first temporary of a run is its start-up check
    that the output folder is writable, which counts among them).
After every kill: every output that exists (model; pool, state file and figure) must be a
complete file: a safetensors file whose header and offsets account for every byte of it,
or a PNG whose chunks' CRCs are valid up to IEND. A half-written file at an output path
fails the trial. The logs are JSON lines: every line must parse (a torn line fails).
After the last run: the tensors equal the reference's byte for byte, the metadata equal
it except the timing keys (wall_seconds, and the file's checksum when wall_seconds differ:
the checksum covers the metadata), the figure equals it byte for byte, and the
log's entries (the last one of each step or iteration, as a resumed log repeats the steps
since the last checkpoint) equal the reference's except the timing fields (img_per_s,
seconds, peak_mem_mib).
Also, for condense, the narrowest window on purpose: the final state file written, the pool
not yet (the resumed run has no iteration left, and must still write the reference's pool
and metadata).
Printed: one line per trial with where each kill landed; a table of landings; the
temporary files the killed processes left behind (they never sit at an output path).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

from test_cli_common import check, finish, fmnist_subset, st, tensors_equal

ap = argparse.ArgumentParser()
ap.add_argument("exe")
ap.add_argument("work")
ap.add_argument("--trials", type=int, default=3, help="trials per command (default 3)")
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--report", help="write the trials as JSON here")
args = ap.parse_args()
EXE = os.path.abspath(args.exe)
WORK = os.path.join(os.path.abspath(args.work), "crash_safety")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
rnd = random.Random(args.seed)

DATA = fmnist_subset(os.path.join(WORK, "subset60.safetensors"), 60)
TIMING_META = {"wall_seconds"}
TIMING_LOG = {"img_per_s", "seconds", "peak_mem_mib"}


# ------------------------------------------------------------------ the two commands
class Command:
    def __init__(self, name, argv, outputs, log, key):
        self.name, self.argv, self.outputs, self.log, self.key = name, argv, outputs, log, key

    def run_args(self, folder, resume):
        return [EXE, *map(str, self.argv(folder)), *(["--resume"] if resume else [])]

    def paths(self, folder):
        return {k: os.path.join(folder, v) for k, v in self.outputs.items()}

    def checkpoint(self, folder):
        """The file --resume reads."""
        return self.paths(folder)["model" if self.name == "train" else "state"]


TRAIN = Command(
    "train",
    lambda d: ["train", "--data", DATA, "--out", os.path.join(d, "model.safetensors"), "--steps", 24, "--batch", 4,
               "--channels", 8, "--ckpt-every", 3, "--warmup", 4, "--seed", 7, "--threads", 2, "--quiet"],
    {"model": "model.safetensors"}, "model.safetensors.log.jsonl", "step")
CONDENSE = Command(
    "condense",
    lambda d: ["condense", "--data", DATA, "--out", os.path.join(d, "pool.safetensors"), "--method", "d2c", "--ipc", 2,
               "--iters", 8, "--ckpt-every", 2, "--channels", 8, "--real-batch", 8, "--syn-batch", 2,
               "--t-candidates", 4, "--topk", 1, "--inner", 1, "--eval-nets", 1, "--seed", 3, "--threads", 2, "--quiet"],
    {"pool": "pool.safetensors", "state": "pool.safetensors.state.safetensors", "figure": "pool.safetensors.png"},
    "pool.safetensors.log.jsonl", "iter")


# ------------------------------------------------------------------ complete-file checks
def safetensors_complete(path):
    """None if path is a complete safetensors file, else what is wrong."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        return f"{len(raw)} bytes"
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        return f"header of {n} bytes in a {len(raw)}-byte file"
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except ValueError as e:
        return f"header is not JSON: {e}"
    header.pop("__metadata__", None)
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    end = 0
    for b, e in spans:
        if b != end:
            return f"gap or overlap at {b}"
        end = e
    if 8 + n + end != len(raw):
        return f"data section of {len(raw) - 8 - n} bytes, tensors need {end}"
    return None


def png_complete(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return "no PNG signature"
    i = 8
    while i + 12 <= len(raw):
        (length,) = struct.unpack(">I", raw[i:i + 4])
        kind = raw[i + 4:i + 8]
        body = raw[i + 8:i + 8 + length]
        if len(body) != length or i + 12 + length > len(raw):
            return f"chunk {kind!r} cut short"
        (crc,) = struct.unpack(">I", raw[i + 8 + length:i + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            return f"chunk {kind!r} has a bad CRC"
        i += 12 + length
        if kind == b"IEND":
            return None if i == len(raw) else "bytes after IEND"
    return "no IEND chunk"


def log_problems(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for k, line in enumerate(f, 1):
            try:
                json.loads(line)
            except ValueError:
                return f"line {k} is not JSON: {line[:60]!r}"
    return None


def outputs_complete(cmd, folder):
    """[what is wrong] for every output that exists."""
    bad = []
    for kind, path in cmd.paths(folder).items():
        if os.path.exists(path):
            why = png_complete(path) if path.endswith(".png") else safetensors_complete(path)
            if why:
                bad.append(f"{os.path.basename(path)}: {why}")
    why = log_problems(os.path.join(folder, cmd.log))
    if why:
        bad.append(f"{cmd.log}: {why}")
    return bad


def progress_of(cmd, folder):
    """The step / iteration of the checkpoint at the output, or None."""
    path = cmd.checkpoint(folder)
    if not os.path.exists(path) or safetensors_complete(path):
        return None
    meta = st.load(path)[1]
    return int(meta.get("step" if cmd.name == "train" else "iteration", -1))


# ------------------------------------------------------------------ running and killing
def temporaries(folder):
    return sorted(n for n in os.listdir(folder) if ".tmp." in n)


def run_to_end(cmd, folder, resume):
    r = subprocess.run(cmd.run_args(folder, resume), capture_output=True, text=True, env=ENV, timeout=900)
    return r


def role(name):
    base = name.split(".tmp.")[0]
    return {"model.safetensors": "the model", "pool.safetensors.state.safetensors": "the state file",
            "pool.safetensors": "the pool", "pool.safetensors.png": "the figure"}.get(base, base)


def run_and_kill(cmd, folder, resume, mode, when, write_index):
    """Starts the command and kills it as mode says: at `when` seconds, or 0-2 ms after the
    write_index-th temporary file appears. Returns (killed, landing dict, exit status, stderr);
    the landing holds the temporaries present at the kill, with their sizes."""
    before = set(temporaries(folder))
    t0 = time.time()
    p = subprocess.Popen(cmd.run_args(folder, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    seen, writes, fire, target = False, 0, False, None
    delay = rnd.uniform(0, 0.002)
    while p.poll() is None:
        tmps = [n for n in temporaries(folder) if n not in before]
        if mode == "time" and time.time() - t0 >= when:
            fire = True
        elif mode == "write":
            if tmps and not seen:
                writes += 1
                seen = True
                if writes == write_index:
                    target = tmps[0]
                    time.sleep(delay)
                    fire = True
            elif not tmps:
                seen = False
        if fire:
            break
        time.sleep(0.0002)
    landing = {"mode": mode, "at_s": round(time.time() - t0, 3), "temporary": target and role(target),
               "delay_ms": round(delay * 1e3, 2) if target else None}
    if p.poll() is None:
        present = []
        for n in temporaries(folder):
            if n not in before:
                try:
                    present.append((role(n), os.path.getsize(os.path.join(folder, n))))
                except OSError:
                    pass
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = True
        landing["present"] = present
    else:
        killed = False
        landing["present"] = []
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    return killed, landing, p.returncode, err


def describe(landing, killed, after):
    """Where a kill landed, in words (also the key of the table of landings)."""
    if not killed:
        return "the run ended before the kill"
    if landing["present"]:
        what, size = landing["present"][0]
        return (f"inside the write of {what} ({size} bytes of its temporary written)" if size else
                f"as a temporary for {what} was created (a write's first instant, or the start-up writability probe)")
    if landing["temporary"]:
        return f"just after the temporary for {landing['temporary']} was renamed or removed"
    return "between writes" if after is not None else "before the first checkpoint"


def compare_final(cmd, ref, folder):
    """[what differs from the reference]"""
    diffs = []
    for kind, path in cmd.paths(folder).items():
        rpath = cmd.paths(ref)[kind]
        if not os.path.exists(path):
            diffs.append(f"{kind} missing")
            continue
        if path.endswith(".png"):
            if open(path, "rb").read() != open(rpath, "rb").read():
                diffs.append(f"{kind}: figure bytes differ")
            continue
        ta, ma = st.load(rpath)
        tb, mb = st.load(path)
        ok, why = tensors_equal(ta, tb)
        if not ok:
            diffs.append(f"{kind}: {why}")
        # the checksum covers the metadata, timing included: it may differ only when a timing key does
        skip = TIMING_META | ({"checksum"} if any(ma.get(k) != mb.get(k) for k in TIMING_META) else set())
        ma = {k: v for k, v in ma.items() if k not in skip}
        mb = {k: v for k, v in mb.items() if k not in skip}
        if ma != mb:
            keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
            diffs.append(f"{kind}: metadata differ in {keys}: {[ (ma.get(k), mb.get(k)) for k in keys][:3]}")

    def entries(path):
        rows = {}
        for line in open(path):
            row = json.loads(line)
            if cmd.key in row and "loss" in row:
                rows[row[cmd.key]] = {k: v for k, v in row.items() if k not in TIMING_LOG}
            elif "eval_loss" in row:
                rows[("eval", row.get(cmd.key))] = row
        return rows

    la, lb = entries(os.path.join(ref, cmd.log)), entries(os.path.join(folder, cmd.log))
    if la != lb:
        keys = sorted((k for k in set(la) | set(lb) if la.get(k) != lb.get(k)), key=str)
        diffs.append(f"log entries differ at {keys[:4]}")
    return diffs


def trial(cmd, ref, ref_seconds, n_writes, index):
    folder = os.path.join(WORK, f"{cmd.name}_trial{index:02d}")
    os.makedirs(folder)
    kills, problems = [], []
    for k in range(rnd.randint(1, 3)):
        resume = progress_of(cmd, folder) is not None
        if rnd.random() < 0.5:
            mode, when, widx = "time", rnd.uniform(0.02, 1.0) * ref_seconds, 0
        else:
            done = (progress_of(cmd, folder) or 0) // (3 if cmd.name == "train" else 2)
            remaining = max(1, n_writes - done)
            mode, when, widx = "write", 0, rnd.randint(1, max(1, remaining))
        killed, landing, rc, err = run_and_kill(cmd, folder, resume, mode, when, widx)
        after = progress_of(cmd, folder)
        kills.append({"mode": mode, "resume": resume, "killed": killed, "landing": landing,
                      "where": describe(landing, killed, after), "checkpoint_after": after})
        if not killed and rc != 0:
            problems.append(f"run {k + 1} exited {rc}: {err.strip()[-300:]}")
        problems += [f"after kill {k + 1}: {b}" for b in outputs_complete(cmd, folder)]
        if not killed:
            break
    resume = progress_of(cmd, folder) is not None
    r = run_to_end(cmd, folder, resume)
    if r.returncode != 0:
        problems.append(f"final run{' --resume' if resume else ''} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    else:
        problems += compare_final(cmd, ref, folder)
    problems += [f"at the end: {b}" for b in outputs_complete(cmd, folder)]
    stale = temporaries(folder)
    outs = set(cmd.outputs.values())
    if any(n in outs for n in stale):
        problems.append(f"a temporary at an output path: {stale}")
    desc = "; ".join(f"{'resume, ' if x['resume'] else ''}{x['mode']} kill at {x['landing']['at_s']} s: {x['where']}"
                     f" -> checkpoint {x['checkpoint_after']}" for x in kills)
    ok = check(f"{cmd.name} trial {index}: {len(kills)} kill(s), final files = reference", not problems,
               desc + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    return {"command": cmd.name, "trial": index, "kills": kills, "ok": ok, "problems": problems,
            "stale_temporaries": len(stale)}


report = []
for cmd in (TRAIN, CONDENSE):
    ref = os.path.join(WORK, f"{cmd.name}_reference")
    os.makedirs(ref)
    t = time.time()
    r = run_to_end(cmd, ref, False)
    ref_seconds = time.time() - t
    if not check(f"{cmd.name}: uninterrupted reference run", r.returncode == 0, f"{ref_seconds:.1f} s"):
        print(r.stderr)
        continue
    if cmd is CONDENSE:
        # the narrowest window, made on purpose: a kill after the last state file was renamed
        # and before the pool was written (the resumed run has no iteration left to run)
        edge = os.path.join(WORK, "condense_edge")
        shutil.copytree(ref, edge)
        for kind in ("pool", "figure"):
            os.remove(cmd.paths(edge)[kind])
        r = run_to_end(cmd, edge, True)
        diffs = compare_final(cmd, ref, edge) if r.returncode == 0 else [f"exit {r.returncode}: {r.stderr.strip()}"]
        check("condense: --resume from the final state without the pool = reference", not diffs, "; ".join(diffs))
    # writes a run makes: checkpoints (+ pool and figure for condense)
    n_writes = 24 // 3 if cmd.name == "train" else 8 // 2 + 2
    for i in range(args.trials):
        report.append(trial(cmd, ref, ref_seconds, n_writes, i))

table = {}
for t in report:
    for k in t["kills"]:
        key = (t["command"], re.sub(r"\(\d+ bytes", "(N bytes", k["where"]))
        table[key] = table.get(key, 0) + 1
print("\nwhere the kills landed:")
for (c, what), n in sorted(table.items()):
    print(f"  {c:9s} {n:4d}  {what}")
stale = sum(t["stale_temporaries"] for t in report)
print(f"trials: {len(report)}, failed: {sum(not t['ok'] for t in report)}; kills: "
      f"{sum(len(t['kills']) for t in report)}; temporaries left by killed runs (never at an output path): {stale}")
if args.report:
    with open(args.report, "w") as f:
        json.dump({"trials": report, "landings": {f"{c}: {w}": n for (c, w), n in sorted(table.items())}}, f, indent=1)
finish()
