# Shared by the CPU-budget studies (bench/fidelity_study.sh, bench/v2_study.sh); sourced, with
# STUDY set to the study folder.

# spent ARM: trainer CPU-seconds an arm's log records so far (0 for a new arm)
spent() {
  python3 -c 'import json, os, sys
p = sys.argv[1]
print(int(max([json.loads(l).get("cpu_s") or 0 for l in open(p)] if os.path.exists(p) else [0])))' \
    "$STUDY/$1/log.jsonl"
}

# in_pairs FUNCTION ARM...: FUNCTION ARM for every arm, two arms at a time
in_pairs() {
  local run=$1
  shift
  local arms=("$@") i
  for ((i = 0; i < ${#arms[@]}; i += 2)); do
    "$run" "${arms[i]}" &
    if [ $((i + 1)) -lt ${#arms[@]} ]; then "$run" "${arms[i + 1]}" & fi
    wait
  done
}
