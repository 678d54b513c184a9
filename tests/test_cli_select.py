"""`d2c condense --method kherding|gadc|facility`: the distribution-matching and coverage
selections from the command line (CTest: cli_select).

    test_cli_select.py PATH/TO/d2c WORK_DIR

1. The three methods at --ratio 0.001 and 0.01 of Fashion-MNIST's training split write a valid POOL
   (images F32 (N, 1, 28, 28) in [-1, 1], labels I64, exactly 6 / 60 per class, the metadata
   of INTERFACE.md plus the feature space and parameters), every image is a distinct
   training image of its label (found byte for byte in the IDX file), and the pool's
   objective is below the random subset's (selection_objective < selection_objective_random).
2. Deterministic: a second run gives the same tensors; the seed does not change the picks.
3. `d2c condense` without --method is kherding below 3% of the data and gadc from 3% on (the
   default, docs/CONDENSATION.md).
4. --init kherding / gadc / facility for a learned method: with --iters 0 the d2c pool is exactly the
   selection, and its metadata records the initialisation.
5. The parameters reach the method: --pca-dim 20 and --bandwidth 0.5 are recorded and change
   the picks; --gadc-passes 0 (the greedy start) has a higher objective than the refined one;
   facility --mmd-weight 10 is recorded and lowers the picks' MMD (selection_mmd2) below facility
   alone's, which has the lower coverage objective (selection_facility).
(Bad values of the new options are cases of bad_input: tests/test_bad_input.py.)
"""
import os

from test_cli_common import FMNIST, THREADS, check, d2c_ok, finish, np, read_idx_images, read_idx_labels, setup, st, \
    tensors_equal

