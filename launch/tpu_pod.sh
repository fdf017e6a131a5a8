#!/usr/bin/env bash
# Train irl_lm on a Cloud TPU VM: a single host or a multi-host pod slice.
#
#   1. creates the TPU VM, or reuses it (a preempted spot VM is recreated);
#   2. installs irl_lm on every worker, in a uv virtualenv (Python >= 3.11);
#   3. runs `python -m irl_lm.main` on all workers at once, streaming their logs;
#   4. optionally deletes the VM when the script exits.
#
# Workdirs live in a bucket (gs://BUCKET/RUN_NAME); rerunning with the same
# run name resumes from the last checkpoint. Run `launch/tpu_pod.sh --help`.
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "tpu_pod.sh needs bash >= 4.4 (on macOS: brew install bash)" >&2
  exit 2
fi

readonly REMOTE_SRC=irl_lm_src    # checkout on each worker, under $HOME
readonly REMOTE_VENV=irl_lm_venv  # virtualenv on each worker, under $HOME
readonly EXIT_PREEMPTED=75         # irl_lm.main's exit status after a pre-emption checkpoint
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly CHECKOUT

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [FLAGS] [--config.KEY=VALUE ...] [-- MORE_MAIN_ARGS ...]

Runs `python -m irl_lm.main --config=CONFIG --workdir=gs://BUCKET/RUN_NAME`
on every worker of a TPU VM. Each flag can also be set by the environment
variable in brackets; flags win.

Required:
  --project ID            GCP project [PROJECT, else CLOUDSDK_CORE_PROJECT]
  --zone ZONE             e.g. us-central2-b [ZONE, else CLOUDSDK_COMPUTE_ZONE]
  --accelerator-type T    e.g. v5litepod-16, v4-32 [ACCELERATOR_TYPE]
  --bucket B              bucket (and optional prefix) for workdirs,
                          e.g. my-bucket or gs://my-bucket/irl_lm [BUCKET]
  --config PATH           config file, relative to the source checkout,
                          e.g. configs/quickstart.py [CONFIG]
Optional:
  --tpu-name NAME         TPU VM name (default irl-lm) [TPU_NAME]
  --runtime-version V     TPU software version (default: derived from the
                          accelerator type) [RUNTIME_VERSION]
  --run-name NAME         workdir name under the bucket (default: the config
                          file's name); reuse it to resume [RUN_NAME]
  --source DIR|GIT_URL    what to install: a local checkout to copy (default:
                          the checkout holding this script) or a git URL to
                          clone on the workers [SOURCE]
  --git-ref REF           branch or tag to clone with a git URL [GIT_REF]
  --python-version X      worker Python (default 3.11) [PYTHON_VERSION]
  --create-args "ARGS"    extra `tpu-vm create` flags, e.g. "--network=N"
                          [CREATE_ARGS]
  --spot                  create a spot VM [SPOT=1]
  --preemptible           create a preemptible VM [PREEMPTIBLE=1]
  --skip-install          reuse the workers' existing install [SKIP_INSTALL=1]
  --relaunches N          after a pre-emption (irl_lm.main exits 75 once its
                          SIGTERM checkpoint is saved, or the VM is gone),
                          recreate the VM if needed and resume, up to N
                          times (default 0) [RELAUNCHES]
  --delete                delete the TPU VM when this script exits, also on
                          failure or Ctrl-C [DELETE_AT_END=1]
  --dry-run               print the commands (`+ ...`), run nothing [DRY_RUN=1]
  -h, --help              show this help

Arguments `--config.KEY=VALUE`, and everything after `--`, are passed to
irl_lm.main unchanged.

Example:
  launch/tpu_pod.sh --project my-proj --zone us-west4-a \
    --accelerator-type v5litepod-16 --bucket my-bucket \
    --config configs/quickstart.py --spot --dry-run --config.train.steps=100
EOF
}

die() {
  echo "tpu_pod.sh: error: $*" >&2
  exit 2
}

# Shell-quotes each argument (like Python's shlex.quote) and joins them.
quote() {
  local arg words=()
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      words+=("$arg")
    else
      words+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${words[*]}"
}

# Commands and notes go to fd 3: stdout in a dry run, stderr otherwise.
show() { echo "+ $(quote "$@")" >&3; }
note() { echo "# $*" >&3; }

# Prints a command, then runs it unless this is a dry run.
run() {
  show "$@"
  if ((!DRY_RUN)); then "$@"; fi
}

