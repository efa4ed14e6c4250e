//go:build linux && vmguest

package vmtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestGuestISCSIProbe checks, inside the guest, that the iSCSI kernel side
// is usable and that the host is reachable, then reports to the host.
func TestGuestISCSIProbe(t *testing.T) {
	RequireGuest(t)
	handle, err := os.ReadFile("/sys/class/iscsi_transport/tcp/handle")
	require.NoError(t, err, "iscsi_tcp transport not registered")
	require.NotEmpty(t, strings.TrimSpace(string(handle)))

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ISCSI)
	require.NoError(t, err, "NETLINK_ISCSI socket")
	require.NoError(t, unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
	require.NoError(t, unix.Close(fd))

	port := os.Getenv("VMTEST_HOST_PORT")
	require.NotEmpty(t, port)
	c, err := net.DialTimeout("tcp", net.JoinHostPort(HostIP, port), 30*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "hello from guest, iscsi_tcp handle %s\n", strings.TrimSpace(string(handle)))
	require.NoError(t, err)
}

// TestGuestExitCode exits with $VMTEST_EXIT_CODE.
func TestGuestExitCode(t *testing.T) {
	RequireGuest(t)
	code, err := strconv.Atoi(os.Getenv("VMTEST_EXIT_CODE"))
	require.NoError(t, err)
	os.Exit(code)
}

// TestGuestEchoServer serves one connection on :7777: it answers the
// first line with "echo: " + line.
func TestGuestEchoServer(t *testing.T) {
	RequireGuest(t)
	l, err := net.Listen("tcp", ":7777")
	require.NoError(t, err)
	defer l.Close()
	fmt.Println("ECHO-READY")
	c, err := l.Accept()
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "echo: %s", line)
	require.NoError(t, err)
}
