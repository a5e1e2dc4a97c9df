#!/bin/bash
# Bad configs and command lines through the real binary: syntax errors, wrong
# types, unknown keys, out-of-range and overflowing values, unreadable config
# files (a directory, a FIFO, a dangling symlink, included ones too), backings
# that are missing, a directory, a FIFO, a character device or empty, block
# sizes that are not a multiple of 512, duplicate or clashing device names
# and bad mount points. Each stops start-up with a message naming the problem
# and a nonzero status, before anything is mounted, and without a hang.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
need_fuse
need_tools timeout mkfifo mountpoint
# libconfig's own leaks on syntax errors are not the daemon's (see the file).
SUPP=$(cd "$(dirname "$0")/../fuzz" && pwd)/lsan.supp
export LSAN_OPTIONS=suppressions=$SUPP

MNT=$TMP/fuse
BACKING=$TMP/backing.img
CONF=$TMP/bad.conf
mkdir -p "$MNT" "$TMP/dir" "$TMP/sub"
truncate -s 8M "$BACKING"
mkfifo "$TMP/fifo"
ln -s "$TMP/nowhere" "$TMP/dangling"
: >"$TMP/empty.img"
truncate -s 100 "$TMP/tiny.img"
truncate -s 32K "$TMP/small.img"
CASES=0

# nothing_mounted: neither the mount point nor any other path of ours is a mount.
nothing_mounted() {
	if grep -F " $TMP" /proc/self/mounts >&2; then
		fail "$1: something got mounted"
	fi
}

# bad_start WANT ARGS...: bufiofs ARGS exits nonzero within 30 s, nothing
# mounted, and its message contains WANT (and no sanitizer report).
bad_start() {
	local want=$1 rc=0 out
	shift
	CASES=$((CASES + 1))
	out=$(timeout -k 5 30 "$BUFIOFS" "$@" 2>&1 </dev/null) || rc=$?
	[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "bufiofs $* hung (killed after 30 s)"
	[ "$rc" -ne 0 ] || fail "bufiofs $* exited 0; wanted: $want"
	case "$out" in
	*"$want"*) ;;
	*) fail "bufiofs $*: wanted '$want' in: $out" ;;
	esac
	case "$out" in
	*Sanitizer* | *"runtime error"*) fail "bufiofs $*: sanitizer report: $out" ;;
	esac
	nothing_mounted "bufiofs $*"
}

# bad_conf WANT TEXT: the config TEXT (printf %b) with "-f -c CONF MNT".
bad_conf() {
	printf '%b' "$2" >"$CONF"
	bad_start "$1" -f -c "$CONF" "$MNT"
}

DEV="devices = ( { backing = \"$BACKING\"; } );"

log "syntax errors: FILE:LINE and what is wrong"
bad_conf "$CONF:2: syntax error" "max_age_seconds = 60;\nfoo = ;\n$DEV\n"
bad_conf "$CONF:2: syntax error" "max_age_seconds = \"60;\n$DEV\n"
bad_conf "$CONF:3: syntax error" "$DEV\n\n} max_age_seconds = 1;\n"
bad_conf "$CONF:2: a NUL byte: not a text file" "$DEV\nmax_age\0_seconds = 1;\n"
bad_conf "$CONF:1: syntax error" '\xff\xfe\x01\x02'
bad_conf "$CONF:1: duplicate setting" "max_age_seconds = 1; max_age_seconds = 2;\n$DEV\n"

log "wrong types"
bad_conf "max_age_seconds: wrong type: expected an integer or a string, got a float" \
	"max_age_seconds = 1.5;\n$DEV\n"
bad_conf "foreground: wrong type: expected a boolean, got a string" "foreground = \"yes\";\n$DEV\n"
bad_conf "mountpoint: wrong type: expected a string, got an integer" "mountpoint = 3;\n$DEV\n"
bad_conf "devices: wrong type: expected a list" "devices = { backing = \"$BACKING\"; };\n"
bad_conf "each device must be a group" "devices = ( \"$BACKING\" );\n"
bad_conf "cache_mode: wrong type: expected a string, got an integer" \
	"devices = ( { backing = \"$BACKING\"; cache_mode = 2; } );\n"