# Settings from the environment; flags parsed below override them.
PROJECT=${PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}
ZONE=${ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-}
BUCKET=${BUCKET:-}
CONFIG=${CONFIG:-}
TPU_NAME=${TPU_NAME:-irl-lm}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
RUN_NAME=${RUN_NAME:-}
SOURCE=${SOURCE:-$CHECKOUT}
GIT_REF=${GIT_REF:-}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
CREATE_ARGS=${CREATE_ARGS:-}
SPOT=${SPOT:-0}
PREEMPTIBLE=${PREEMPTIBLE:-0}
SKIP_INSTALL=${SKIP_INSTALL:-0}
RELAUNCHES=${RELAUNCHES:-0}
DELETE_AT_END=${DELETE_AT_END:-0}
DRY_RUN=${DRY_RUN:-0}
MAIN_ARGS=()  # --config.* overrides and anything after `--`

parse_flags() {
  while (($#)); do
    case $1 in
      --config.*) MAIN_ARGS+=("$1"); shift; continue ;;
      --) shift; MAIN_ARGS+=("$@"); return ;;
      --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;  # --flag=value -> --flag value
    esac
    case $1 in
      --project|--zone|--accelerator-type|--bucket|--config|--tpu-name|--runtime-version|\
      --run-name|--source|--git-ref|--python-version|--create-args|--relaunches)
        (($# >= 2)) || die "$1 needs a value"
        set_flag "$1" "$2"
        shift 2 ;;
      --spot) SPOT=1; shift ;;
      --preemptible) PREEMPTIBLE=1; shift ;;
      --skip-install) SKIP_INSTALL=1; shift ;;
      --delete) DELETE_AT_END=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
}

set_flag() {
  case $1 in
    --project) PROJECT=$2 ;;
    --zone) ZONE=$2 ;;
    --accelerator-type) ACCELERATOR_TYPE=$2 ;;
    --bucket) BUCKET=$2 ;;
    --config) CONFIG=$2 ;;
    --tpu-name) TPU_NAME=$2 ;;
    --runtime-version) RUNTIME_VERSION=$2 ;;
    --run-name) RUN_NAME=$2 ;;
    --source) SOURCE=$2 ;;
    --git-ref) GIT_REF=$2 ;;
    --python-version) PYTHON_VERSION=$2 ;;
    --create-args) CREATE_ARGS=$2 ;;
    --relaunches) RELAUNCHES=$2 ;;
  esac
}

# The TPU software version that suits an accelerator type.
default_runtime_version() {
  case $1 in
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    *) die "no default runtime version for '$1'; pass --runtime-version (or RUNTIME_VERSION)" ;;
  esac
}

