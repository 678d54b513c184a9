"""The installed libd2c.so from Python's ctypes, as a Python caller uses it.

Checks: the version against the installed d2c.h; a bad data source returns status 2 with
the message in d2c_last_error; the options structs mirrored in ctypes have the size the
library's _init writes (the ABI); d2c_train and d2c_condense write the same files as the
installed `d2c train` and `d2c condense`; with a 2-step model, sampling with DDIM from a
seed and with DDPM from given noise gives exactly the images of the installed `d2c sample`
(--seed, and --noise with --seed); a bad shape and an out-of-range label are status 2; the
committed evaluator's features and probabilities of the samples are finite and well formed,
and their FID against themselves is 0.

    test_api_ctypes.py PREFIX EVALUATOR.safetensors WORK_DIR
"""
import ctypes as C
import os
import re
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_numpy  # noqa: E402

PASSED, FAILED = 0, 0


def check(ok, what):
    global PASSED, FAILED
    if ok:
        PASSED += 1
    else:
        FAILED += 1
        print(f"FAIL {what}")


MAX_LEVELS = 6


class TrainOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("data", C.c_char_p), ("out", C.c_char_p), ("log_path", C.c_char_p),
                ("steps", C.c_int64), ("batch", C.c_int), ("lr", C.c_double), ("warmup", C.c_int64),
                ("grad_clip", C.c_double), ("cond_drop", C.c_double), ("ema_decay", C.c_double),
                ("ckpt_every", C.c_int64), ("base_channels", C.c_int), ("num_levels", C.c_int),
                ("channel_mult", C.c_int * MAX_LEVELS), ("attn", C.c_int * MAX_LEVELS), ("groups", C.c_int),
                ("schedule", C.c_char_p), ("seed", C.c_uint64), ("resume", C.c_int), ("quiet", C.c_int),
                ("device", C.c_char_p)]


class CondenseOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("data", C.c_char_p), ("out", C.c_char_p), ("method", C.c_char_p),
                ("ratio", C.c_double), ("ipc", C.c_int), ("iters", C.c_int), ("topk", C.c_int),
                ("t_candidates", C.c_int), ("score", C.c_char_p)] + \
               [(f, C.c_int) for f in ("rescore", "inner_steps", "outer_loop", "real_batch", "syn_batch",
                                       "noise_draws", "pool_res", "implicit")] + \
               [("lr_img", C.c_double), ("lr_net", C.c_double), ("dm_weight", C.c_double), ("opt_img", C.c_char_p),
                ("init", C.c_char_p), ("learn_cond", C.c_int), ("dsa", C.c_int), ("base_channels", C.c_int),
                ("seed", C.c_uint64), ("time_budget", C.c_double), ("jitter", C.c_double), ("eval_nets", C.c_int),
                ("eval_every", C.c_int), ("resume", C.c_int), ("ckpt_every", C.c_int), ("quiet", C.c_int),
                ("log_path", C.c_char_p), ("grid_path", C.c_char_p), ("select_keep", C.c_char_p),
                ("device", C.c_char_p), ("pca_dim", C.c_int), ("bandwidth", C.c_double), ("gadc_lambda", C.c_double),
                ("gadc_passes", C.c_int), ("mmd_weight", C.c_double)]


class SamplerOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("sampler", C.c_char_p), ("steps", C.c_int), ("guidance", C.c_double),
                ("batch", C.c_int), ("device", C.c_char_p)]