EXE, WORK = setup("select")
X = read_idx_images(os.path.join(FMNIST, "train-images-idx3-ubyte.gz"), 60000)
Y = read_idx_labels(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"), 60000)
TRAIN = {x.tobytes(): i for i, x in enumerate(X)}  # Fashion-MNIST's training images are distinct


def condense(name, *args):
    out = os.path.join(WORK, f"{name}.safetensors")
    r = d2c_ok(name, EXE, "condense", "--data", "fashion-mnist", "--out", out, "--threads", THREADS, "--quiet", *args)
    return (st.load(out) if r.rc == 0 and os.path.exists(out) else (None, None)), r


def valid_pool(name, t, meta, method, ipc):
    x, y = t.get("images"), t.get("labels")
    ok = x is not None and y is not None and x.dtype == np.float32 and y.dtype == np.int64 and \
        x.shape == (10 * ipc, 1, 28, 28) and y.shape == (10 * ipc,) and np.isfinite(x).all() and \
        x.min() >= -1 and x.max() <= 1
    check(f"{name}: images F32 ({10 * ipc}, 1, 28, 28) in [-1, 1], labels I64", ok,
          "" if x is None else f"{x.dtype}{x.shape}")
    if not ok:
        return
    check(f"{name}: {ipc} images per class", (np.bincount(y, minlength=10) == ipc).all(), str(np.bincount(y)))
    found = [TRAIN.get(img.tobytes(), -1) for img in x]
    check(f"{name}: every image is a distinct training image of its label",
          all(i >= 0 and Y[i] == lab for i, lab in zip(found, y)) and len(set(found)) == len(found))
    want = {"method": method, "source": "fashion-mnist:train", "seed": "0", "ipc": str(ipc), "features": "pca",
            "pca_dim": "50", "pca_fit": "fashion-mnist:train", "format": "d2c-pool-1"}
    wrong = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
    check(f"{name}: metadata {sorted(want)}", not wrong, str(wrong))
    check(f"{name}: ratio recorded", abs(float(meta.get("ratio", "nan")) - ipc / 6000) < 1e-9, meta.get("ratio", ""))
    params = {"kherding": ["bandwidth", "kernel", "kernel_sigma_mean"],
              "gadc": ["gadc_lambda", "gadc_passes", "gadc_passes_run", "gadc_swaps"],
              "facility": ["bandwidth", "kernel", "kernel_sigma_mean", "mmd_weight", "selection_facility",
                           "selection_mmd2", "facility_gain_evaluations"]}[method]
    check(f"{name}: parameters {params} recorded", all(k in meta for k in params), str(sorted(meta)))
    obj, rnd = float(meta.get("selection_objective", "nan")), float(meta.get("selection_objective_random", "nan"))
    check(f"{name}: objective below the random subset's", obj < rnd, f"{obj:.4g} vs {rnd:.4g}")
    pev = float(meta.get("pca_explained_variance", "nan"))
    check(f"{name}: PCA explained variance in (0.5, 1)", 0.5 < pev < 1, f"{pev:.4f}")


METHODS = ("kherding", "gadc", "facility")
pools = {}
for method in METHODS:
    for ratio, ipc in (("0.001", 6), ("0.01", 60)):
        name = f"{method}_{ratio}"
        (t, meta), _ = condense(name, "--method", method, "--ratio", ratio)
        if t is not None:
            valid_pool(name, t, meta, method, ipc)
            pools[name] = (t, meta)

# 2. determinism; the seed only picks the random comparison
for method in METHODS:
    (t, meta), _ = condense(f"{method}_again_seed5", "--method", method, "--ratio", "0.001", "--seed", 5)
    if t is not None and f"{method}_0.001" in pools:
        ok, why = tensors_equal(t, pools[f"{method}_0.001"][0])
        check(f"{method}: same pool on a second run and with another seed", ok, why)

# 3. the default method
(t, meta), _ = condense("default", "--ratio", "0.001")
if t is not None:
    check("no --method: kherding", meta.get("method") == "kherding", meta.get("method", ""))
    if "kherding_0.001" in pools:
        ok, why = tensors_equal(t, pools["kherding_0.001"][0])
        check("no --method: the kherding pool", ok, why)
# from 3% of the data on, the default is gadc (condense_method_for_budget)
(t, meta), _ = condense("default_3pct", "--ratio", "0.03")
if t is not None:
    check("no --method at 3%: gadc", meta.get("method") == "gadc", meta.get("method", ""))

# 4. --init for a learned method
for init in METHODS:
    (t, meta), _ = condense(f"d2c_init_{init}", "--method", "d2c", "--init", init, "--ipc", 6, "--iters", 0,
                            "--eval-nets", 0, "--channels", 8)
    if t is not None and f"{init}_0.001" in pools:
        ok, why = tensors_equal(t, pools[f"{init}_0.001"][0])
        check(f"--init {init} --iters 0: the pool is the {init} selection", ok, why)
        check(f"--init {init}: recorded", meta.get("init") == init and meta.get("method") == "d2c",
              f"{meta.get('method')} init {meta.get('init')}")

# 5. parameters
(t, meta), _ = condense("kherding_pca20_bw05", "--method", "kherding", "--ratio", "0.001", "--pca-dim", 20,
                        "--bandwidth", 0.5)
if t is not None and "kherding_0.001" in pools:
    check("--pca-dim 20 --bandwidth 0.5: recorded", meta.get("pca_dim") == "20" and meta.get("bandwidth") == "0.5",
          f"{meta.get('pca_dim')} {meta.get('bandwidth')}")
    check("--pca-dim 20 --bandwidth 0.5: other picks", not tensors_equal(t, pools["kherding_0.001"][0])[0])
(t, meta), _ = condense("gadc_greedy", "--method", "gadc", "--ratio", "0.001", "--gadc-passes", 0)
if t is not None and "gadc_0.001" in pools:
    refined = pools["gadc_0.001"][1]
    g, r = float(meta["selection_objective"]), float(refined["selection_objective"])
    check("--gadc-passes 0: no swaps, objective above the refined one", meta.get("gadc_swaps") == "0" and g > r and
          int(refined.get("gadc_swaps", 0)) > 0, f"greedy {g:.4g}, refined {r:.4g} ({refined.get('gadc_swaps')} swaps)")
(t, meta), _ = condense("facility_mmd10", "--method", "facility", "--ratio", "0.001", "--mmd-weight", 10)
if t is not None and "facility_0.001" in pools:
    alone = pools["facility_0.001"][1]
    check("--mmd-weight 10: recorded, other picks", meta.get("mmd_weight") == "10" and alone.get("mmd_weight") == "0" and
          not tensors_equal(t, pools["facility_0.001"][0])[0], f"{meta.get('mmd_weight')} {alone.get('mmd_weight')}")
    mb, ma = float(meta["selection_mmd2"]), float(alone["selection_mmd2"])
    cb, ca = float(meta["selection_facility"]), float(alone["selection_facility"])
    check("--mmd-weight 10: lower MMD than facility alone, which covers better", mb < ma and ca < cb,
          f"MMD^2 {mb:.4g} vs {ma:.4g}, 1 - F/n {cb:.4g} vs {ca:.4g}")
finish()
