#!/bin/sh
# deploy/build-image.sh - `make image`: build deploy/Dockerfile with podman or docker.
#
# Usage: deploy/build-image.sh [TAG]        (default nodedns:<version of the binary>)
#
# The engine is podman when installed, else docker. The Dockerfile builds on
# debian:bookworm and runs on debian:bookworm-slim; when the engine has
# neither and cannot pull them (no registry reachable), the base is made
# here with debootstrap from this machine's own apt sources (read now, from
# /etc/apt), trimmed like Debian's slim images, and imported under both
# names. Prints the image's size and the time taken.
#
# podman runs with the runc runtime when it is installed (crun fails on some
# kernels' cgroup setups), ulimits under the usual hard limits of a sandbox
# (NODEDNS_IMAGE_ULIMITS overrides them), and the host network for apt.
set -eu
cd "$(dirname "$0")/.."
start=$(date +%s)

if command -v podman >/dev/null 2>&1; then
	engine=podman
elif command -v docker >/dev/null 2>&1; then
	engine=docker
else
	echo "image: neither podman nor docker is installed (apt-get install podman runc)" >&2
	exit 1
fi
global=""
build_opts="--network host"
if [ "$engine" = podman ]; then
	command -v runc >/dev/null 2>&1 && global="--runtime runc"
	for u in ${NODEDNS_IMAGE_ULIMITS:-nofile=20000:20000 nproc=4096:4096}; do
		build_opts="$build_opts --ulimit $u"
	done
fi
eng() { # shellcheck disable=SC2086
	"$engine" $global "$@"
}

have_image() {
	eng image inspect "$1" >/dev/null 2>&1
}

# The Debian mirror and suite of this machine's apt sources (deb822 first).
apt_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") s = 1 }
		     /^$/ { if (u && s) { print u; exit } u = ""; s = 0 }
		     END { if (u && s) print u }' "$f" | head -n 1
	done | head -n 1 | grep . && return 0
	awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null | grep .
}

# debian:bookworm and debian:bookworm-slim from debootstrap (minbase), without
# documentation, manual pages and locales, as Debian's slim images are.
make_base() {
	mirror=$(apt_mirror) || { echo "image: no bookworm source in /etc/apt" >&2; exit 1; }
	command -v debootstrap >/dev/null 2>&1 || { echo "image: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
	root=$(mktemp -d /tmp/nodedns-base.XXXXXX)
	trap 'rm -rf "$root"' EXIT
	echo "image: no debian:bookworm base; making one with debootstrap from $mirror" >&2
	debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
		tail -n 20 "$root.log" >&2
		exit 1
	}
	rm -f "$root.log"
	mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
	cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-exclude /usr/share/lintian/*
	EOF
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		APT::Install-Recommends "false";
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
	EOF
	find "$root/usr/share/doc" -mindepth 2 ! -name copyright -type f -delete 2>/dev/null || true
	rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"* \
		"$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
		"$root/var/log/"*.log "$root/var/cache/debconf/"*-old
	tar -C "$root" -c . | eng import - debian:bookworm >/dev/null
	eng tag debian:bookworm debian:bookworm-slim
	rm -rf "$root"
	trap - EXIT
}

for base in debian:bookworm debian:bookworm-slim; do
	have_image "$base" && continue
	if ! timeout 60 "$engine" $global pull -q "docker.io/library/$base" >/dev/null 2>&1; then
		make_base
		break
	fi
done

tag=${1:-nodedns:$(sed -n 's/^#define NODEDNS_VERSION "\(.*\)"/\1/p' include/nodedns/config.h)}
# shellcheck disable=SC2086
eng build $build_opts -f deploy/Dockerfile -t "$tag" .
size=$(eng image inspect --format '{{.Size}}' "$tag")
echo "image: $tag, $((size / 1000000)) MB, built in $(($(date +%s) - start)) s with $engine"