bad_conf "readonly: wrong type: expected a boolean, got an integer" \
	"devices = ( { backing = \"$BACKING\"; readonly = 1; } );\n"
bad_conf "retain_bytes: wrong type: expected an integer or a string, got a list or array" \
	"retain_bytes = [ 1, 2 ];\n$DEV\n"

log "unknown keys, read-only ones, keys in the wrong place"
bad_conf "$CONF:2: unknown setting \"max_age_secs\"" "$DEV\nmax_age_secs = 1;\n"
bad_conf "unknown device setting \"cache_mod\"" \
	"devices = ( { backing = \"$BACKING\"; cache_mod = \"none\"; } );\n"
bad_conf "hits is read-only" "hits = 3;\n$DEV\n"
bad_conf "flush is an action" "devices = ( { backing = \"$BACKING\"; flush = 1; } );\n"
bad_conf "max_age_seconds is a global setting" \
	"devices = ( { backing = \"$BACKING\"; max_age_seconds = 3; } );\n"
bad_conf "backing is a device setting" "backing = \"$BACKING\";\n"

log "out-of-range and overflowing values"
bad_conf "max_age_seconds: invalid value \"2592001\": out of range 0..2592000" \
	"max_age_seconds = 2592001;\n$DEV\n"
bad_conf "max_age_seconds: out of range: -1 is negative" "max_age_seconds = -1;\n$DEV\n"
bad_conf "$CONF:1: integer 4294967301 does not fit in 32 bits" "max_age_seconds = 4294967301;\n$DEV\n"
bad_conf "$CONF:1: integer 99999999999999999999 does not fit in 64 bits" \
	"max_cache_size_bytes = 99999999999999999999;\n$DEV\n"
bad_conf "integer 18446744073709551616L does not fit in 64 bits" \
	"retain_bytes = 18446744073709551616L;\n$DEV\n"
bad_conf "max_cache_size_bytes: invalid value \"99999999999T\": too large" \
	"max_cache_size_bytes = \"99999999999T\";\n$DEV\n"
bad_conf "max_cache_size_bytes: invalid value \"18446744073709551616\": too large" \
	"max_cache_size_bytes = \"18446744073709551616\";\n$DEV\n"
bad_conf "retain_bytes: invalid value \"1.5G\": not a byte count" "retain_bytes = \"1.5G\";\n$DEV\n"
bad_conf "writeback_ratio: invalid value \"1001\": out of range 0..1000" \
	"devices = ( { backing = \"$BACKING\"; writeback_ratio = 1001; } );\n"
bad_conf "cache_mode: invalid value \"fast\": expected one of writeback, writethrough, none" \
	"devices = ( { backing = \"$BACKING\"; cache_mode = \"fast\"; } );\n"
bad_conf "io_engine: invalid value \"aio\": expected auto, io_uring or threads" \
	"devices = ( { backing = \"$BACKING\"; io_engine = \"aio\"; } );\n"

log "block sizes"
for bs in 1000 4097 1536.0; do
	want="not a multiple of 512"
	[ "$bs" = 1536.0 ] && want="block_size: wrong type: expected an integer or a string, got a float"
	bad_conf "$want" "devices = ( { backing = \"$BACKING\"; block_size = $bs; } );\n"
done
bad_conf "block_size: invalid value \"0\": out of range 512..64M" \
	"devices = ( { backing = \"$BACKING\"; block_size = 0; } );\n"
bad_conf "block_size: invalid value \"128M\": out of range 512..64M" \
	"devices = ( { backing = \"$BACKING\"; block_size = \"128M\"; } );\n"
bad_conf "block_size: out of range: -4096 is negative" \
	"devices = ( { backing = \"$BACKING\"; block_size = -4096; } );\n"
