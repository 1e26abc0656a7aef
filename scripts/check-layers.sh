#!/bin/sh
# scripts/check-layers.sh - the source tree's layering, checked from the includes.
#
# Layers, lowest first: util, cluster, dns, io, node, app (src/*.c and
# include/nodedns/*.h). A file of one layer may include headers of its own
# layer and of the layers below it; io and node are siblings and include
# neither each other. The pure layers (util, cluster, dns) include no libuv,
# curl or pthread header. Prints one line per breach and "layers: ok".
set -u
cd "$(dirname "$0")/.."

rank() {
	case $1 in
	util) echo 0 ;;
	cluster) echo 1 ;;
	dns) echo 2 ;;
	io | node) echo 3 ;;
	*) echo 4 ;;
	esac
}

# The layer of a file of ours: its folder under src/ or include/nodedns/.
layer_of() {
	case $1 in
	src/*/* | include/nodedns/*/*)
		p=${1#src/}
		p=${p#include/nodedns/}
		echo "${p%%/*}"
		;;
	*) echo app ;;
	esac
}

bad=0
for f in $(find src include/nodedns -name '*.[ch]' | sort); do
	me=$(layer_of "$f")
	r=$(rank "$me")
	# Headers of ours, by the layer folder in their path.
	for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
		case $inc in
		nodedns/*/*)
			l=${inc#nodedns/}
			l=${l%%/*}
			;;
		nodedns/*) l=app ;;
		*/*) l=${inc%%/*} ;; # "cluster/k8s_store_internal.h" from tests only
		*) l=$me ;;          # a private header next to the file
		esac
		lr=$(rank "$l")
		if [ "$lr" -gt "$r" ] || { [ "$lr" -eq "$r" ] && [ "$l" != "$me" ]; }; then
			echo "layers: $f ($me) includes $inc ($l)"
			bad=$((bad + 1))
		fi
	done
	if [ "$r" -le 2 ] &&
		grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(uv\.h|uv/|curl/|pthread\.h)' "$f" >/dev/null; then
		grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(uv\.h|uv/|curl/|pthread\.h)' "$f" |
			sed "s|^|layers: $f ($me, pure): |"
		bad=$((bad + 1))
	fi
done
if [ "$bad" -gt 0 ]; then
	echo "layers: $bad breaches"
	exit 1
fi
echo "layers: ok"
