#!/usr/bin/env bash
# The GPU measurements of issue 5, for a session that is lent a GPU machine. The device tool
# runs a command in the repository root of a copy of the working tree and brings back what
# it writes under $OUT (at most 8 files; 10 minutes per command), so one part per command:
#
#   bash benchmarks/gpu_session.sh tests    # the CUDA tests            -> $OUT/cuda_tests.txt
#   bash benchmarks/gpu_session.sh bench    # neurosim bench on the GPU, the optimizer and
#                                           # update fused and not -> $OUT/bench.{md,json}
#   bash benchmarks/gpu_session.sh reads    # the same, chips with noisy quantized reads
#                                           # -> $OUT/bench.{md,json} (bench_noisy_reads_h100)
#   bash benchmarks/gpu_session.sh inarray  # the same, in-array (stochastic) updates
#                                           # -> $OUT/bench.{md,json} (bench_in_array_h100)
#   bash benchmarks/gpu_session.sh profile  # a 256-chip step's operators, fused kernels
#                                           # and not -> $OUT/profile_*.txt
#   bash benchmarks/gpu_session.sh run      # a 256-chip population run end to end
#                                           # (benchmarks/configs/population_gpu.yaml)
#                                           # -> $OUT/run.txt (population_gpu_run.md)
#   bash benchmarks/gpu_session.sh runprofile  # the same run under cProfile: where its
#                                           # time goes -> $OUT/run_profile.txt
#   bash benchmarks/gpu_session.sh all      # tests, bench, the two fused profiles (one
#                                           # file, profiles.txt) and run with the time left,
#                                           # in one call under 10 minutes (a machine's start
#                                           # costs minutes of the session's device time: one
#                                           # call, not seven); each part has its own time
#                                           # limit, its exit noted in parts.txt
#
# `run` and `runprofile` read MNIST from $NEUROSIM_DATA, which does not travel: here, once,
#   mkdir -p .gpu-data && cp -r ../shared/datasets/mnist .gpu-data/ \
#       && echo /.gpu-data/ >> .git/info/exclude
# then name .gpu-data in the device call's `carry` and run
#   NEUROSIM_DATA=.gpu-data bash benchmarks/gpu_session.sh run   (or runprofile)
#
# The copy has no git history: name the revision measured, expanded here, in the command,
#   NEUROSIM_REVISION=<git rev-parse HEAD> bash benchmarks/gpu_session.sh all
# (neurosim.provenance records it "as given" in bench.json/bench.md and machine.txt).
#
# Every part also writes $OUT/machine.txt. The machine's image has torch with CUDA and
# neurosim's other dependencies except `distributed` (tests/test_sweep.py is left out; it has
# no CUDA tests); neurosim runs from the working tree through PYTHONPATH. Then, here:
#
#   cp <files_at>/bench.json benchmarks/results/bench_h100.json   (and bench.md -> bench_h100.md)
#   .venv/bin/python benchmarks/population_speedup.py benchmarks/results/bench_h100.json \
#       benchmarks/results/bench_numba_2core.json --out benchmarks/results/population_gpu.md
#
# and record the test result in benchmarks/results/cuda_tests.md.
set -euo pipefail
out=${OUT:?set OUT to the folder for the results}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
    echo "neurosim revision ${NEUROSIM_REVISION:-unknown (set NEUROSIM_REVISION)}"
    nvidia-smi -L || true
    "$python" -c 'import platform, numpy, numba, torch
print("python", platform.python_version(), "numpy", numpy.__version__, "numba",
      numba.__version__, "torch", torch.__version__, "cuda", torch.version.cuda)'
} > "$out/machine.txt" 2>&1 || true  # a description, never a reason to stop
if [ "${1:-}" = all ]; then  # parts in order of need, each under its own time limit
    parts="$out/parts.txt"
    PART_LIMIT_S=150 bash "$0" tests || echo "part tests: exit $?" >> "$parts"
    # the memory pass builds every workload again (seconds each at 256 chips): left out here,
    # measured by the `bench` part on its own
    BENCH_FLAGS=--no-memory PART_LIMIT_S=240 bash "$0" bench \
        || echo "part bench: exit $?" >> "$parts"
    for chip in ideal constant_step; do
        timeout 45 "$python" benchmarks/profile_population.py --device cuda --chips 256 \
            --chip "$chip" --fused-update on >> "$out/profiles.txt" 2>&1 \
            || echo "profile $chip: exit $?" >> "$parts"
    done
    left=$((575 - SECONDS))  # the rest of the command's 10 minutes to the run
    if [ "$left" -ge 30 ]; then  # timeout 0 would mean no limit, a negative one an error
        PART_LIMIT_S=$left bash "$0" run || echo "part run: exit $? after ${left} s" >> "$parts"
    else
        echo "part run: skipped, ${left} s left" >> "$parts"
    fi
    echo "all: ${SECONDS} s" >> "$parts"
    exit 0
fi
limit() { timeout "${PART_LIMIT_S:-590}" "$@"; }
case "${1:?which part: tests, bench, reads, inarray, profile, run, runprofile or all}" in
    tests)
        limit "$python" -m pytest -q -m cuda -p no:cacheprovider --ignore=tests/test_sweep.py \
            tests 2>&1 | tee "$out/cuda_tests.txt" ;;
    bench)
        limit "$python" -m neurosim.cli bench --backends torch-cuda --chips ideal,constant_step \
            --configs experiments/paper_mnist.yaml --populations 1,16,64,256 \
            --fused-update off,on ${BENCH_FLAGS:-} --out "$out" ;;
    reads)
        "$python" -m neurosim.cli bench --backends torch-cuda \
            --chips benchmarks/configs/chip_noisy_reads.yaml \
            --configs experiments/paper_mnist.yaml --populations 1,16,64,256 --out "$out" ;;
    inarray)
        "$python" -m neurosim.cli bench --backends torch-cuda \
            --chips benchmarks/configs/chip_in_array.yaml \
            --configs benchmarks/configs/sgd_mnist.yaml --populations 1,16,64,256 --out "$out" ;;
    profile)
        for chip in ideal constant_step; do
            for fused in on off; do
                "$python" benchmarks/profile_population.py --device cuda --chips 256 \
                    --chip "$chip" --fused-update "$fused" > "$out/profile_${chip}_$fused.txt" 2>&1
            done
        done ;;
    run)
        limit "$python" - "$out/run.txt" <<'PYTHON'
import json, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    done = subprocess.run([sys.executable, "-m", "neurosim.cli", "run",
                           "benchmarks/configs/population_gpu.yaml", "--no-run-reports",
                           "--out", "/tmp/population_gpu", "--overwrite"],
                          stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    print(f"exit {done.returncode}, wall {wall:.1f} s", file=log)
    summary = json.load(open("/tmp/population_gpu/default/seed0/summary.json"))
    print(f"seed 0: seconds {summary['seconds']}, samples/s (x 256 chips: chip-samples/s) "
          f"{summary['samples_per_second']}", file=log)
PYTHON
        ;;
    runprofile)
        "$python" -m cProfile -o /tmp/run.prof -m neurosim.cli run \
            benchmarks/configs/population_gpu.yaml --no-run-reports \
            --out /tmp/population_gpu --overwrite > "$out/run_profile.txt" 2>&1
        "$python" -c 'import pstats, sys
pstats.Stats("/tmp/run.prof", stream=sys.stdout).sort_stats("cumulative").print_stats(80)' \
            >> "$out/run_profile.txt" ;;
    *)
        echo "unknown part '$1': tests, bench, reads, inarray, profile, run, runprofile or all" >&2
        exit 2 ;;
esac
