#!/usr/bin/env bash
# One-command demo on the embedded defaults: installs what is missing, builds,
# then inside a throwaway "host" network namespace (the machine's own network is
# never touched) creates a network, two sandboxes that ping each other, and an
# isolated second network; prints what tsnet shows; removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
unset NODE_EXTRA_CA_CERTS || true
if [ "$(id -u)" != 0 ]; then echo "run as root (network namespaces need it)" >&2; exit 1; fi
need=()
for t in ip:iproute2 iptables-restore:iptables nsenter:util-linux ping:iputils-ping busybox:busybox-static curl:curl make:make g++:g++; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
# The container monitor links libseccomp (Docker's default seccomp profile).
[ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
# zstd image layers: native/src/zstd.cc links libzstd.
[ -f /usr/include/zstd.h ] || need+=(libzstd-dev)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f native/build/Release/tsnet-monitor ] && [ -f dist/src/cli/main.js ] || npm ci --no-audit --no-fund

HOSTNS="tsnet-demo-$$"
WORK="$(mktemp -d /tmp/tsnet-demo.XXXXXX)"
cleanup() {
  # Containers first (their monitors, cgroups and rootfs mounts), then the mount namespace holder.
  if [ -n "${HOLDER:-}" ]; then
    ids=$(tsnet ps -aq 2>/dev/null || true)
    [ -n "$ids" ] && tsnet rm -f $ids >/dev/null 2>&1 || true
    rmdir /sys/fs/cgroup/*/"$CGPARENT" 2>/dev/null || true
    kill -9 "$HOLDER" 2>/dev/null || true
  fi
  # The keeper first (it would start the proxy again), then the proxy.
  for f in proxy.keeper.pid proxy.sock.pid; do [ -f "$WORK/run/$f" ] && kill "$(cat "$WORK/run/$f")" 2>/dev/null || true; done
  for p in "$WORK"/run/netns/*; do [ -e "$p" ] && umount -l "$p" 2>/dev/null || true; done
  ip netns del "$HOSTNS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up
export TSNET_ROOT="$WORK/root" TSNET_RUN="$WORK/run"
# Containers' rootfs mounts and namespace pins live in a private mount namespace held by a
# sleeping process, and their cgroups under a parent of the demo's own: the host keeps neither.
unshare --mount --propagation private sleep infinity &
HOLDER=$!
disown "$HOLDER"
CGPARENT="tsnet-demo-$$"
export TSNET_CGROUP_PARENT="$CGPARENT"
sleep 0.2
tsnet() { echo "+ tsnet $*" >&2; nsenter --net="/run/netns/$HOSTNS" --mount="/proc/$HOLDER/ns/mnt" -- node "$REPO/bin/tsnet.js" "$@"; }

tsnet network create --subnet 10.123.0.0/24 demo >/dev/null
tsnet sandbox create --network demo -p 8080:80 web >/dev/null
tsnet sandbox create --network demo client >/dev/null
tsnet sandbox create other >/dev/null
tsnet network ls
tsnet sandbox ls
tsnet sandbox exec client ping -c 2 -W 1 10.123.0.2
if tsnet sandbox exec other ping -c 1 -W 1 10.123.0.2 >/dev/null 2>&1; then
  echo "UNEXPECTED: networks are not isolated" >&2; exit 1
else
  echo "isolation: 'other' (network bridge) cannot reach 'web' (network demo), as intended"
fi
# A tiny web server inside "web", reached through its published port 8080 on the host.
nsenter --mount="/proc/$HOLDER/ns/mnt" -- nsenter --net="$WORK/run/netns/web" -- node -e "require('http').createServer((q, r) => r.end('hello from web, you are ' + q.socket.remoteAddress + '\n')).listen(80)" &
SERVER=$!
sleep 0.5
tsnet port web
echo "+ GET http://10.123.0.1:8080/ (NAT, the gateway address) and http://127.0.0.1:8080/ (userland proxy) from the host namespace" >&2
nsenter --net="/run/netns/$HOSTNS" -- node -e "
const get = (u) => new Promise((ok) => require('http').get(u, (r) => { let b = ''; r.on('data', (d) => b += d); r.on('end', () => ok(b.trim())); }).on('error', (e) => ok('error ' + e.code)));
(async () => { console.log(await get('http://10.123.0.1:8080/')); console.log(await get('http://127.0.0.1:8080/')); })();"
kill $SERVER
tsnet network inspect demo | head -n 30
tsnet sandbox rm web client other >/dev/null

# Containers: an image from busybox-static, a web server on the demo network with a published
# port, a second container that reaches it by address, exec, logs, and removal.
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/www"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$WORK/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
echo 'hello from a tsnet container' > "$WORK/www/index.html"
tar -C "$WORK/rootfs" -cf "$WORK/busybox.tar" .
tsnet image import "$WORK/busybox.tar" busybox >/dev/null
tsnet run -d --name httpd --network demo -p 8081:80 -v "$WORK/www:/www:ro" --memory 64m busybox httpd -f -p 80 -h /www >/dev/null
tsnet ps
IP=$(tsnet inspect -f '{{.NetworkSettings.IPAddress}}' httpd)
tsnet run --rm --network demo busybox ping -c 1 -W 1 "$IP"
echo "+ GET http://127.0.0.1:8081/ from the host namespace" >&2
nsenter --net="/run/netns/$HOSTNS" -- curl -s http://127.0.0.1:8081/
tsnet exec httpd sh -c 'echo "exec: pid 1 is $(cat /proc/1/cmdline | tr "\0" " ")"'
tsnet stop -t 1 httpd >/dev/null
tsnet logs httpd
tsnet rm httpd >/dev/null
tsnet network rm demo
echo "demo finished; everything it made is removed"
