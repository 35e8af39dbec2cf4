#!/usr/bin/env bash
# Several hosts for real (issue 14): network namespaces on this machine stand in for hosts.
# A "head" namespace runs mpirun; two host namespaces, each with its own address and hostname,
# hang off a bridge in the head by veth pairs. mpirun reaches them over TCP only (btl tcp,self;
# no shared memory between hosts) through a launcher that enters the namespace of the address
# it is given, as ssh would log in to it. Checks:
#   - every rank runs in its host's namespace, none in the head's (so Open MPI did not take a
#     host for itself and launch it locally);
#   - training across the hosts (1 and 2 ranks per host, mean and refit) gives the model of one
#     process bit for bit;
#   - SIGKILL to one rank's process mid-run ends the whole job, non-zero, with a message, within
#     30 s, and no model is written; the same when a whole host goes (every process in its
#     namespace killed at once, its daemon included, as a power cut would) and when its link
#     goes down (nothing breaks: TCP keepalive has to notice);
#   - host 2's partition models really crossed its link (its veth's byte counter).
# Exits 77 (the CTest skip code) with one line where namespaces cannot be made (not root, no
# `ip`, a container without CAP_SYS_ADMIN, no bridge).
# usage: test_mpi_hosts.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR
set -u
CNNELM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$2
FASHION=$3
skip() { echo "SKIP: $*"; exit 77; }

command -v mpirun >/dev/null || skip "no mpirun (install openmpi-bin)"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip "Fashion-MNIST missing under $FASHION"
[ "$(id -u)" = 0 ] || skip "network namespaces need root (run as root, as CI does)"
command -v ip >/dev/null || skip "no ip command (install iproute2)"
command -v unshare >/dev/null || skip "no unshare command (install util-linux)"

