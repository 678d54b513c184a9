#!/usr/bin/env bash
# Runs built fuzz targets for a set time each, some at a time, and prints a summary table
# (target, seconds, executions, executions/s, corpus size, crashes/leaks/timeouts/OOMs).
# Needs only bash and the programs (scripts/fuzz.sh builds them and calls this; it also
# runs on a machine without a compiler, given the programs and their shared libraries).
#   tests/fuzz/campaign.sh BIN_DIR SEED_CORPUS_DIR OUT_DIR SECONDS JOBS [TARGET...]
# BIN_DIR holds fuzz_<name> programs, SEED_CORPUS_DIR/<name>/ their seeds. Per target,
# OUT_DIR/<name>/ gets the corpus it grows (the seeds stay untouched), its log and any
# crash-*, leak-*, timeout-*, oom-* input. OUT_DIR/summary.txt holds the table. Exit
# status 1 if any target found anything. FUZZ_RUNNER (e.g. a dynamic loader and its
# --library-path) is put before each program; FUZZ_EXTRA adds libFuzzer flags.
set -uo pipefail
bin=$1 seeds=$2 out=$3 secs=$4 jobs=$5
shift 5
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$bin"/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f" | sed 's/^fuzz_//')"); done
fi
mkdir -p "$out"
run_one() {
  local t=$1 dir="$out/$1"
  mkdir -p "$dir/corpus"
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: a run past 2.5 GiB is an OOM
  # -close_fd_mask=1: the option parser's --help text goes to stdout, once per such input
  ${FUZZ_RUNNER:-} "$bin/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
    -close_fd_mask=1 ${FUZZ_EXTRA:-} -artifact_prefix="$dir/" "$dir/corpus" "$seeds/$t" >"$dir/log.txt" 2>&1
  echo $? >"$dir/status"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
found=0
{
  printf '%-14s %8s %12s %9s %8s %s\n' target seconds executions "exec/s" corpus findings
  for t in "${targets[@]}"; do
    dir="$out/$t"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log.txt" | tail -1)
    tsec=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$dir/log.txt" | tail -1)
    ncorp=$(find "$dir/corpus" -type f | wc -l)
    art=$(cd "$dir" && ls crash-* leak-* timeout-* oom-* slow-unit-* 2>/dev/null | tr '\n' ' ')
    st=$(cat "$dir/status" 2>/dev/null || echo '?')
    [ -n "$art" ] || [ "$st" != 0 ] && found=1
    rate=$([ -n "$execs" ] && [ -n "$tsec" ] && [ "$tsec" -gt 0 ] && echo $((execs / tsec)) || echo '?')
    printf '%-14s %8s %12s %9s %8s %s\n' "$t" "${tsec:-?}" "${execs:-?}" "$rate" "$ncorp" \
      "$([ -n "$art" ] && echo "$art" || ([ "$st" = 0 ] && echo none || echo "exit $st"))"
  done
} | tee "$out/summary.txt"
exit $found
