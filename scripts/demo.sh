#!/usr/bin/env bash
# One-command demo on the embedded defaults: installs what is missing, builds,
# then inside a throwaway "host" network namespace (the machine's own network is
# never touched) creates a network, two sandboxes that ping each other, and an
# isolated second network; prints what tsnet shows; removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
unset NODE_EXTRA_CA_CERTS || true
if [ "$(id -u)" != 0 ]; then echo "run as root (network namespaces need it)" >&2; exit 1; fi
need=()
for t in ip:iproute2 iptables-restore:iptables nsenter:util-linux ping:iputils-ping; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f native/build/Release/tsnet_native.node ] && [ -f dist/src/cli/main.js ] || npm ci --no-audit --no-fund

HOSTNS="tsnet-demo-$$"
WORK="$(mktemp -d /tmp/tsnet-demo.XXXXXX)"
cleanup() {
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
tsnet() { echo "+ tsnet $*" >&2; nsenter --net="/run/netns/$HOSTNS" -- node bin/tsnet.js "$@"; }

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
nsenter --net="$WORK/run/netns/web" -- node -e "require('http').createServer((q, r) => r.end('hello from web, you are ' + q.socket.remoteAddress + '\n')).listen(80)" &
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
tsnet network rm demo
echo "demo finished; everything it made is removed"