check_settings() {
  local missing=()
  [[ -n $PROJECT ]] || missing+=("--project (or PROJECT / CLOUDSDK_CORE_PROJECT)")
  [[ -n $ZONE ]] || missing+=("--zone (or ZONE / CLOUDSDK_COMPUTE_ZONE)")
  [[ -n $ACCELERATOR_TYPE ]] || missing+=("--accelerator-type (or ACCELERATOR_TYPE)")
  [[ -n $BUCKET ]] || missing+=("--bucket (or BUCKET)")
  [[ -n $CONFIG ]] || missing+=("--config (or CONFIG)")
  [[ $RELAUNCHES =~ ^[0-9]+$ ]] || die "--relaunches must be a whole number, got '$RELAUNCHES'"
  if ((${#missing[@]})); then
    printf 'tpu_pod.sh: error: missing required setting %s\n' "${missing[@]}" >&2
    echo "Run with --help for usage." >&2
    exit 2
  fi
  if [[ -d $SOURCE && ! -f $SOURCE/${CONFIG%%:*} ]]; then
    die "config '${CONFIG%%:*}' not found in $SOURCE (--config is relative to --source)"
  fi
  if ((!DRY_RUN)) && ! command -v gcloud >/dev/null; then
    die "gcloud not found; install the Google Cloud CLI"
  fi
}

# Fills in the settings derived from others.
derive_settings() {
  RUNTIME_VERSION=${RUNTIME_VERSION:-$(default_runtime_version "$ACCELERATOR_TYPE")}
  if [[ -z $RUN_NAME ]]; then
    RUN_NAME=$(basename "${CONFIG%%:*}")
    RUN_NAME=${RUN_NAME%.py}
  fi
  BUCKET=${BUCKET#gs://}
  WORKDIR=gs://${BUCKET%/}/$RUN_NAME
  LOCATION=(--project="$PROJECT" --zone="$ZONE")
}

vm() { run gcloud compute tpus tpu-vm "$@"; }

create_vm() {
  local flags=(--accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION")
  if ((SPOT)); then flags+=(--spot); fi
  if ((PREEMPTIBLE)); then flags+=(--preemptible); fi
  local extra=()
  read -r -a extra <<<"$CREATE_ARGS"
  vm create "$TPU_NAME" "${LOCATION[@]}" "${flags[@]}" "${extra[@]}"
}

# Creates the TPU VM unless a usable one exists; a preempted one is recreated.
ensure_vm() {
  local describe=(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOCATION[@]}" --format='value(state)')
  local state=""
  show "${describe[@]}"
  if ((DRY_RUN)); then
    note "dry run: assuming TPU VM $TPU_NAME does not exist"
  else
    state=$("${describe[@]}" 2>/dev/null) || state=""
  fi
  case $state in
    "") create_vm ;;
    READY) note "reusing TPU VM $TPU_NAME" ;;
    PREEMPTED|TERMINATED)
      note "TPU VM $TPU_NAME is $state; recreating it"
      vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet
      create_vm ;;
    *) die "TPU VM $TPU_NAME is $state; wait until it is READY (or delete it) and rerun" ;;
  esac
}

delete_vm() { vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet; }

# Runs a shell command on every worker at once; their output streams here.
on_workers() { vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all --command="$1"; }

# Copies or clones the source to every worker and installs it with its TPU extra.
install_irl_lm() {
  local fetch
  if [[ -d $SOURCE ]]; then
    local tarball=${TMPDIR:-/tmp}/$REMOTE_SRC-$TPU_NAME.tar.gz
    run tar -czf "$tarball" --exclude=.git --exclude=.venv --exclude=__pycache__ \
      --exclude='*.egg-info' --exclude=.pytest_cache --exclude='./workdir*' -C "$SOURCE" .
    vm scp "$tarball" "$TPU_NAME:$REMOTE_SRC.tar.gz" "${LOCATION[@]}" --worker=all
    fetch="mkdir $REMOTE_SRC && tar -xzf $REMOTE_SRC.tar.gz -C $REMOTE_SRC"
  else
    local branch=()
    if [[ -n $GIT_REF ]]; then branch=(--branch "$GIT_REF"); fi
    fetch="git clone --depth=1 $(quote "${branch[@]}" "$SOURCE") $REMOTE_SRC"
  fi
  # uv brings its own Python: TPU VM images ship an older one than irl_lm needs.
  on_workers "rm -rf $REMOTE_SRC && $fetch \
&& { test -x \$HOME/.local/bin/uv || curl -LsSf https://astral.sh/uv/install.sh | sh; } \
&& \$HOME/.local/bin/uv venv --allow-existing --python $(quote "$PYTHON_VERSION") $REMOTE_VENV \
&& \$HOME/.local/bin/uv pip install --python $REMOTE_VENV/bin/python -e './${REMOTE_SRC}[tpu]'"
}

# Internal IPs of the workers, comma-separated, in worker order.
worker_ips() {
  local describe=(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOCATION[@]}"
                  --format='value(networkEndpoints[].ipAddress)')
  show "${describe[@]}"
  if ((DRY_RUN)); then
    note "dry run: WORKER_IPS stands for the output of that command"
    echo WORKER_IPS
  else
    local ips
    ips=$("${describe[@]}")
    echo "${ips//;/,}"
  fi
}

# Trains on all workers. TPU_WORKER_HOSTNAMES lets irl_lm.main see a pod and
# call jax.distributed.initialize(); JAX then reads the rest from the TPU metadata.
train() {
  local ips main
  ips=$(worker_ips)
  main=$(quote "--config=$CONFIG" "--workdir=$WORKDIR" "${MAIN_ARGS[@]}")
  note "workdir $WORKDIR (rerun with --run-name $RUN_NAME to resume)"
  on_workers "cd $REMOTE_SRC && TPU_WORKER_HOSTNAMES=$ips ../$REMOTE_VENV/bin/python -m irl_lm.main $main"
}

main() {
  parse_flags "$@"
  if ((DRY_RUN)); then exec 3>&1; else exec 3>&2; fi
  check_settings
  derive_settings
  ensure_vm
  if ((DELETE_AT_END)); then trap delete_vm EXIT; fi
  ((SKIP_INSTALL)) || install_irl_lm
  local rc=0 attempt
  for ((attempt = 0; ; attempt++)); do
    rc=0
    train || rc=$?
    # 75: irl_lm.main saved a checkpoint on SIGTERM; 255: ssh lost the (pre-empted) VM.
    if ((rc != EXIT_PREEMPTED && rc != 255)) || ((attempt >= RELAUNCHES)); then
      return "$rc"
    fi
    note "pre-empted (exit $rc); relaunch $((attempt + 1)) of $RELAUNCHES resumes $WORKDIR"
    ensure_vm
    ((SKIP_INSTALL)) || install_irl_lm
  done
}

main "$@"