bad_start "-o block_size: invalid value \"1K1\": not a byte count" -f -o block_size=1K1 "$BACKING" "$MNT"
bad_start "backing is smaller than one block (65536 bytes)" -f -o block_size=64K "$TMP/small.img" "$MNT"

log "device names: duplicate, clashing with control files, unusable"
bad_conf "$CONF:3: duplicate device name \"disk\"" \
	"devices = (\n { backing = \"$BACKING\"; },\n { backing = \"$TMP/small.img\"; name = \"disk\"; }\n);\n"
bad_conf "name: invalid value \"metrics\": not a usable file name: control/ has a global file" \
	"devices = ( { backing = \"$BACKING\"; name = \"metrics\"; } );\n"
bad_conf "name: invalid value \"control\": not a usable file name" \
	"devices = ( { backing = \"$BACKING\"; name = \"control\"; } );\n"
bad_conf "name: invalid value \"a/b\": not a usable file name" \
	"devices = ( { backing = \"$BACKING\"; name = \"a/b\"; } );\n"
bad_conf "device \"d\": missing backing" "devices = ( { name = \"d\"; } );\n"
bad_conf "$BACKING: already served" \
	"devices = ( { backing = \"$BACKING\"; }, { name = \"b\"; backing = \"$BACKING\"; } );\n"
bad_start "-o name: invalid value \"max_cache_size_bytes\": not a usable file name" \
	-f -o name=max_cache_size_bytes "$BACKING" "$MNT"
printf 'devices = ( { backing = "%s"; }, { name = "b"; backing = "%s"; } );\n' "$BACKING" \
	"$TMP/small.img" >"$CONF"
bad_start "-o name: duplicate device name \"b\"" -f -c "$CONF" -o disk.name=b "$MNT"

log "config files that cannot be read: missing, a directory, a FIFO, a dangling symlink, empty"
bad_start "$TMP/missing.conf: cannot read: No such file or directory" -f -c "$TMP/missing.conf" "$MNT"
bad_start "$TMP/dir: cannot read: not a regular file (it is a directory)" -f -c "$TMP/dir" "$MNT"
bad_start "$TMP/fifo: cannot read: it is a FIFO and nothing was written to it" -f -c "$TMP/fifo" "$MNT"
bad_start "$TMP/dangling: cannot read: No such file or directory" -f -c "$TMP/dangling" "$MNT"
bad_start "no device to serve" -f -c "$TMP/empty.img" "$MNT"
bad_start "no device to serve" -f -c /dev/null "$MNT"
bad_start "/dev/zero: cannot read: larger than 16 MiB" -f -c /dev/zero "$MNT"
bad_conf "mountpoint: empty path" "mountpoint = \"\";\n$DEV\n"
log "included files that cannot be read, or hold bad values"
bad_conf "$TMP/sub: cannot read: not a regular file (it is a directory)" "$DEV\n@include \"sub\"\n"
bad_conf "$TMP/fifo: cannot read: not a regular file (it is a FIFO)" "$DEV\n@include \"fifo\"\n"
bad_conf "$TMP/nothing.conf: cannot read: No such file or directory" "$DEV\n@include \"nothing.conf\"\n"
bad_conf "$CONF:2: @include nested more than 10 deep" "$DEV\n@include \"bad.conf\"\n"
printf '\nmax_age_seconds = 3000000000;\n' >"$TMP/inc.conf"
bad_conf "inc.conf:2: integer 3000000000 does not fit in 32 bits" "$DEV\n@include \"inc.conf\"\n"
printf 'max_age_seconds = 30;\nbogus = 1;\n' >"$TMP/inc.conf"
bad_conf "inc.conf:2: unknown setting \"bogus\"" "$DEV\n@include \"inc.conf\"\n"