def bind(lib):
    """Declares the signatures this test uses."""
    P, I, F = C.c_void_p, C.c_int, C.POINTER(C.c_float)
    sigs = {
        "d2c_version": (C.c_char_p, []), "d2c_version_number": (I, []), "d2c_last_error": (C.c_char_p, []),
        "d2c_set_threads": (I, [I]),
        "d2c_data_load": (I, [C.POINTER(P), C.c_char_p]), "d2c_data_free": (None, [P]),
        "d2c_train_options_init": (None, [C.POINTER(TrainOptions)]),
        "d2c_train": (I, [C.POINTER(TrainOptions), C.POINTER(C.c_double)]),
        "d2c_condense_options_init": (None, [C.POINTER(CondenseOptions)]),
        "d2c_condense": (I, [C.POINTER(CondenseOptions), C.POINTER(C.c_double)]),
        "d2c_model_load": (I, [C.POINTER(P), C.c_char_p]), "d2c_model_free": (None, [P]),
        "d2c_model_num_classes": (I, [P, C.POINTER(I)]),
        "d2c_model_shape": (I, [P, C.POINTER(I), C.POINTER(I), C.POINTER(I)]),
        "d2c_sampler_options_init": (None, [C.POINTER(SamplerOptions)]),
        "d2c_sampler_create": (I, [C.POINTER(P), P, C.POINTER(SamplerOptions)]), "d2c_sampler_free": (None, [P]),
        "d2c_sampler_run": (I, [P, F, C.POINTER(C.c_int64), I, I, I, I, C.c_uint64, F]),
        "d2c_sampler_run_seeded": (I, [P, C.POINTER(C.c_int64), I, I, I, I, C.c_uint64, F]),
        "d2c_evaluator_load": (I, [C.POINTER(P), C.c_char_p, I]), "d2c_evaluator_free": (None, [P]),
        "d2c_evaluator_feature_dim": (I, [P, C.POINTER(I)]), "d2c_evaluator_num_classes": (I, [P, C.POINTER(I)]),
        "d2c_evaluator_apply": (I, [P, F, I, I, I, I, F, F]),
        "d2c_fid": (I, [F, I, F, I, I, C.POINTER(C.c_double)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def fptr(a):
    assert a.dtype == np.float32 and a.flags.c_contiguous
    return a.ctypes.data_as(C.POINTER(C.c_float))


def iptr(a):
    assert a.dtype == np.int64 and a.flags.c_contiguous
    return a.ctypes.data_as(C.POINTER(C.c_int64))


def ok(lib, status, what):
    if status != 0:
        raise SystemExit(f"{what}: status {status}: {lib.d2c_last_error().decode()}")


def cli_sample(d2c, model, out, *args):
    subprocess.run([d2c, "sample", "--model", model, "--out", out, "--threads", "2", "--quiet", *args], check=True)
    return st_numpy.load(out)[0]["images"]


def main():
    prefix, evaluator, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    libs = [os.path.join(root, f) for root, _, files in os.walk(prefix) for f in files if f == "libd2c.so"]
    if len(libs) != 1:
        raise SystemExit(f"{prefix}: expected one installed libd2c.so, found {libs}")
    lib = bind(C.CDLL(libs[0]))
    d2c = os.path.join(prefix, "bin", "d2c")

    # the version agrees with the installed header
    header = open(os.path.join(prefix, "include", "d2c.h")).read()
    parts = [int(re.search(rf"#define D2C_VERSION_{p} (\d+)", header).group(1)) for p in ("MAJOR", "MINOR", "PATCH")]
    check(lib.d2c_version().decode() == "%d.%d.%d" % tuple(parts), "d2c_version matches d2c.h")
    check(lib.d2c_version_number() == parts[0] * 10000 + parts[1] * 100 + parts[2], "d2c_version_number")
    ok(lib, lib.d2c_set_threads(2), "d2c_set_threads")

    # bad input: status 2, the message names the culprit, no handle
    handle = C.c_void_p(1)
    st = lib.d2c_data_load(C.byref(handle), b"folder:/nonexistent")
    msg = lib.d2c_last_error().decode()
    print(f"d2c_data_load('folder:/nonexistent') -> {st}: {msg}")
    check(st == 2 and "/nonexistent" in msg and handle.value is None, "bad data source is status 2 with a message")

    # the options structs: ctypes' layout is the library's
    topt = TrainOptions()
    lib.d2c_train_options_init(C.byref(topt))
    check(topt.struct_size == C.sizeof(TrainOptions), f"train options size {topt.struct_size} == {C.sizeof(TrainOptions)}")
    check(topt.steps == 2000 and topt.batch == 64 and topt.schedule == b"linear" and list(topt.channel_mult[:3]) == [1, 2, 2],
          "train options defaults")
    sopt = SamplerOptions()
    lib.d2c_sampler_options_init(C.byref(sopt))
    check(sopt.struct_size == C.sizeof(SamplerOptions) and sopt.steps == 50 and sopt.sampler == b"ddim",
          "sampler options size and defaults")

    # a 2-step model
    model = os.path.join(work, "model.safetensors").encode()
    topt.data, topt.out, topt.steps, topt.batch, topt.warmup, topt.quiet = b"fashion-mnist:test", model, 2, 4, 0, 1
    topt.base_channels, topt.num_levels = 8, 2
    topt.channel_mult[:2] = [1, 2]
    topt.attn[:3] = [0, 1, 0]
    loss = C.c_double()
    ok(lib, lib.d2c_train(C.byref(topt), C.byref(loss)), "d2c_train")
    check(np.isfinite(loss.value) and loss.value > 0, f"final loss {loss.value}")
    cli_model = os.path.join(work, "cli_model.safetensors")
    subprocess.run([d2c, "train", "--data", "fashion-mnist:test", "--out", cli_model, "--steps", "2", "--batch", "4",
                    "--warmup", "0", "--channels", "8", "--channel-mult", "1,2", "--attn-levels", "1", "--threads", "2",
                    "--quiet"], check=True)
    check(open(cli_model, "rb").read() == open(model, "rb").read(), "d2c_train's model file equals d2c train's")

    # condensation: the options struct's layout, and the same pool as d2c condense
    copt = CondenseOptions()
    lib.d2c_condense_options_init(C.byref(copt))
    check(copt.struct_size == C.sizeof(CondenseOptions), f"condense options size {copt.struct_size} == {C.sizeof(CondenseOptions)}")
    check(copt.method is None and copt.pca_dim == 50 and copt.gadc_passes == 5 and copt.mmd_weight == 0 and copt.iters == 100 and copt.select_keep == b"easy" and copt.dm_weight == -1,
          "condense options defaults")
    pool = os.path.join(work, "pool.safetensors")
    copt.data, copt.out, copt.method, copt.ipc, copt.quiet = b"fashion-mnist:test", pool.encode(), b"kcenter", 2, 1
    ok(lib, lib.d2c_condense(C.byref(copt), None), "d2c_condense")
    cli_pool = os.path.join(work, "cli_pool.safetensors")
    subprocess.run([d2c, "condense", "--data", "fashion-mnist:test", "--out", cli_pool, "--method", "kcenter", "--ipc",
                    "2", "--threads", "2", "--quiet"], check=True)
    (ta, ma), (tb, mb) = st_numpy.load(pool), st_numpy.load(cli_pool)
    timing = {"wall_seconds", "checksum"}  # the time taken, and the checksum that covers it
    check(ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta), "d2c_condense's pool equals d2c condense's")
    check({k: v for k, v in ma.items() if k not in timing} == {k: v for k, v in mb.items() if k not in timing},
          "d2c_condense's pool metadata equals d2c condense's (but for the time taken)")
    m = C.c_void_p()
    ok(lib, lib.d2c_model_load(C.byref(m), model), "d2c_model_load")
    k, c, h, w = C.c_int(), C.c_int(), C.c_int(), C.c_int()
    ok(lib, lib.d2c_model_num_classes(m, C.byref(k)), "num_classes")
    ok(lib, lib.d2c_model_shape(m, C.byref(c), C.byref(h), C.byref(w)), "shape")
    K, shape = k.value, (c.value, h.value, w.value)
    check(K == 10 and shape == (1, 28, 28), f"model: {K} classes, images {shape}")

    # DDIM from a seed equals `d2c sample --seed`
    labels = np.array([0, 1, 2, K], dtype=np.int64)  # K: unconditional
    n = len(labels)
    sopt.steps = 2
    s = C.c_void_p()
    ok(lib, lib.d2c_sampler_create(C.byref(s), m, C.byref(sopt)), "d2c_sampler_create")
    out = np.zeros((n, *shape), dtype=np.float32)
    ok(lib, lib.d2c_sampler_run_seeded(s, iptr(labels), n, *shape, 3, fptr(out)), "d2c_sampler_run_seeded")
    check(out.shape == (4, 1, 28, 28) and np.isfinite(out).all() and np.abs(out).max() <= 1, "DDIM samples finite, in [-1, 1]")
    ref = cli_sample(d2c, model, os.path.join(work, "cli_ddim.safetensors"), "--n", "4", "--labels", "0,1,2,10",
                     "--seed", "3", "--steps", "2")
    check(np.array_equal(out, ref), f"DDIM from seed 3 equals d2c sample --seed 3 (max diff {np.abs(out - ref).max()})")

    # DDPM from given noise equals `d2c sample --noise --seed`
    noise = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    noise_file = os.path.join(work, "noise.safetensors")
    st_numpy.save(noise_file, {"noise": noise})
    sopt.sampler, sopt.guidance = b"ddpm", 1.5
    s2 = C.c_void_p()
    ok(lib, lib.d2c_sampler_create(C.byref(s2), m, C.byref(sopt)), "d2c_sampler_create ddpm")
    out2 = np.zeros_like(out)
    ok(lib, lib.d2c_sampler_run(s2, fptr(noise), iptr(labels), n, *shape, 7, fptr(out2)), "d2c_sampler_run")
    ref2 = cli_sample(d2c, model, os.path.join(work, "cli_ddpm.safetensors"), "--noise", noise_file, "--labels",
                      "0,1,2,10", "--seed", "7", "--steps", "2", "--sampler", "ddpm", "--guidance", "1.5")
    check(np.array_equal(out2, ref2), f"DDPM from noise equals d2c sample --noise --seed 7 (max diff {np.abs(out2 - ref2).max()})")

    # bad shape, bad label: status 2 with the message
    st = lib.d2c_sampler_run_seeded(s, iptr(labels), n, 3, 28, 28, 0, fptr(out))
    msg = lib.d2c_last_error().decode()
    check(st == 2 and "(3, 28, 28)" in msg, f"bad shape: {st}, '{msg}'")
    bad = np.array([0, 1, K + 1, 2], dtype=np.int64)
    st = lib.d2c_sampler_run_seeded(s, iptr(bad), n, *shape, 0, fptr(out))
    msg = lib.d2c_last_error().decode()
    check(st == 2 and "label 11 of image 2" in msg, f"bad label: {st}, '{msg}'")
    lib.d2c_sampler_free(s)
    lib.d2c_sampler_free(s2)
    lib.d2c_model_free(m)

    # the committed evaluator on the samples
    e = C.c_void_p()
    ok(lib, lib.d2c_evaluator_load(C.byref(e), evaluator.encode(), 0), "d2c_evaluator_load")
    d, kk = C.c_int(), C.c_int()
    ok(lib, lib.d2c_evaluator_feature_dim(e, C.byref(d)), "feature_dim")
    ok(lib, lib.d2c_evaluator_num_classes(e, C.byref(kk)), "num_classes")
    feats = np.zeros((n, d.value), dtype=np.float32)
    probs = np.zeros((n, kk.value), dtype=np.float32)
    ok(lib, lib.d2c_evaluator_apply(e, fptr(ref), n, *shape, fptr(feats), fptr(probs)), "d2c_evaluator_apply")
    check(d.value > 0 and np.isfinite(feats).all(), f"features ({n}, {d.value}) finite")
    check(kk.value == 10 and np.allclose(probs.sum(axis=1), 1, atol=1e-4) and (probs >= 0).all(), "probabilities")
    fid = C.c_double(-1)
    ok(lib, lib.d2c_fid(fptr(feats), n, fptr(feats), n, d.value, C.byref(fid)), "d2c_fid")
    check(abs(fid.value) < 1e-6 * d.value, f"FID of a set against itself {fid.value}")
    lib.d2c_evaluator_free(e)

    print(f"{PASSED} passed, {FAILED} failed")
    return 0 if FAILED == 0 and PASSED > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
