//go:build linux

package lio

import (
	"fmt"
	"strings"
)

// ReadyLine is printed on the guest console once every target is configured
// and the control service listens.
const ReadyLine = "lio: targets ready"

// failLine prefixes the console line of a configuration step that failed.
const failLine = "lio: setup failed:"

// ControlPort is the guest TCP port of the checksum service.
const ControlPort = 7000

// PortalPort is LIO's iSCSI port in the guest.
const PortalPort = 3260

// backingDir is where the guest keeps the LUN files (tmpfs).
const backingDir = "/tmp/lio"

// controlScript serves one request per connection (busybox nc -ll -e):
//
//	sum PATH OFFSET LENGTH   ->  ok SHA256HEX | err REASON
//
// PATH must be a backing file of the fixture; OFFSET and LENGTH are decimal
// byte counts.
const controlScript = `#!/bin/sh
read -r cmd path off len
case "$cmd" in
sum) ;;
*) echo "err unknown command"; exit 0 ;;
esac
case "$path" in
` + backingDir + `/*.img) ;;
*) echo "err bad path"; exit 0 ;;
esac
case "$path" in *..*) echo "err bad path"; exit 0 ;; esac
for n in "$off" "$len"; do
	case "$n" in ''|*[!0-9]*) echo "err bad number"; exit 0 ;; esac
done
[ -f "$path" ] || { echo "err no such file"; exit 0; }
size=$(stat -c %s "$path")
if [ "$off" -gt "$size" ] || [ "$len" -gt $((size - off)) ]; then echo "err range beyond end of file"; exit 0; fi
s=$(dd if="$path" bs=65536 skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none | sha256sum) || { echo "err dd failed"; exit 0; }
echo "ok ${s%% *}"
`

// guestScript returns the busybox sh payload: configure LIO for f, start the
// control service, print ReadyLine and wait to be killed.
func guestScript(f *Fixture) string {
	var b strings.Builder
	b.WriteString(`T=/sys/kernel/config/target
fail() { echo "` + failLine + ` $*"; dmesg | tail -n 20; exit 1; }
w() { printf %s "$2" > "$1" || fail "write $1"; }
[ -d $T ] || mount -t configfs none /sys/kernel/config || fail "mount configfs"
[ -d $T ] || fail "no $T (target_core_mod not loaded?)"
mkdir -p ` + backingDir + ` || fail "mkdir backing dir"
# backstore NAME SIZE BLOCKSIZE SERIAL
backstore() {
	d=$T/core/fileio_0/$1
	mkdir -p $d || fail "mkdir $d"
	truncate -s $2 ` + backingDir + `/$1.img || fail "truncate $1"
	w $d/control "fd_dev_name=` + backingDir + `/$1.img,fd_dev_size=$2,fd_buffered_io=1"
	# A unit serial, as targetcli always sets: without one LIO lists no
	# VPD pages beyond 0x00 (no Block Limits page).
	w $d/wwn/vpd_unit_serial "$4"
	w $d/enable 1
	[ "$3" = 512 ] || w $d/attrib/block_size $3
}
# lun IQN LUN BACKSTORE
lun() {
	l=$T/iscsi/$1/tpgt_1/lun/lun_$2
	mkdir -p $l || fail "mkdir $l"
	ln -s $T/core/fileio_0/$3 $l/$3 || fail "link $3 to $l"
}
# open IQN: any initiator, no authentication
open() {
	p=$T/iscsi/$1/tpgt_1/attrib
	w $p/generate_node_acls 1
	w $p/cache_dynamic_acls 1
	w $p/demo_mode_write_protect 0
	w $p/authentication 0
}
# acl IQN INITIATOR AUTH LUN... : node ACL mapping each LUN
acl() {
	tpg=$T/iscsi/$1/tpgt_1
	a=$tpg/acls/$2
	w $tpg/attrib/generate_node_acls 0
	w $tpg/attrib/authentication $3
	shift 3
	mkdir -p $a || fail "mkdir $a"
	for n in "$@"; do
		mkdir -p $a/lun_$n || fail "mkdir $a/lun_$n"
		ln -s $tpg/lun/lun_$n $a/lun_$n/lun$n || fail "map lun $n"
	done
}
# enable IQN
enable() {
	tpg=$T/iscsi/$1/tpgt_1
	mkdir -p $tpg/np/0.0.0.0:` + fmt.Sprint(PortalPort) + ` || fail "portal of $1"
	w $tpg/enable 1
}
`)
	n := 0
	for _, t := range f.Targets() {
		b.WriteString("\n# " + t.IQN + "\n")
		for _, l := range t.LUNs {
			name := fmt.Sprintf("disk%d", n)
			n++
			fmt.Fprintf(&b, "backstore %s %d %d %s\n", name, l.Size, l.BlockSize, unitSerial(n-1))
			fmt.Fprintf(&b, "lun %s %d %s\n", t.IQN, l.LUN, name)
		}
		luns := make([]string, 0, len(t.LUNs))
		for _, l := range t.LUNs {
			luns = append(luns, fmt.Sprint(l.LUN))
		}
		switch {
		case t.User != "":
			auth := "$T/iscsi/" + t.IQN + "/tpgt_1/acls/" + f.Initiator + "/auth"
			fmt.Fprintf(&b, "acl %s %s 1 %s\n", t.IQN, f.Initiator, strings.Join(luns, " "))
			fmt.Fprintf(&b, "w %s/userid %s\nw %s/password %s\n", auth, shQuote(t.User), auth, shQuote(t.Secret))
			if t.TargetUser != "" {
				fmt.Fprintf(&b, "w %s/userid_mutual %s\nw %s/password_mutual %s\n", auth, shQuote(t.TargetUser), auth, shQuote(t.TargetSecret))
			}
		case len(t.Initiators) > 0:
			for _, in := range t.Initiators {
				fmt.Fprintf(&b, "acl %s %s 0 %s\n", t.IQN, in, strings.Join(luns, " "))
			}
		default:
			fmt.Fprintf(&b, "open %s\n", t.IQN)
		}
		fmt.Fprintf(&b, "enable %s\n", t.IQN)
	}
	b.WriteString(`
cat > /tmp/lio-control.sh <<'EOF'
` + controlScript + `EOF
chmod 755 /tmp/lio-control.sh
echo "lio: kernel $(uname -r); $(cat $T/version 2>/dev/null | head -n 1)"
nc -ll -p ` + fmt.Sprint(ControlPort) + ` -e /tmp/lio-control.sh &
sleep 0.2
echo "` + ReadyLine + `"
while :; do sleep 3600; done
`)
	return b.String()
}

// unitSerial is the VPD unit serial number of backstore n, a UUID like the
// ones targetcli sets.
func unitSerial(n int) string {
	return fmt.Sprintf("676f7361-6e00-4000-8000-%012x", n)
}

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