# Names carry our pid, so parallel runs (ctest -j, two builds) never share a namespace.
tag=cnelm$$
HEAD=${tag}head
HOSTS=("${tag}h1" "${tag}h2")
ADDRS=(10.77.0.1 10.77.0.2)
NET=10.77.0.0/24
tmp=$(mktemp -d)
made=()
cleanup() {
  # ip netns del does not end the processes inside: a daemon left over would live on
  for ns in "${made[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null; done # takes its veths with it
  [ -n "${KEEP:-}" ] && cp -r "$tmp" "$KEEP" # KEEP=DIR: keep the outputs, to look into a failure
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Namespaces left by an earlier run of this test that was killed before its trap ran.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cnelm[0-9]+(head|h[0-9])$'); do
  pid=${ns#cnelm}; pid=${pid%head}; pid=${pid%h[0-9]}
  if [ "$pid" != $$ ] && ! kill -0 "$pid" 2>/dev/null; then
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  fi
done

ip netns add "$HEAD" 2>"$tmp/err" || skip "cannot create a network namespace here: $(head -1 "$tmp/err")"
made+=("$HEAD")
ip -n "$HEAD" link set lo up
ip -n "$HEAD" link add br0 type bridge 2>"$tmp/err" || skip "cannot create a bridge in a namespace: $(head -1 "$tmp/err")"
ip -n "$HEAD" addr add 10.77.0.254/24 dev br0
ip -n "$HEAD" link set br0 up
for i in "${!HOSTS[@]}"; do
  ns=${HOSTS[$i]}
  ip netns add "$ns" || skip "cannot create network namespace $ns"
  made+=("$ns")
  ip -n "$ns" link set lo up
  # created straight inside the namespaces: nothing appears in this machine's own network
  ip link add eth0 netns "$ns" type veth peer name "port$i" netns "$HEAD" 2>"$tmp/err" ||
    skip "cannot create a veth pair: $(head -1 "$tmp/err")"
  ip -n "$HEAD" link set "port$i" master br0 up
  ip -n "$ns" addr add "${ADDRS[$i]}/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# The launcher Open MPI calls as it would call ssh: `agent HOST COMMAND...`. It enters HOST's
# network namespace and a UTS namespace named after it (so each host has its own hostname, as
# real hosts do) and runs the command through a shell, as sshd would.
agent=$tmp/agent
{
  echo '#!/bin/sh'
  echo 'host=$1; shift'
  echo 'case $host in'
  for i in "${!HOSTS[@]}"; do echo "  ${ADDRS[$i]}) ns=${HOSTS[$i]} ;;"; done
  echo '  *) echo "agent: no host $host" >&2; exit 1 ;;'
  echo 'esac'
  echo "exec ip netns exec \"\$ns\" unshare --uts sh -c 'hostname \"\$0\" && exec sh -c \"\$1\"' \"\$ns\" \"\$*\""
} >"$agent"
chmod +x "$agent"
for i in "${!HOSTS[@]}"; do echo "${ADDRS[$i]} slots=2"; done >"$tmp/hostfile"

passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
unset OMPI_MCA_btl # test_mpi.sh's shared-memory setting must not leak in: hosts share nothing
# mpirun in the head namespace; the hosts are reached only through the agent (no tree spawn:
# every daemon is started by mpirun's own agent call, so each launch is one we can see). TCP
# keepalive after 3 s idle, 3 probes 1 s apart: a host that drops off the network is given up
# in about 6 s (Open MPI's default, 300 s + 9 x 20 s, would outlast any test; a cluster wants
# the same setting at its own scale).
across() { # across NP TIMEOUT ARGS...: mpirun NP ranks spread over the hosts, round robin
  local np=$1 limit=$2
  shift 2
  timeout --foreground "$limit" ip netns exec "$HEAD" mpirun --hostfile "$tmp/hostfile" --map-by node -np "$np" \
    --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$NET" --mca oob_tcp_if_include "$NET" \
    --mca oob_tcp_keepalive_time 3 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 "$@"
}

# --- 1. where the ranks run: each in its host's namespace, with its host's name ---
across 4 60 sh -c 'echo "rank $OMPI_COMM_WORLD_RANK: netns $(ip netns identify $$) hostname $(hostname)"' \
  >"$tmp/where" 2>&1
where_ok=1
for r in 0 1 2 3; do
  want=${HOSTS[$((r % 2))]}
  grep -qx "rank $r: netns $want hostname $want" "$tmp/where" || where_ok=0
done
if [ $where_ok = 1 ]; then ok; else bad "ranks not in their hosts' namespaces: $(head -6 "$tmp/where" | tr '\n' '|')"; fi
if [ $where_ok = 0 ]; then
  echo "mpi_hosts: $passed passed, $failed failed"
  exit 1
fi

# --- 2. the same model as one process, bit for bit ---
run=(train -q -c "$SRC/conf/paper-fashion.cfg" -s data.train_limit=3000 -s data.test_limit=1000
     -s train.partitions=4 -s 'workers=({backend="cpu";threads=1;})')
for reduce in mean refit; do
  "$CNNELM" "${run[@]}" -s "train.reduce=\"$reduce\"" -o "$tmp/one-$reduce.model" >"$tmp/out" 2>&1 ||
    bad "single process ($reduce) failed: $(tail -2 "$tmp/out")"
done
tx_bytes() { ip -n "${HOSTS[1]}" -s link show eth0 | awk '/TX:/ { getline; print $1; exit }'; }
for np_reduce in 2:mean 4:refit; do
  np=${np_reduce%:*}
  reduce=${np_reduce#*:}
  tx0=$(tx_bytes)
  if across "$np" 300 "$CNNELM" "${run[@]}" -s "train.reduce=\"$reduce\"" -o "$tmp/np$np.model" \
       --report "$tmp/np$np.json" >"$tmp/out" 2>&1; then
    if cmp -s "$tmp/one-$reduce.model" "$tmp/np$np.model"; then ok
    else bad "$np ranks on 2 hosts ($reduce): the model differs from the single-process one"; fi
    if grep -q '"processes": '"$np" "$tmp/np$np.json" && grep -q '"rank": '$((np - 1)) "$tmp/np$np.json"; then ok
    else bad "$np ranks on 2 hosts: the report does not show every rank training"; fi
    # host 2's share left it over its veth: its 128-bit sums of U's triangle and V alone
    # (8 L (L + 1) + 16 L C bytes, docs/reduce.md) outweigh a model file's U
    sent=$(( $(tx_bytes) - tx0 ))
    if [ "$sent" -ge "$(stat -c %s "$tmp/np$np.model")" ]; then ok
    else bad "$np ranks on 2 hosts: host 2 sent only $sent bytes over its link"; fi
  else
    bad "$np ranks on 2 hosts ($reduce) failed: $(tail -3 "$tmp/out")"
  fi
done

# --- 3. a rank, a host or a link lost mid-run: the job ends with a message in bounded time ---
# ranks_in NS: the cnnelm processes in a namespace, with their MPI rank ("PID RANK" lines)
ranks_in() {
  for p in $(ip netns pids "$1" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$(basename "$CNNELM" | cut -c1-15)" ] || continue
    r=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [ -n "$r" ] && echo "$p $r"
  done
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system
long=(train -c "$SRC/conf/paper-fashion.cfg" -s data.train_limit=3000 -s data.test_limit=1000
      -s train.partitions=2 -s train.iterations=20 -s train.learning_rate=0.001
      -s 'workers=({backend="cpu";threads=1;})')
#   rank: SIGKILL to rank 1's process; Open MPI's daemon on host 2 sees it die
#   host: SIGKILL to everything in host 2 (daemon and rank), as a power cut; mpirun's
#         connection to that daemon breaks
#   link: host 2's cable pulled (its bridge port down): nothing breaks, nothing answers; only
#         TCP keepalive (set in across) notices, and host 2's daemon, cut off, ends its rank
for victim in rank host link; do
  rm -f "$tmp/out" "$tmp/kill.model"
  across 2 120 -x CNNELM_MPI_TIMEOUT=10 "$CNNELM" "${long[@]}" -o "$tmp/kill.model" >"$tmp/out" 2>&1 &
  mpid=$!
  # mid-run: both ranks up and rank 1 past reading its data (1.5 s of CPU; the training
  # itself takes several times that), whatever the log lines look like
  for _ in $(seq 600); do
    in1=$(ranks_in "${HOSTS[0]}")
    in2=$(ranks_in "${HOSTS[1]}")
    [ -n "$in1" ] && [ -n "$in2" ] && [ "$(cpu_ticks "${in2%% *}")" -ge $((3 * $(getconf CLK_TCK) / 2)) ] && break
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.1
  done
  # the cnnelm ranks, seen from outside: rank 0 in host 1's namespace, rank 1 in host 2's
  inhead=$(ranks_in "$HEAD")
  if [ "$(echo "$in1" | awk '{print $2}')" = 0 ] && [ "$(echo "$in2" | awk '{print $2}')" = 1 ] && [ -z "$inhead" ]; then ok
  else bad "$victim: cnnelm ranks not where expected: host 1: [$in1] host 2: [$in2] head: [$inhead]"; fi
  target=$(echo "$in2" | awk 'NR == 1 {print $1}')
  if [ -z "$target" ]; then
    bad "$victim: no rank to strike on host 2: $(tail -2 "$tmp/out")"
    wait "$mpid"
    continue
  fi
  case $victim in
    rank) kill -KILL "$target" ;;
    host) kill -KILL $(ip netns pids "${HOSTS[1]}") ;;
    link) ip -n "$HEAD" link set port1 down ;;
  esac
  start=$(date +%s)
  wait "$mpid"
  code=$?
  took=$(( $(date +%s) - start ))
  # Open MPI names the lost process or host
  case $victim in
    rank) said="process rank 1 with PID $target on node ${ADDRS[1]} exited on signal 9" ;;
    *) said="lost communication with a remote daemon" ;;
  esac
  if [ $code != 0 ] && [ $code != 124 ] && [ $took -lt 30 ] && [ ! -e "$tmp/kill.model" ] && grep -qE "$said" "$tmp/out"; then
    ok
    echo "$victim lost: the job ended $took s later, exit $code: $(grep -m1 -oE "$said" "$tmp/out")"
  else
    bad "$victim lost: exit $code after $took s: $(grep -m3 -iE 'error|signal|lost|abort' "$tmp/out" | tr '\n' '|')"
  fi
  # rank 0 was told to stop (SIGTERM) and says so: nothing saved, or, when mpirun's SIGKILL
  # comes before the step in progress ends (a loaded machine), at least that it was stopping
  if [ $victim = link ] || grep -qE "cnnelm: error: rank 0: .*nothing was saved|cnnelm: interrupted: stopping" "$tmp/out"; then ok
  else bad "$victim lost: rank 0 did not say it was stopped: $(grep 'cnnelm:' "$tmp/out" | tr '\n' '|')"; fi
  # nothing of the job outlives it on any host. Cut off, host 2's daemon ends its rank but not
  # itself: it lingers on a send to mpirun that TCP retransmits for many minutes (Open MPI's
  # doing, not ours; the cleanup ends it), so there only the cnnelm processes are counted.
  for _ in $(seq 300); do
    if [ $victim = link ]; then left=$(for ns in "${made[@]}"; do ranks_in "$ns"; done | wc -l)
    else left=$(for ns in "${made[@]}"; do ip netns pids "$ns"; done | wc -l); fi
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  if [ "$left" = 0 ]; then ok; else bad "$victim lost: $left process(es) of the job still alive 30 s later"; fi
done

echo "mpi_hosts: $passed passed, $failed failed"
[ "$failed" = 0 ]
