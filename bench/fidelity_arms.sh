# The arms of the fidelity recipe study: `arm_args ARM` prints an arm's `m2l train --set` options
# (sourced by bench/fidelity_study.sh and bench/fidelity_long.sh; the arms are described there).
arm_args() {
  case $1 in
    control) echo "--set recipe=fast" ;;
    phase) echo "--set recipe=fast --set phase_weight=4" ;;
    rollout) echo "--set recipe=fast --set rollout_weight=1" ;;
    published) echo "--set recipe=published --set spectral_weight=8 --set aux_fade_start=50 --set aux_fade_steps=150" ;;
    level) echo "--set recipe=fast --set level_weight=4" ;;
    rollout-level) echo "--set recipe=fast --set rollout_weight=1 --set level_weight=16" ;;
    coherence) echo "--set recipe=fast --set rollout_weight=1 --set level_weight=16 --set coherence_weight=4" ;;
    coherence-16) echo "--set recipe=fast --set rollout_weight=1 --set level_weight=16 --set coherence_weight=16" ;;
    speech) echo "--set recipe=fast --set rollout_weight=1 --set level_weight=16 --data ${DATA:?}/speech/train:1" ;;
    coherence-100) echo "--set recipe=fast --set rollout_weight=1 --set level_weight=16 --set coherence_weight=100" ;;
    combined) echo "--set recipe=published --set spectral_weight=8 --set level_weight=16 --set rollout_weight=1" ;;
    *) echo "unknown arm $1" >&2; return 1 ;;
  esac
}