log "backings that cannot be served"
bad_start "$TMP/missing.img: cannot open: No such file or directory" -f "$TMP/missing.img" "$MNT"
bad_start "$TMP/dir: not a regular file or block device (it is a directory)" -f "$TMP/dir" "$MNT"
bad_start "$TMP/fifo: not a regular file or block device (it is a FIFO)" -f "$TMP/fifo" "$MNT"
bad_start "/dev/null: not a regular file or block device (it is a character device)" \
	-f /dev/null "$MNT"
bad_start "$TMP/dangling: cannot open: No such file or directory" -f "$TMP/dangling" "$MNT"
bad_start "backing nowhere-rel: No such file or directory" -f nowhere-rel "$MNT"
bad_start "$TMP/empty.img: backing is smaller than one block (4096 bytes)" -f "$TMP/empty.img" "$MNT"
bad_start "$TMP/tiny.img: backing is smaller than one block (4096 bytes)" -f "$TMP/tiny.img" "$MNT"
bad_start "$TMP/missing.img: cannot open: No such file or directory" "$TMP/missing.img" "$MNT"

log "bad mount points: missing, a file, the backing itself, a dangling symlink"
bad_start "mount point $TMP/nomnt: No such file or directory" -f "$BACKING" "$TMP/nomnt"
bad_start "mount point $TMP/small.img: not a directory" -f "$BACKING" "$TMP/small.img"
bad_start "mount point $BACKING: not a directory" -f "$BACKING" "$BACKING"
bad_start "mount point $TMP/dangling: No such file or directory" -f "$BACKING" "$TMP/dangling"
printf 'mountpoint = "%s";\n%s\n' "$BACKING" "$DEV" >"$CONF"
bad_start "mount point $BACKING: not a directory" -f -c "$CONF"

log "bad command lines"
bad_start "-o max_age_seconds: invalid value \"99999999999999999999\": too large" \
	-f -o max_age_seconds=99999999999999999999 "$BACKING" "$MNT"
bad_start "-o max_age_seconds: invalid value \"-1\": not a number" -f -o max_age_seconds=-1 "$BACKING" "$MNT"
bad_start "-o cache_mode: invalid value \"fast\"" -f -o cache_mode=fast "$BACKING" "$MNT"
bad_start "-o writeback_ratio: needs a value" -f -o writeback_ratio "$BACKING" "$MNT"
bad_start "-o writeback_ratio: invalid value \"\": empty value" -f -o writeback_ratio= "$BACKING" "$MNT"
bad_start "-o mountpoint: needs a value" -f -o mountpoint= "$BACKING" "$MNT"
bad_start "-o hits: hits is read-only" -f -o hits=1 "$BACKING" "$MNT"
bad_start "unknown option -q" -f -q "$BACKING" "$MNT"
bad_start "option -c needs an argument" -f "$BACKING" "$MNT" -c
bad_start "extra arguments" -f "$BACKING" "$MNT" "$TMP/x"
bad_start "expected BACKING MOUNTPOINT" -f "$BACKING"
bad_start "give only MOUNTPOINT after -c CONFIG" -f -c "$CONF" "$BACKING" "$MNT"
bad_start "unknown option(s)" -f -o no_such_fuse_option "$BACKING" "$MNT"

log "$CASES bad starts refused; good configs still serve: an include and big integers with L, a pipe"
printf 'retain_bytes = "512K";\n' >"$TMP/inc.conf"
printf '%s\n@include "inc.conf"\nmax_cache_size_bytes = 4294967296L;\n' "$DEV" >"$CONF"
start_conf "$CONF" "$MNT"
[ "$(ctl "$MNT" max_cache_size_bytes)" = 4294967296 ] || fail "max_cache_size_bytes = 4294967296L"
[ "$(ctl "$MNT" retain_bytes)" = 524288 ] || fail "retain_bytes from the include"
stop_term "$DAEMON_PID"
start_conf <(printf '%s\nmax_age_seconds = 77;\n' "$DEV") "$MNT"
[ "$(ctl "$MNT" max_age_seconds)" = 77 ] || fail "max_age_seconds from the pipe"
stop_term "$DAEMON_PID"
log "ok"
